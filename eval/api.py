"""One entry point for every detection protocol: ``evaluate(dataset, dets, protocol)``.

Used by the training loops (per-epoch validation mAP), ``tools/test.py`` and ``tools/eval.py``.
Detections are ``{image_id: Detections}`` (xyxy boxes, contiguous labels, see
:mod:`core.structures`); an image without an entry has no detections.

* ``"ilsvrc"``: the ILSVRC2014 devkit's rules (:mod:`eval.ilsvrc`); each image's devkit index is
  its 1-based position in ``dataset.images``; no blacklist unless one is given.
* ``"voc"`` / ``"voc07"``: the VOC devkit's rules (:mod:`eval.voc`), all-point / 11-point AP.
* ``"coco"``: the twelve official numbers from a COCO engine (:mod:`eval.coco`).
"""
from __future__ import annotations

import numpy as np

from core.structures import DetectionDataset, Detections
from eval.ap import ClassResults
from eval.coco import STAT_KEYS, CocoResult, dataset_to_coco, detections_to_results, evaluate_coco
from eval.ilsvrc import evaluate_detections as evaluate_ilsvrc_detections
from eval.report import EvalReport
from eval.voc import evaluate_voc_detections

__all__ = ["PROTOCOLS", "evaluate", "class_report", "coco_report"]

PROTOCOLS = ("ilsvrc", "voc", "voc07", "coco")


def class_report(protocol: str, result: ClassResults) -> EvalReport:
    """An :class:`EvalReport` from a devkit-style result (ILSVRC, VOC).

    ``mAP`` is the mean over classes whose AP is not NaN; ``stats`` holds the median, the
    devkit's plain mean (None when NaN), positives per class and the detection counts.
    """
    plain = float(result.ap.mean()) if len(result.ap) else float("nan")
    stats = {"median_AP": result.median_ap, "devkit_mean": plain, "classes_scored": len(result.classes),
             **result.counts, "npos": dict(zip(result.classes, result.npos.tolist()))}
    return EvalReport(protocol, result.mean_ap, dict(zip(result.classes, result.ap.tolist())), stats,
                      details=result)


def coco_report(result: CocoResult, classes: list[str]) -> EvalReport:
    """An :class:`EvalReport` from COCO numbers: ``mAP`` = AP@[.5:.95]; per class AP@[.5:.95]
    (-1 for a class without ground truth, as pycocotools)."""
    per_class = dict(zip(classes, result.per_category.tolist()))
    return EvalReport("coco", result.stats["AP"], per_class, {k: result.stats[k] for k in STAT_KEYS},
                      details=result)


def evaluate(dataset: DetectionDataset, dets: dict[int, Detections], protocol: str,
             blacklist: list[tuple[int, str]] | None = None) -> EvalReport:
    """Score ``dets`` against ``dataset`` under ``protocol``.

    Args:
        dataset: ground truth (any format's reader; VOC difficult flags and COCO crowd/area used
            by their protocols).
        dets: ``{image_id: Detections}``; ids must be the dataset's.
        protocol: one of :data:`PROTOCOLS`.
        blacklist: ILSVRC only: ``[(1-based image position, class id)]`` pairs to ignore.

    Raises:
        InputError: an image id the dataset lacks, or a label outside ``0..K-1``.
        ValueError: an unknown protocol.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; use one of {PROTOCOLS}")
    if protocol == "ilsvrc":
        return class_report(protocol, evaluate_ilsvrc_detections(dataset, dets, blacklist))
    if blacklist:
        raise ValueError("a blacklist applies to the ilsvrc protocol only")
    if protocol in ("voc", "voc07"):
        return class_report(protocol, evaluate_voc_detections(dataset, dets, use_07=protocol == "voc07"))
    result = evaluate_coco(dataset_to_coco(dataset), detections_to_results(dataset, dets), where="detections")
    return coco_report(result, _classes_by_id(dataset, result.category_ids))


def _classes_by_id(dataset: DetectionDataset, category_ids: list[int]) -> list[str]:
    """Class names in the engine's category order (ascending id)."""
    from core.formats.coco import category_ids as ids_of
    name = dict(zip(ids_of(dataset), dataset.classes))
    return [name[int(c)] for c in np.asarray(category_ids).tolist()]
