import functools
import os

import numpy as np
import pytest

from core.structures import DetectionDataset, ImageAnnotations
from proposals.base import Proposals
from proposals.build import build_proposer, ProposalsConfig, proposer_key
from core.digest import sha256_file
from proposals.cache import cache_key, dataset_proposals
from proposals.selective_search import preset

CALLS: list[str] = []


class CountingProposer:
    """One box per image whose size depends on ``size``; records every call."""

    def __init__(self, size: float):
        self.size = size

    def __call__(self, image):
        CALLS.append(f"{image.shape}")
        return Proposals(np.array([[0, 0, self.size, self.size]], np.float32), np.zeros(1, np.uint8))


def dataset_of(split) -> DetectionDataset:
    images = [ImageAnnotations(i + 1, f"{i:03d}.png", 160, 140) for i in range(2)]
    return DetectionDataset(["thing"], images, image_root=str(split / "images"))


def run(split, cache, size=10.0, workers=1):
    factory = functools.partial(CountingProposer, size)
    return dataset_proposals(dataset_of(split), factory, cache, {"size": size}, workers)


@pytest.fixture(autouse=True)
def reset_calls():
    CALLS.clear()


def test_cache_hit_and_parameter_change(split, tmp_path):
    cache = tmp_path / "cache"
    first = run(split, cache)
    assert len(CALLS) == 2 and list(first) == [1, 2]
    again = run(split, cache)
    assert len(CALLS) == 2  # all from disk
    np.testing.assert_array_equal(again[1].boxes, first[1].boxes)
    changed = run(split, cache, size=20.0)
    assert len(CALLS) == 4  # a parameter change is a new key
    assert changed[1].boxes[0, 2] == 20.0
    assert not [f for f in os.listdir(cache) if f.startswith(".tmp")]


def test_changed_image_is_recomputed(split, tmp_path, make_scene):
    import cv2
    cache = tmp_path / "cache"
    run(split, cache)
    cv2.imwrite(str(split / "images" / "001.png"), make_scene(seed=9)[:, :, ::-1])
    run(split, cache)
    assert len(CALLS) == 3  # only the changed image


def test_resume_computes_only_missing(split, tmp_path):
    cache = tmp_path / "cache"
    run(split, cache)
    entries = sorted(cache.iterdir())
    entries[0].unlink()  # as if interrupted before this image
    run(split, cache)
    assert len(CALLS) == 3


def _truncate(entry):
    entry.write_bytes(entry.read_bytes()[:-7])


def _flip(entry):
    data = bytearray(entry.read_bytes())
    data[-40] ^= 0x10  # inside the arrays' bytes: only the checksum can see it
    entry.write_bytes(bytes(data))


def _garbage(entry):
    entry.write_bytes(b"not an entry")


def _directory(entry):  # unreadable: a folder where the file should be
    entry.unlink()
    entry.mkdir()


@pytest.mark.parametrize("damage", [_truncate, _flip, _garbage], ids=["truncated", "bit-flip", "garbage"])
def test_damaged_entry_is_reported_recomputed_and_rewritten(split, tmp_path, caplog, damage):
    cache = tmp_path / "cache"
    first = run(split, cache)
    entry = sorted(cache.iterdir())[0]
    good = entry.read_bytes()
    damage(entry)
    out = run(split, cache)
    assert len(CALLS) == 3  # only the damaged entry was recomputed
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and str(entry) in warnings[0]
    assert entry.read_bytes() == good  # rewritten
    for image_id in (1, 2):
        np.testing.assert_array_equal(out[image_id].boxes, first[image_id].boxes)
    run(split, cache)
    assert len(CALLS) == 3  # and read from disk next time


def test_foreign_entry_is_not_used(split, tmp_path, caplog):
    """An entry of another image copied under this image's name is refused by its key."""
    cache = tmp_path / "cache"
    first = run(split, cache)
    own, other = sorted(cache.iterdir())
    own_bytes = own.read_bytes()
    run(split, cache, size=20.0)  # entries of another parameter set: the same sizes of content
    foreign = [e for e in cache.iterdir() if e.name not in (own.name, other.name)][0]
    own.write_bytes(foreign.read_bytes())
    CALLS.clear()
    out = run(split, cache)
    assert len(CALLS) == 1 and "another key" in caplog.text and str(own) in caplog.text
    for image_id in (1, 2):
        np.testing.assert_array_equal(out[image_id].boxes, first[image_id].boxes)
    assert own.read_bytes() == own_bytes


def test_unreadable_entry_is_recomputed(split, tmp_path, caplog):
    cache = tmp_path / "cache"
    run(split, cache)
    entry = sorted(cache.iterdir())[0]
    _directory(entry)
    with pytest.raises(OSError):  # cannot rewrite over a folder: one OSError line from the tool
        run(split, cache)
    assert str(entry) in caplog.text and len(CALLS) == 3


def test_key_depends_on_image_and_params(split):
    digest = sha256_file(split / "images" / "000.png")
    assert cache_key(digest, {"a": 1}) != cache_key(digest, {"a": 2})
    assert cache_key(digest, {"a": 1}) != cache_key(sha256_file(split / "images" / "001.png"), {"a": 1})
    cfg = ProposalsConfig()
    small = ProposalsConfig(ss=preset("ss", min_box_size=10))
    assert proposer_key("ss", cfg) != proposer_key("ss", small)
    assert proposer_key("ss2x", cfg) == proposer_key("ss2x", small)  # ss2x does not read cfg.ss


def test_spawned_workers_match_in_process(split, tmp_path):
    cfg = ProposalsConfig(ss2x=preset("ss2x", max_side=100))
    factory = functools.partial(build_proposer, "ss2x", cfg)
    key = proposer_key("ss2x", cfg)
    pooled = dataset_proposals(dataset_of(split), factory, tmp_path / "a", key, workers=2)
    inline = dataset_proposals(dataset_of(split), factory, tmp_path / "b", key, workers=1)
    for image_id in (1, 2):
        np.testing.assert_array_equal(pooled[image_id].boxes, inline[image_id].boxes)


def test_bad_image_in_a_worker_is_the_image_error(split, tmp_path):
    """A worker's ImageError crosses the process boundary as itself (one line), not a pickling crash."""
    from core.image import ImageError
    (split / "images" / "001.png").write_bytes(b"not a png")
    factory = functools.partial(build_proposer, "ss2x", ProposalsConfig(ss2x=preset("ss2x", max_side=100)))
    with pytest.raises(ImageError, match="001.png"):
        dataset_proposals(dataset_of(split), factory, tmp_path / "c", {"m": 1}, workers=2)


def test_computing_in_process_leaves_the_thread_counts_alone(split, tmp_path):
    """A cold cache filled in this process must not leave the detector that runs next here on one
    torch (or OpenCV) thread: tools/test.py --cache-dir then classified at half speed."""
    import cv2
    import torch
    before = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(2)
    cv2.setNumThreads(2)
    try:
        factory = functools.partial(build_proposer, "ss2x", ProposalsConfig(ss2x=preset("ss2x", max_side=100)))
        dataset_proposals(dataset_of(split), factory, tmp_path / "d", {"m": 2}, workers=1)
        assert (torch.get_num_threads(), cv2.getNumThreads()) == (2, 2)
    finally:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])
