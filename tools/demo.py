"""`make demo`: generate a few synthetic images and draw their ground truth (until the detector lands)."""
from __future__ import annotations

import sys

from core.cli import run


def main(argv=None) -> int:
    print("Inception R-CNN: the demo grows with each stage; see README.md.")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
