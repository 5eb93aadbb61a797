"""core.store: verified entries read back only when key and checksum hold; anything else is missing."""
import logging

import numpy as np
import pytest

from core.digest import sha256_bytes, sha256_file
from core.store import read_arrays, read_entry, read_json_entry, write_arrays, write_entry, write_json_entry


def test_digest_of_file_equals_digest_of_its_bytes(tmp_path):
    data = bytes(range(256)) * 5000  # more than one read block
    (tmp_path / "f").write_bytes(data)
    assert sha256_file(tmp_path / "f") == sha256_bytes(data)
    assert sha256_bytes(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_round_trip(tmp_path):
    boxes = np.arange(8, dtype=np.float32).reshape(2, 4)
    write_arrays(tmp_path / "a", "k1", {"boxes": boxes})
    np.testing.assert_array_equal(read_arrays(tmp_path / "a", "k1", ("boxes",))["boxes"], boxes)
    write_json_entry(tmp_path / "j", "k2", {"x": [1, 2]})
    assert read_json_entry(tmp_path / "j", "k2") == {"x": [1, 2]}
    assert read_entry(tmp_path / "missing", "k") is None


def _every_damage(blob: bytes):
    yield "truncated", blob[:-1]
    yield "empty", b""
    yield "padded", blob + b"\0"
    for i in range(0, len(blob), 7):  # a flipped bit anywhere: header, key or content
        yield f"bit {i}", blob[:i] + bytes([blob[i] ^ 0x04]) + blob[i + 1:]


def test_any_damage_reads_as_missing_with_one_warning(tmp_path, caplog):
    path = tmp_path / "e"
    write_entry(path, "key", b"some content of an entry")
    blob = path.read_bytes()
    for name, damaged in _every_damage(blob):
        path.write_bytes(damaged)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert read_entry(path, "key") is None, name
        assert len(caplog.records) == 1 and str(path) in caplog.records[0].getMessage(), name


def test_foreign_key_and_wrong_layout(tmp_path, caplog):
    write_entry(tmp_path / "e", "other", b"x")
    assert read_entry(tmp_path / "e", "key") is None and "another key" in caplog.text
    write_entry(tmp_path / "e", "key", b"not an npz")
    assert read_arrays(tmp_path / "e", "key", ("boxes",)) is None
    write_arrays(tmp_path / "e", "key", {"other": np.zeros(1)})
    assert read_arrays(tmp_path / "e", "key", ("boxes",)) is None


@pytest.mark.parametrize("reader", [read_entry, read_json_entry])
def test_unreadable_path_is_missing(tmp_path, reader):
    (tmp_path / "d").mkdir()
    assert reader(tmp_path / "d", "key") is None
