"""Proposals for a whole dataset: computed in worker processes, cached on disk, resumable.

One entry per image (``boxes [R, 4]`` float32 xyxy original pixels, ``sources [R]`` uint8) named
by a key that hashes the image file's bytes, every parameter that shapes the result
(``key_params``, e.g. :func:`proposals.build.proposer_key`) and :data:`CACHE_FORMAT`. A changed
image or parameter therefore gets a new file name, so a stale entry is never read. Entries are
:mod:`core.store` entries: written atomically (an interrupted run leaves only complete entries and
the next run computes just the missing images), carrying their key and a checksum, so a truncated,
damaged or foreign entry is reported once, recomputed and rewritten.
"""
from __future__ import annotations

import json
import logging
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable

import numpy as np
from tqdm import tqdm

from core.digest import sha256_bytes, sha256_file
from core.image import WORK_PIXELS, load_image
from core.store import read_arrays, write_arrays
from core.structures import DetectionDataset
from proposals.base import Proposals, Proposer

log = logging.getLogger(__name__)

CACHE_FORMAT = 2  # bump when the file layout or the meaning of its arrays changes (2: verified entries)
ENTRY_SUFFIX = ".entry"


def cache_key(digest: str, key_params: dict) -> str:
    """The entry name for an image digest and the proposer's parameters (JSON-able)."""
    text = json.dumps({"format": CACHE_FORMAT, "image": digest, "params": key_params},
                      sort_keys=True, default=str)
    return sha256_bytes(text.encode())


def entry_path(cache_dir, key: str) -> str:
    """Where the entry of ``key`` lives in ``cache_dir``."""
    return os.path.join(cache_dir, key + ENTRY_SUFFIX)


def save_proposals(path, key: str, proposals: Proposals) -> None:
    """Write one verified entry atomically."""
    write_arrays(path, key, {"boxes": proposals.boxes, "sources": proposals.sources})


def load_proposals(path, key: str) -> Proposals | None:
    """Read one entry; None when it is missing or unusable (logged once; it will be recomputed)."""
    arrays = read_arrays(path, key, ("boxes", "sources"))
    if arrays is None:
        return None
    boxes, sources = arrays["boxes"], arrays["sources"]
    if boxes.dtype != np.float32 or boxes.ndim != 2 or boxes.shape[1] != 4 or sources.shape != (len(boxes),):
        log.warning("%s: unusable cache entry, recomputing it (arrays of another layout)", path)
        return None
    return Proposals(boxes=boxes, sources=sources)


_WORKER_PROPOSER: Proposer | None = None


def _build_proposer(factory: Callable[[], Proposer]) -> None:
    """Build the proposer once per process that computes proposals."""
    global _WORKER_PROPOSER
    _WORKER_PROPOSER = factory()


def _init_worker(factory: Callable[[], Proposer]) -> None:
    """A spawned worker: one thread each (the cores are the workers), then its proposer. The
    caller's own process keeps its thread counts (:func:`_run`): the detector that runs next there
    would otherwise classify on one thread, at half the speed on 2 cores."""
    import cv2
    cv2.setNumThreads(1)
    _build_proposer(factory)
    if "torch" in sys.modules:  # MultiBox proposers; importing torch just for this costs seconds
        sys.modules["torch"].set_num_threads(1)


def _compute(image_path: str, entry: str, key: str) -> Proposals:
    """Worker task: proposals of one image, written to ``entry`` under ``key``.

    An image above ``WORK_PIXELS`` is proposed for at a reduced size (core.image's memory bound);
    its boxes are stored in the original pixels like every other's.
    """
    image = load_image(image_path, WORK_PIXELS)
    proposals = _WORKER_PROPOSER(image.pixels)
    proposals = Proposals(image.to_full(proposals.boxes), proposals.sources)
    save_proposals(entry, key, proposals)
    return proposals


def _run(todo: list[tuple[int, str, str, str]], factory, workers: int) -> dict[int, Proposals]:
    """Compute ``(image_id, image_path, entry, key)`` tasks in-process or in ``workers`` spawned processes."""
    out: dict[int, Proposals] = {}
    bar = tqdm(total=len(todo), desc="proposals", unit="img")
    if workers <= 1:
        _build_proposer(factory)
        for image_id, *task in todo:
            out[image_id] = _compute(*task)
            bar.update()
    else:
        # spawn: safe with torch and OpenCV threads (fork is not), and the same on every OS.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                 initargs=(factory,)) as pool:
            futures = {pool.submit(_compute, *task): image_id for image_id, *task in todo}
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
        cache_dir: folder of ``<key>.entry`` entries (created if needed).
        key_params: everything that shapes the proposer's output (see :func:`proposals.build.proposer_key`).
        workers: worker processes; 0 or 1 computes in this process.

    Returns:
        ``{image_id: Proposals}`` in dataset order.
    """
    os.makedirs(cache_dir, exist_ok=True)
    found: dict[int, Proposals] = {}
    todo: list[tuple[int, str, str, str]] = []
    for ann in dataset.images:
        path = os.path.join(dataset.image_root, ann.file_name)
        key = cache_key(sha256_file(path), key_params)
        entry = entry_path(cache_dir, key)
        cached = load_proposals(entry, key)
        if cached is None:
            todo.append((ann.image_id, path, entry, key))
        else:
            found[ann.image_id] = cached
    log.info("proposals: %d cached, %d to compute in %s", len(found), len(todo), cache_dir)
    if todo:
        found.update(_run(todo, proposer_factory, workers))
    return {ann.image_id: found[ann.image_id] for ann in dataset.images}
