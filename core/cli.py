"""What every command line shares: one-line errors, no tracebacks, a non-zero exit."""
from __future__ import annotations

import logging
import sys

from core.config import ConfigError
from core.errors import InputError
from core.image import ImageError


USER_ERRORS = (InputError, ConfigError, ImageError)


def os_error_message(err: OSError) -> str:
    """``"<filename>: <strerror>"`` for an OSError (a directory given as an output file, no
    permission, ...), else ``str(err)``.

    ``os.replace(tmp, path)`` in :func:`core.io.atomic_path` sets ``filename`` to the hidden
    temporary file and ``filename2`` to the user's path, so the second name is the one to show.
    """
    name = err.filename2 if err.filename2 is not None else err.filename
    if name is None or not err.strerror:
        return str(err)
    return f"{name}: {err.strerror}"


def run(main, argv=None) -> int:
    """Call ``main(argv)``; turn user errors into one stderr line and exit code 2."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return int(main(argv) or 0)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a path the user gave that cannot be read or written
        print(f"error: {os_error_message(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
