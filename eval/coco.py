"""COCO box evaluation: the twelve official numbers, computed by pycocotools or faster-coco-eval.

We never re-implement COCO's rules (``docs/method.md`` §5.3); we feed an engine and read its
arrays. This module only removes the engines' traps:

* An empty results list: pycocotools' ``loadRes`` crashes on it (``anns[0]``); we build the empty
  results object ourselves, and the engine then gives its numbers for no detections (0 for
  categories with ground truth, -1 where nothing is defined).
* Results on image ids the ground truth lacks: pycocotools asserts; we raise a clear
  :class:`~core.errors.InputError`. Unknown category ids, which the engines silently drop, are an
  error too.
* Non-contiguous category ids and categories without ground truth need nothing: the engines key
  by id and give -1 to classes without ground truth, which stay out of the means.
* The engines print; library code logs instead (their output goes to the debug log).

Engines: ``"pycocotools"`` (the default: the official numbers by definition) or ``"faster"``
(faster-coco-eval 1.8: several times faster on large sets, but its sums differ from pycocotools'
in the last bit, about 1e-16, on some inputs, so it is opt-in). Boxes are COCO ``[x, y, w, h]``
continuous pixels.
"""
from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np

from core.boxes import xyxy_to_coco_xywh
from core.errors import InputError
from core.structures import DetectionDataset, Detections
from eval.inputs import flatten_detections

__all__ = ["STAT_KEYS", "ENGINES", "CocoConfig", "CocoResult", "evaluate_coco", "dataset_to_coco", "detections_to_results"]

log = logging.getLogger(__name__)

# the order of COCOeval.stats (pycocotools' summarize())
STAT_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
ENGINES = ("pycocotools", "faster")


@dataclass(frozen=True)
class CocoConfig:
    """How ``tools/eval.py --protocol coco`` computes (``--set coco.engine=faster``)."""

    engine: Literal["pycocotools", "faster"] = "pycocotools"  # see the module notes


@dataclass
class CocoResult:
    """The twelve numbers, per-category AP@[.5:.95] and the engine's precision array.

    Attributes:
        stats: ``{key: value}`` for :data:`STAT_KEYS`; -1 where undefined (as pycocotools).
        category_ids: ``[K]`` the ground truth's category ids, ascending.
        per_category: ``[K]`` AP@[.5:.95] (area all, 100 detections); -1 without ground truth.
        precision: ``[T, R, K, A, M]`` pycocotools' ``eval["precision"]``.
    """

    stats: dict
    category_ids: list[int]
    per_category: np.ndarray
    precision: np.ndarray


@contextlib.contextmanager
def _quiet():
    """Send an engine's prints to the debug log."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        yield
    if buf.getvalue().strip():
        log.debug(buf.getvalue().rstrip())


def _engine(name: str):
    """``(COCO, COCOeval)`` classes of the chosen engine."""
    if name == "faster":
        from faster_coco_eval import COCO, COCOeval_faster
        return COCO, COCOeval_faster
    if name == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
        return COCO, COCOeval
    raise ValueError(f"unknown COCO engine {name!r}; use one of {ENGINES}")


def _index(coco_cls, data: dict):
    """A COCO object from an in-memory dict (both engines; no file, no prints)."""
    obj = coco_cls()
    obj.dataset = data
    with _quiet():
        obj.createIndex()
    return obj


def _check_results(gt: dict, results: list, where: str) -> None:
    """Image and category ids of ``results`` must exist in ``gt`` (the engines assert or drop)."""
    image_ids = {img["id"] for img in gt["images"]}
    cat_ids = {cat["id"] for cat in gt["categories"]}
    for i, res in enumerate(results):
        if not isinstance(res, dict):
            raise InputError(f"{where}: result {i}: expected an object, got {type(res).__name__}")
        if res.get("image_id") not in image_ids:
            raise InputError(f"{where}: result {i}: image_id {res.get('image_id')!r} is not in the ground truth")
        if res.get("category_id") not in cat_ids:
            raise InputError(f"{where}: result {i}: category_id {res.get('category_id')!r} is not in the ground truth")


def _with_defaults(gt: dict) -> dict:
    """``gt`` with ``iscrowd`` (0) and ``area`` (box area) filled in where an annotation lacks them;
    the engines raise KeyError on their absence, :func:`core.formats.coco.read_coco` allows it."""
    anns = gt.get("annotations", [])
    if all("iscrowd" in a and "area" in a for a in anns):
        return gt
    filled = [{"iscrowd": 0, "area": float(a["bbox"][2] * a["bbox"][3]), **a} for a in anns]
    return {**gt, "annotations": filled}


def _load_results(gt_obj, coco_cls, gt: dict, results: list):
    """The results object; built by hand when empty (pycocotools' ``loadRes`` crashes on [])."""
    if not results:
        return _index(coco_cls, {"images": list(gt["images"]), "categories": list(gt["categories"]),
                                 "annotations": []})
    with _quiet():
        return gt_obj.loadRes([dict(r) for r in results])  # loadRes writes area/id into the dicts


def run_engine(gt: dict, results: list, engine: str = "pycocotools", iou_thrs=None, max_dets=None,
               area_ranges=None):
    """Run an engine's evaluate + accumulate + summarize; return the evaluator object.

    ``iou_thrs``, ``max_dets`` and ``area_ranges`` (``[[lo, hi], ...]`` with labels all/small/...)
    override the defaults (used by the benchmark); leave them None for the official numbers.
    """
    coco_cls, eval_cls = _engine(engine)
    gt = _with_defaults(gt)
    gt_obj = _index(coco_cls, gt)
    dt_obj = _load_results(gt_obj, coco_cls, gt, results)
    ev = eval_cls(gt_obj, dt_obj, "bbox")
    if iou_thrs is not None:
        ev.params.iouThrs = np.asarray(iou_thrs, np.float64)
    if max_dets is not None:
        ev.params.maxDets = list(max_dets)
    if area_ranges is not None:
        ev.params.areaRng = [list(r) for r in area_ranges]
        ev.params.areaRngLbl = ["all", "small", "medium", "large"][:len(area_ranges)]
    with _quiet():
        ev.evaluate()
        ev.accumulate()
        if iou_thrs is None and max_dets is None and area_ranges is None:
            ev.summarize()
    return ev


def evaluate_coco(gt: dict, results: list, engine: str = "pycocotools", where: str = "results") -> CocoResult:
    """The official COCO box numbers.

    Args:
        gt: a COCO instances dict (``images``, ``annotations``, ``categories``).
        results: a COCO results list ``[{image_id, category_id, bbox: [x, y, w, h], score}]``.
        engine: ``"pycocotools"`` or ``"faster"``.
        where: how to name the results in error messages (e.g. their file).

    Raises:
        InputError: a result's image or category id is not in the ground truth.
    """
    _check_results(gt, results, where)
    ev = run_engine(gt, results, engine)
    precision = np.asarray(ev.eval["precision"])
    m = list(ev.params.maxDets).index(100)
    per_cat = []
    for k in range(precision.shape[2]):
        s = precision[:, :, k, 0, m]
        per_cat.append(float(s[s > -1].mean()) if (s > -1).any() else -1.0)
    stats = {key: float(v) for key, v in zip(STAT_KEYS, ev.stats[:12])}
    return CocoResult(stats, [int(c) for c in ev.params.catIds], np.array(per_cat), precision)


def dataset_to_coco(dataset: DetectionDataset) -> dict:
    """A COCO instances dict of ``dataset`` (boxes xyxy → xywh; areas from ``area``).

    Category ids are ``class_ids`` when they are ints, else ``1..K``. Values pass through float32
    (the dataset's storage), so numbers may differ from evaluating the original JSON in the last
    bits; the command line evaluates the original files.
    """
    from core.formats.coco import category_ids
    cats = category_ids(dataset)
    anns = []
    for img in dataset.images:
        xywh = xyxy_to_coco_xywh(img.boxes).astype(np.float64)
        for j in range(len(img.labels)):
            anns.append({"id": len(anns) + 1, "image_id": int(img.image_id),
                         "category_id": cats[int(img.labels[j])], "bbox": xywh[j].tolist(),
                         "area": float(img.area[j]), "iscrowd": int(img.iscrowd[j])})
    return {"images": [{"id": int(img.image_id), "width": int(img.width), "height": int(img.height),
                        "file_name": img.file_name} for img in dataset.images],
            "annotations": anns,
            "categories": [{"id": c, "name": n} for c, n in zip(cats, dataset.classes)]}


def detections_to_results(dataset: DetectionDataset, dets: dict[int, Detections]) -> list[dict]:
    """A COCO results list from per-image-id detections (labels → category ids, xyxy → xywh).

    Raises:
        InputError: an image id the dataset lacks, or a label outside ``0..K-1``.
    """
    from core.formats.coco import category_ids
    flat = flatten_detections(dataset, dets)
    cats = np.asarray(category_ids(dataset), np.int64)
    ids = np.array([int(img.image_id) for img in dataset.images], np.int64)
    xywh = flat.boxes.copy()
    xywh[:, 2:] -= xywh[:, :2]
    return [{"image_id": i, "category_id": c, "bbox": b, "score": s} for i, c, b, s in
            zip(ids[flat.pos].tolist(), cats[flat.labels].tolist(), xywh.tolist(), flat.scores.tolist())]
