"""sha256 of a file's or a byte string's content, as hex: the one digest the project uses."""
from __future__ import annotations

import hashlib
import os

_BLOCK = 1 << 20  # read files in 1 MiB blocks, so a large file is never held in memory


def sha256_bytes(data: bytes) -> str:
    """sha256 hex of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path) -> str:
    """sha256 hex of the bytes of the file at ``path`` (read in blocks)."""
    digest = hashlib.sha256()
    with open(os.fspath(path), "rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()
