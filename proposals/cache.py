"""Proposals for a whole dataset: computed in worker processes, cached on disk, resumable.

One ``.npz`` per image (``boxes [R, 4]`` float32 xyxy original pixels, ``sources [R]`` uint8) named
by a key that hashes the image file's bytes, every parameter that shapes the result
(``key_params``, e.g. :func:`proposals.build.proposer_key`) and :data:`CACHE_FORMAT`. A changed
image or parameter therefore gets a new file name, so a stale entry is never read. Files are
written atomically, so an interrupted run leaves only complete entries and the next run computes
just the missing images.
"""
from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable

import numpy as np
from tqdm import tqdm

from core.image import load_image
from core.io import atomic_path
from core.structures import DetectionDataset
from proposals.base import Proposals, Proposer

log = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when the file layout or the meaning of its arrays changes


def image_digest(path) -> str:
    """sha256 hex of the image file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_key(digest: str, key_params: dict) -> str:
    """The entry name for an image digest and the proposer's parameters (JSON-able)."""
    text = json.dumps({"format": CACHE_FORMAT, "image": digest, "params": key_params},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def save_proposals(path, proposals: Proposals) -> None:
    """Write one entry atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, boxes=proposals.boxes, sources=proposals.sources)


def load_proposals(path) -> Proposals | None:
    """Read one entry; None when it is missing or unreadable (it will be recomputed)."""
    if not os.path.isfile(path):
        return None
    try:
        with np.load(path) as data:
            return Proposals(boxes=data["boxes"], sources=data["sources"])
    except (OSError, ValueError, KeyError) as err:
        log.warning("%s: unreadable cache entry, recomputing (%s)", path, err)
        return None


_WORKER_PROPOSER: Proposer | None = None


def _init_worker(factory: Callable[[], Proposer]) -> None:
    """Build the proposer once per worker process; one thread each (the cores are the workers)."""
    global _WORKER_PROPOSER
    import cv2
    cv2.setNumThreads(1)
    _WORKER_PROPOSER = factory()
    if "torch" in sys.modules:  # MultiBox proposers; importing torch just for this costs seconds
        sys.modules["torch"].set_num_threads(1)


def _compute(image_path: str, entry: str) -> Proposals:
    """Worker task: proposals of one image, written to ``entry``."""
    proposals = _WORKER_PROPOSER(load_image(image_path).pixels)
    save_proposals(entry, proposals)
    return proposals


def _run(todo: list[tuple[int, str, str]], factory, workers: int) -> dict[int, Proposals]:
    """Compute ``(image_id, image_path, entry)`` tasks in-process or in ``workers`` spawned processes."""
    out: dict[int, Proposals] = {}
    bar = tqdm(total=len(todo), desc="proposals", unit="img")
    if workers <= 1:
        _init_worker(factory)
        for image_id, path, entry in todo:
            out[image_id] = _compute(path, entry)
            bar.update()
    else:
        # spawn: safe with torch and OpenCV threads (fork is not), and the same on every OS.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                 initargs=(factory,)) as pool:
            futures = {pool.submit(_compute, path, entry): image_id for image_id, path, entry in todo}
            for future in as_completed(futures):
                out[futures[future]] = future.result()
                bar.update()
    bar.close()
    return out


def dataset_proposals(dataset: DetectionDataset, proposer_factory: Callable[[], Proposer], cache_dir,
                      key_params: dict, workers: int = 1) -> dict[int, Proposals]:
    """Proposals of every image of ``dataset``, from the cache where present.

    Args:
        dataset: images are read from ``os.path.join(dataset.image_root, file_name)``.
        proposer_factory: picklable zero-argument callable building the proposer in each worker,
            e.g. ``functools.partial(build_proposer, "ss2x", cfg)``.
        cache_dir: folder of ``<key>.npz`` entries (created if needed).
        key_params: everything that shapes the proposer's output (see :func:`proposals.build.proposer_key`).
        workers: worker processes; 0 or 1 computes in this process.

    Returns:
        ``{image_id: Proposals}`` in dataset order.
    """
    os.makedirs(cache_dir, exist_ok=True)
    found: dict[int, Proposals] = {}
    todo: list[tuple[int, str, str]] = []
    for ann in dataset.images:
        path = os.path.join(dataset.image_root, ann.file_name)
        entry = os.path.join(cache_dir, cache_key(image_digest(path), key_params) + ".npz")
        cached = load_proposals(entry)
        if cached is None:
            todo.append((ann.image_id, path, entry))
        else:
            found[ann.image_id] = cached
    log.info("proposals: %d cached, %d to compute in %s", len(found), len(todo), cache_dir)
    if todo:
        found.update(_run(todo, proposer_factory, workers))
    return {ann.image_id: found[ann.image_id] for ann in dataset.images}
