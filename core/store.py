"""Verified entries: files a later run reads back (caches, per-image results) that check themselves.

An entry is written atomically and carries its own key and the sha256 of its content::

    IRCNN-ENTRY 1\\n{"key": KEY, "sha256": HEX, "size": N}\\n<N bytes of content>

Reading one verifies the header, the key (an entry copied under another entry's name is foreign)
and the checksum (a truncated or bit-flipped entry fails it). Any failure, whatever its cause, logs
one warning naming the file and the reason and reads as missing, so the caller recomputes the
content and writes the entry again: a damaged entry costs one recomputation, never a crash.
"""
from __future__ import annotations

import io
import json
import logging
import os

import numpy as np

from core.digest import sha256_bytes
from core.io import atomic_path

log = logging.getLogger(__name__)

MAGIC = b"IRCNN-ENTRY 1\n"
_MAX_HEADER = 4096  # the JSON header line is short; a longer "header" is not an entry


class BadEntry(Exception):
    """Internal: why an entry cannot be used (turned into a warning by the readers)."""


def _unusable(path, reason: str) -> None:
    """The one warning a damaged entry gets; the caller then treats it as missing."""
    log.warning("%s: unusable cache entry, recomputing it (%s)", path, reason)


def write_entry(path, key: str, content: bytes) -> None:
    """Write ``content`` under ``key`` to ``path`` atomically (temp file, then rename)."""
    header = json.dumps({"key": key, "sha256": sha256_bytes(content), "size": len(content)})
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(MAGIC + header.encode() + b"\n" + content)


def _verified(blob: bytes, key: str) -> bytes:
    """The content of an entry's bytes ``blob``; raises BadEntry saying what is wrong."""
    if not blob.startswith(MAGIC):
        raise BadEntry("not a cache entry (no header)")
    end = blob.find(b"\n", len(MAGIC), len(MAGIC) + _MAX_HEADER)
    if end < 0:
        raise BadEntry("damaged header")
    try:
        header = json.loads(blob[len(MAGIC):end].decode())
        stored_key, digest, size = header["key"], header["sha256"], int(header["size"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise BadEntry("damaged header") from None
    if stored_key != key:
        raise BadEntry("written for another key (a foreign entry)")
    content = blob[end + 1:]
    if len(content) != size:
        raise BadEntry(f"truncated or padded ({len(content)} of {size} bytes)")
    if sha256_bytes(content) != digest:
        raise BadEntry("checksum mismatch (damaged content)")
    return content


def read_entry(path, key: str) -> bytes | None:
    """The verified content of the entry at ``path`` for ``key``; None if missing or unusable.

    An unusable entry (unreadable, truncated, damaged, foreign) is logged once as a warning.
    """
    path = os.fspath(path)
    if not os.path.lexists(path):
        return None
    try:
        with open(path, "rb") as f:
            return _verified(f.read(), key)
    except (OSError, BadEntry) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        _unusable(path, reason)
        return None


def write_arrays(path, key: str, arrays: dict[str, np.ndarray]) -> None:
    """Write named numpy arrays as a verified entry (``.npz`` content, no pickles)."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_entry(path, key, buffer.getvalue())


def read_arrays(path, key: str, names: tuple[str, ...]) -> dict[str, np.ndarray] | None:
    """The arrays ``names`` of a verified entry written by :func:`write_arrays`; None if unusable."""
    content = read_entry(path, key)
    if content is None:
        return None
    try:  # the checksum passed, so this fails only for content of another layout
        with np.load(io.BytesIO(content), allow_pickle=False) as data:
            return {name: data[name] for name in names}
    except Exception as err:  # numpy/zipfile raise many types; any of them means "unusable"
        _unusable(path, f"{type(err).__name__}: {err}")
        return None


def write_json_entry(path, key: str, obj) -> None:
    """Write a JSON-able object as a verified entry."""
    write_entry(path, key, json.dumps(obj).encode())


def read_json_entry(path, key: str):
    """The object of a verified entry written by :func:`write_json_entry`; None if unusable."""
    content = read_entry(path, key)
    if content is None:
        return None
    try:
        return json.loads(content.decode())
    except (ValueError, UnicodeDecodeError) as err:
        _unusable(path, str(err))
        return None
