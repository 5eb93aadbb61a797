"""Running the detector over a whole split and writing its results in the split's format.

COCO: a results JSON (``core.formats.coco.write_coco_results``). ILSVRC: a devkit submission
(``core.formats.ilsvrc.write_submission``), keeping only the top 30,000 detections per class over
the split as R-CNN's ILSVRC evaluation did (R-CNN's ``imdb_eval_ilsvrc13.m``).

A long run keeps every image's detections as it goes (:class:`ResultStore`: one verified entry per
image, written atomically, named by the image's bytes, the weights' bytes and the settings), so
a run that is stopped and started again, with any number of processes, computes only the images
no earlier run finished (:func:`run_images`).
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np
from tqdm import tqdm

from core.image import load_image
from core.digest import sha256_bytes, sha256_file
from core.store import read_arrays, write_arrays
from core.structures import DetectionDataset, Detections
from detector.classifier import RegionClassifier
from detector.config import DetectorConfig
from detector.pipeline import detect, weights_files
from proposals.base import Proposals, Proposer

log = logging.getLogger(__name__)

ILSVRC_PER_CLASS_CAP = 30000  # R-CNN's imdb_eval_ilsvrc13.m: top 30k per class after NMS


class FixedProposer:
    """A proposer that returns precomputed proposals (e.g. from the proposal cache)."""

    def __init__(self, proposals) -> None:
        self.proposals = proposals if isinstance(proposals, Proposals) else \
            Proposals(proposals, np.zeros(len(np.asarray(proposals).reshape(-1, 4)), np.uint8))

    def __call__(self, image: np.ndarray) -> Proposals:
        return self.proposals


def stored_proposer(proposals: dict, image_id: int) -> FixedProposer:
    """The precomputed proposals of one image (``image_id -> Proposals`` or boxes); none if missing."""
    return FixedProposer(proposals.get(image_id, np.zeros((0, 4), np.float32)))


def run_detector(dataset: DetectionDataset, members: list[RegionClassifier], cfg: DetectorConfig,
                 proposer: Proposer | None = None, proposals: dict | None = None,
                 progress: bool = True,
                 on_result: Callable[[int, Detections], None] | None = None) -> dict[int, Detections]:
    """Detections for every image of ``dataset``, keyed by ``image_id``.

    Args:
        proposer: computes proposals live, or
        proposals: ``image_id -> Proposals`` (or ``[P, 4]`` boxes) precomputed; an image missing
            from it gets no proposals, hence no detections.
        on_result: called with ``(image_id, detections)`` as soon as an image is done (to keep
            it on disk before the next one starts).

    Raises:
        core.image.ImageError: an image of the split cannot be read.
    """
    if (proposer is None) == (proposals is None):
        raise ValueError("give exactly one of proposer and proposals")
    out: dict[int, Detections] = {}
    for ann in tqdm(dataset.images, desc="detect", disable=not progress, dynamic_ncols=True):
        pixels = load_image(os.path.join(dataset.image_root, ann.file_name)).pixels
        source = proposer if proposer is not None else stored_proposer(proposals, ann.image_id)
        out[ann.image_id] = detect(pixels, source, members, cfg)
        if on_result is not None:
            on_result(ann.image_id, out[ann.image_id])
    return out


def cap_per_class(dets: dict[int, Detections], cap: int = ILSVRC_PER_CLASS_CAP) -> dict[int, Detections]:
    """Keep each class's ``cap`` best detections over all images (ties: earlier image first)."""
    ids = list(dets)
    image = np.concatenate([np.full(len(dets[i]), n) for n, i in enumerate(ids)]) if ids else np.zeros(0, int)
    index = np.concatenate([np.arange(len(dets[i])) for i in ids]) if ids else np.zeros(0, int)
    scores = np.concatenate([dets[i].scores for i in ids]) if ids else np.zeros(0)
    labels = np.concatenate([dets[i].labels for i in ids]) if ids else np.zeros(0, int)
    keep = np.zeros(len(scores), bool)
    for k in np.unique(labels):
        mine = np.flatnonzero(labels == k)
        order = mine[np.lexsort((image[mine], -scores[mine]))]
        keep[order[:cap]] = True
    out = {}
    for n, i in enumerate(ids):
        sel = np.sort(index[keep & (image == n)])
        d = dets[i]
        out[i] = Detections(d.boxes[sel], d.scores[sel], d.labels[sel])
    return out


def write_results(path, dataset: DetectionDataset, dets: dict[int, Detections], fmt: str) -> None:
    """Write ``dets`` as a COCO results JSON (``fmt="coco"``) or an ILSVRC submission (``"ilsvrc"``).

    The ILSVRC file keeps the top 30,000 detections per class (R-CNN) and uses DET_ID = label + 1,
    boxes in the devkit's 0-based inclusive pixels.
    """
    if fmt == "coco":
        from core.formats.coco import write_coco_results
        write_coco_results(path, dataset, dets)
    elif fmt == "ilsvrc":
        from core.formats.ilsvrc import submission_from_detections, write_submission
        sub = submission_from_detections(dataset, cap_per_class(dets, ILSVRC_PER_CLASS_CAP))
        write_submission(path, sub.image_index, sub.det_id, sub.score, sub.boxes)
    else:
        raise ValueError(f"unknown results format {fmt!r} (coco or ilsvrc)")


# ----------------------------------------------------------------------------- resumable runs

RESULT_FORMAT = 1  # bump when an entry's arrays or their meaning change


def files_digest(paths: list[str]) -> str:
    """sha256 over the names (base names) and bytes of ``paths``, in the order given."""
    return sha256_bytes(b"".join(os.path.basename(p).encode() + b"\0" + sha256_file(p).encode() for p in paths))


def run_key(weights: str, settings: dict) -> dict:
    """What decides an image's detections besides the image: the weights' bytes and ``settings``
    (the detector and proposal configuration, the device), as plain JSON-able data."""
    return {"format": RESULT_FORMAT, "weights_sha256": files_digest(weights_files(weights)),
            "settings": settings}


@dataclass
class ResultStore:
    """Per-image detections on disk: ``folder/<entry>.entry``, one verified entry per image.

    The entry name hashes the image file's bytes and ``key`` (:func:`run_key`), so a changed
    image, weights file or setting never reads a stale entry; each entry also carries its key and a
    checksum (:mod:`core.store`), and one that is damaged or foreign is reported and computed again.
    """

    folder: str
    key: dict

    def entry(self, image_path: str) -> tuple[str, str]:
        """(entry path, key text) of an image."""
        text = json.dumps({"image_sha256": sha256_file(image_path), **self.key}, sort_keys=True, default=str)
        return os.path.join(self.folder, sha256_bytes(text.encode()) + ".entry"), text

    def save(self, image_path: str, dets: Detections) -> None:
        """Write one image's detections atomically."""
        path, text = self.entry(image_path)
        write_arrays(path, text, {"boxes": dets.boxes, "scores": dets.scores, "labels": dets.labels})

    def load(self, image_path: str) -> Detections | None:
        """An image's stored detections; None when absent, unusable or not this run's (or the
        image itself is missing: the detector then reports it as it reports any bad image)."""
        if not os.path.isfile(image_path):
            return None
        path, text = self.entry(image_path)
        if not os.path.isfile(path):
            return None
        arrays = read_arrays(path, text, ("boxes", "scores", "labels"))
        return None if arrays is None else Detections(**arrays)


def stored_results(dataset: DetectionDataset, store: ResultStore) -> tuple[dict[int, Detections], DetectionDataset]:
    """Split ``dataset`` into the images ``store`` holds and those still to detect.

    Returns:
        ``({image_id: Detections} loaded from the store, the dataset of the other images)``,
        both in dataset order.
    """
    found: dict[int, Detections] = {}
    for ann in tqdm(dataset.images, desc="stored results", dynamic_ncols=True, leave=False):
        dets = store.load(os.path.join(dataset.image_root, ann.file_name))
        if dets is not None:
            found[ann.image_id] = dets
    todo = [ann for ann in dataset.images if ann.image_id not in found]
    log.info("%d images already done, %d to detect", len(found), len(todo))
    return found, DetectionDataset(dataset.classes, todo, dataset.class_ids, dataset.image_root)


def store_each(dataset: DetectionDataset, store: ResultStore) -> Callable[[int, Detections], None]:
    """A :func:`run_detector` ``on_result`` callback that writes each image's entry to ``store``."""
    path_of = {ann.image_id: os.path.join(dataset.image_root, ann.file_name) for ann in dataset.images}

    def keep(image_id: int, dets: Detections) -> None:
        store.save(path_of[image_id], dets)

    return keep
