"""What every command line shares: one-line errors, no tracebacks, a non-zero exit."""
from __future__ import annotations

import logging
import sys

from core.config import ConfigError
from core.errors import InputError
from core.image import ImageError


USER_ERRORS = (InputError, ConfigError, ImageError, FileNotFoundError)


def run(main, argv=None) -> int:
    """Call ``main(argv)``; turn user errors into one stderr line and exit code 2."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return int(main(argv) or 0)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
