"""Proposal recall: how well class-agnostic proposals cover the ground-truth objects.

Shape letters: G objects of one image, P proposals of one image, T IoU thresholds, M proposal
counts. Boxes are xyxy float, continuous pixels (:mod:`core.boxes`); IoU is the continuous one
(no ``+1``), as COCO's and Hosang et al.'s recall studies use.

For every object, its *best overlap* is the highest IoU with any of its image's proposals. Then:

* **coverage** = recall at IoU 0.5 (the GoogLeNet paper's word), and recall at 0.7;
* **recall against IoU** at 0.5, 0.55, .., 0.95;
* **ABO** = mean best overlap over objects; **MABO** = mean over classes (with objects) of the
  per-class ABO (Selective Search's measures);
* **AR** = mean of recall over the ten thresholds 0.5..0.95 (COCO-style average recall), and
  **AR@N** the same with only the top N proposals of each image;
* the same numbers by object size, COCO's ranges of ``area`` (small ``<= 32²``, medium ``32²..96²``,
  large ``>= 96²``, bounds inclusive as in pycocotools; ``area`` is COCO's segment area where the
  dataset has one, else the box area).

Crowd regions are left out; VOC 'difficult' objects count unless ``include_difficult=False``.
An image missing from ``proposals`` has no proposals (its objects are missed; a warning counts
such images). A number over no objects is NaN (``null`` in JSON).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from core.config import AT_LEAST_ONE, check_ranges
from core.errors import InputError
from core.structures import DetectionDataset
from eval.report import to_json_value

__all__ = ["IOU_THRESHOLDS", "SIZE_RANGES", "DEFAULT_COUNTS", "RecallConfig", "RecallStats", "RecallReport",
           "best_overlaps", "proposal_recall"]

log = logging.getLogger(__name__)

IOU_THRESHOLDS = np.round(0.5 + 0.05 * np.arange(10), 2)  # 0.5, 0.55, .., 0.95 (T = 10)
SIZE_RANGES = {"small": (0.0, 32.0 ** 2), "medium": (32.0 ** 2, 96.0 ** 2), "large": (96.0 ** 2, 1e10)}
DEFAULT_COUNTS = (1, 10, 100, 200, 500, 1000, 2000)  # N for AR@N


@dataclass(frozen=True)
class RecallConfig:
    """How ``tools/eval.py --protocol recall`` measures (``--set recall.KEY=VALUE``)."""

    top_n: int | None = None  # use each image's top N proposals only (None: all)
    counts: tuple[int, ...] = DEFAULT_COUNTS  # the N of AR@N
    include_difficult: bool = True  # count VOC 'difficult' objects (crowd regions never count)

    def __post_init__(self):
        check_ranges(self, top_n=AT_LEAST_ONE, counts=AT_LEAST_ONE)


@dataclass
class RecallStats:
    """The recall numbers of one set of objects (all, one size, ...)."""

    objects: int
    coverage: float
    recall_07: float
    recall: list[float]  # [T] at IOU_THRESHOLDS
    abo: float
    ar: float
    ar_at: dict[int, float]  # AR with the top N proposals

    def to_json(self) -> dict:
        return to_json_value({
            "objects": self.objects, "coverage": self.coverage, "recall@0.7": self.recall_07,
            "recall_vs_iou": {f"{t:g}": r for t, r in zip(IOU_THRESHOLDS, self.recall)},
            "ABO": self.abo, "AR": self.ar, "AR@N": {str(n): v for n, v in self.ar_at.items()}})


@dataclass
class RecallReport:
    """Proposal recall of a dataset (see the module notes for each number).

    Attributes:
        overall: the numbers over all objects; ``by_size``: the same per COCO size range.
        mabo: mean over classes of the per-class ABO. per_class: ``{name: {objects, coverage, ABO}}``.
        images, mean_proposals, top_n: what was measured.
    """

    overall: RecallStats
    mabo: float
    by_size: dict[str, RecallStats]
    per_class: dict[str, dict]
    images: int
    mean_proposals: float
    top_n: int | None = None
    counts: dict = field(default_factory=dict)

    @property
    def coverage(self) -> float:
        return self.overall.coverage

    @property
    def recall_07(self) -> float:
        return self.overall.recall_07

    @property
    def abo(self) -> float:
        return self.overall.abo

    @property
    def ar(self) -> float:
        return self.overall.ar

    def to_json(self) -> dict:
        """A JSON-ready dict: ``protocol: "recall"``, the overall numbers, ``MABO``, ``by_size``,
        ``per_class`` and what was measured."""
        return to_json_value({
            "protocol": "recall", **self.overall.to_json(), "MABO": self.mabo,
            "by_size": {k: v.to_json() for k, v in self.by_size.items()}, "per_class": self.per_class,
            "images": self.images, "mean_proposals": self.mean_proposals, "top_n": self.top_n,
            **self.counts})


def _iou(gt: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """``[G, P]`` continuous IoU of xyxy ``gt [G, 4]`` and ``boxes [P, 4]`` (0 for empty unions)."""
    lt = np.maximum(gt[:, None, :2], boxes[None, :, :2])
    rb = np.minimum(gt[:, None, 2:], boxes[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_g = np.prod(gt[:, 2:] - gt[:, :2], axis=1)
    area_b = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    union = area_g[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def best_overlaps(gt: np.ndarray, boxes: np.ndarray, counts: tuple[int, ...]) -> np.ndarray:
    """``[G, M + 1]`` best IoU of each object with the top ``counts[m]`` proposals, and with all.

    Args:
        gt: ``[G, 4]`` xyxy objects. boxes: ``[P, 4]`` xyxy proposals, best-ranked first.
        counts: the M proposal counts N (ascending or not).
    """
    out = np.zeros((len(gt), len(counts) + 1))
    if not len(gt) or not len(boxes):
        return out
    running = np.maximum.accumulate(_iou(np.asarray(gt, np.float64), np.asarray(boxes, np.float64)), axis=1)
    cols = np.minimum(np.asarray(list(counts) + [len(boxes)], np.int64), len(boxes)) - 1
    out[:, cols >= 0] = running[:, cols[cols >= 0]]
    return out


def _stats(best: np.ndarray, counts: tuple[int, ...]) -> RecallStats:
    """Numbers over objects whose best overlaps are ``best [G, M + 1]`` (last column: all)."""
    if not len(best):
        nan = float("nan")
        return RecallStats(0, nan, nan, [nan] * len(IOU_THRESHOLDS), nan, nan, {n: nan for n in counts})
    hits = best[:, :, None] >= IOU_THRESHOLDS  # [G, M + 1, T]
    recall = hits.mean(axis=0)  # [M + 1, T]
    return RecallStats(objects=len(best), coverage=float(recall[-1, 0]),
                       recall_07=float((best[:, -1] >= 0.7).mean()), recall=recall[-1].tolist(),
                       abo=float(best[:, -1].mean()), ar=float(recall[-1].mean()),
                       ar_at={n: float(r) for n, r in zip(counts, recall[:-1].mean(axis=1))})


def _boxes_of(value) -> np.ndarray:
    return np.asarray(getattr(value, "boxes", value), np.float64).reshape(-1, 4)


def _objects(dataset: DetectionDataset, proposals: dict, top_n, counts, include_difficult: bool):
    """Per object: best overlaps ``[G, M + 1]``, label ``[G]``, area ``[G]``; plus proposal counts."""
    best, labels, areas, n_props = [], [], [], []
    for img in tqdm(dataset.images, desc="recall", unit="img", leave=False, disable=None):
        keep = ~img.iscrowd & (include_difficult | ~img.difficult)
        boxes = _boxes_of(proposals.get(int(img.image_id), np.zeros((0, 4))))[:top_n]
        n_props.append(len(boxes))
        best.append(best_overlaps(img.boxes[keep], boxes, counts))
        labels.append(img.labels[keep])
        areas.append(img.area[keep])
    best = np.concatenate(best) if best else np.zeros((0, len(counts) + 1))
    cat = (lambda parts, dt: np.concatenate(parts) if parts else np.zeros(0, dt))
    return best, cat(labels, np.int64), cat(areas, np.float32), n_props


def proposal_recall(dataset: DetectionDataset, proposals: dict, top_n: int | None = None,
                    counts: tuple[int, ...] = DEFAULT_COUNTS, include_difficult: bool = True) -> RecallReport:
    """Recall of ``proposals`` on ``dataset``'s objects.

    Args:
        proposals: ``{image_id: [P, 4] xyxy array or Proposals}``, best-ranked first.
        top_n: use only each image's top ``top_n`` proposals (None: all).
        counts: the N of AR@N.
        include_difficult: count VOC 'difficult' objects.

    Raises:
        InputError: a key of ``proposals`` that is not an image id of ``dataset``.
    """
    ids = {int(img.image_id) for img in dataset.images}
    unknown = [k for k in proposals if int(k) not in ids]
    if unknown:
        raise InputError(f"proposals for {len(unknown)} image ids the ground truth lacks: {unknown[:5]}")
    missing = len(ids) - len(proposals)
    if missing:
        log.warning("%d of %d images have no proposals entry (their objects count as missed)", missing, len(ids))
    counts = tuple(int(n) for n in counts)
    best, labels, areas, n_props = _objects(dataset, proposals, top_n, counts, include_difficult)
    per_class, abos = {}, []
    for k, name in enumerate(dataset.classes):
        s = _stats(best[labels == k], ())
        per_class[name] = {"objects": s.objects, "coverage": s.coverage, "ABO": s.abo}
        if s.objects:
            abos.append(s.abo)
    by_size = {name: _stats(best[(areas >= lo) & (areas <= hi)], counts) for name, (lo, hi) in SIZE_RANGES.items()}
    return RecallReport(overall=_stats(best, counts), mabo=float(np.mean(abos)) if abos else float("nan"),
                        by_size=by_size, per_class=per_class, images=len(dataset.images),
                        mean_proposals=float(np.mean(n_props)) if n_props else 0.0, top_n=top_n,
                        counts={"images_without_proposals": missing})
