"""Running the detector over a whole split and writing its results in the split's format.

COCO: a results JSON (``core.formats.coco.write_coco_results``). ILSVRC: a devkit submission
(``core.formats.ilsvrc.write_submission``), keeping only the top 30,000 detections per class over
the split as R-CNN's ILSVRC evaluation did (METHOD §2.5).
"""
from __future__ import annotations

import logging
import os

import numpy as np
from tqdm import tqdm

from core.image import load_image
from core.structures import DetectionDataset, Detections
from detector.classifier import RegionClassifier
from detector.config import DetectorConfig
from detector.pipeline import detect
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


def run_detector(dataset: DetectionDataset, members: list[RegionClassifier], cfg: DetectorConfig,
                 proposer: Proposer | None = None, proposals: dict | None = None,
                 progress: bool = True) -> dict[int, Detections]:
    """Detections for every image of ``dataset``, keyed by ``image_id``.

    Args:
        proposer: computes proposals live, or
        proposals: ``image_id -> Proposals`` (or ``[P, 4]`` boxes) precomputed; an image missing
            from it gets no proposals, hence no detections.

    Raises:
        core.image.ImageError: an image of the split cannot be read.
    """
    if (proposer is None) == (proposals is None):
        raise ValueError("give exactly one of proposer and proposals")
    out: dict[int, Detections] = {}
    for ann in tqdm(dataset.images, desc="detect", disable=not progress, dynamic_ncols=True):
        pixels = load_image(os.path.join(dataset.image_root, ann.file_name)).pixels
        source = proposer if proposer is not None else \
            FixedProposer(proposals.get(ann.image_id, np.zeros((0, 4), np.float32)))
        out[ann.image_id] = detect(pixels, source, members, cfg)
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
