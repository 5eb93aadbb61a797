"""PASCAL VOC detection evaluation, as the VOC devkit's ``VOCevaldet.m``.

Shape letters: D detections, G ground-truth objects, K classes.

Rules (``shared/METHOD.md`` §5.2):

* Per class, detections in descending confidence (ties in file order: stable sort) each go to the
  object of their image with the highest IoU (``+1`` pixel widths, first object on equal IoU),
  *taken or not*.
* If that IoU ``>= 0.5``: a 'difficult' object makes the detection ignored (neither TP nor FP);
  else the first detection on the object is a TP and later ones are FPs (duplicates). Below 0.5:
  FP. Positives count only non-difficult objects.
* AP: VOC2007's 11-point interpolation (``voc07``) or the 2010+ all-point envelope (``voc``).

Differences from the common Python port (py-faster-rcnn ``voc_eval.py``), where we follow the
devkit: the port tests ``ovmax > 0.5`` (strict), so a detection at exactly 0.5 is a false positive
there and a match here; and its 11 recall thresholds come from ``np.arange(0, 1.1, 0.1)``, whose
0.6 and 0.7 are a hair above MATLAB's (:data:`eval.ap.VOC07_THRESHOLDS`).

Tie order across images: the devkit keeps the line order of the per-class result file. The
detections reach us per image (:func:`core.formats.voc.read_voc_results`), so equal scores are
ordered by the image list, then by their order within the image, which is the file order whenever
the file was written in image-list order (as R-CNN's writer does).
"""
from __future__ import annotations

import logging

import numpy as np

from core.boxes import xyxy_to_voc
from core.structures import DetectionDataset, Detections
from eval.ap import ClassResults, class_curves, voc07_ap, voc_ap
from eval.inputs import flatten_detections
from eval.matching import best_overlap, first_claims, make_pairs

__all__ = ["MIN_OVERLAP", "evaluate_voc", "evaluate_voc_detections", "voc_ground_truth"]

log = logging.getLogger(__name__)

MIN_OVERLAP = 0.5  # VOCopts.minoverlap


def voc_ground_truth(dataset: DetectionDataset) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(image [G] position, label [G], boxes [G, 4] devkit coords, difficult [G] bool)``."""
    counts = [len(img.labels) for img in dataset.images]
    image = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    if not sum(counts):
        return image, np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0, bool)
    label = np.concatenate([img.labels for img in dataset.images]).astype(np.int64)
    boxes = xyxy_to_voc(np.concatenate([img.boxes for img in dataset.images]), np.float64)
    difficult = np.concatenate([img.difficult for img in dataset.images]).astype(bool)
    return image, label, boxes, difficult


def evaluate_voc(dataset: DetectionDataset, image_pos: np.ndarray, labels: np.ndarray,
                 scores: np.ndarray, boxes: np.ndarray, use_07: bool = False,
                 tie_order: np.ndarray | None = None) -> ClassResults:
    """Score detections with the VOC devkit's rules.

    Args:
        dataset: ground truth (:func:`core.formats.voc.read_voc`), with difficult flags.
        image_pos: ``[D]`` int64 position of each detection's image in ``dataset.images``.
        labels: ``[D]`` int64 contiguous class labels.
        scores: ``[D]`` confidences.
        boxes: ``[D, 4]`` xyxy continuous pixels (converted here to the devkit's 1-based inclusive).
        use_07: 11-point AP (VOC2007) instead of all-point.
        tie_order: ``[D]`` order among equal scores (default: row order).

    Returns:
        :class:`~eval.ap.ClassResults` over all K classes of the dataset.
    """
    n_classes = len(dataset.classes)
    labels = np.asarray(labels, np.int64)
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"detection labels must be in 0..{n_classes - 1}")
    tie = np.arange(len(labels)) if tie_order is None else np.asarray(tie_order)
    order = np.lexsort((tie, -np.asarray(scores, np.float64)))
    pos, labels = np.asarray(image_pos, np.int64)[order], labels[order]
    det_boxes = xyxy_to_voc(np.asarray(boxes)[order], np.float64)

    gt_img, gt_label, gt_boxes, difficult = voc_ground_truth(dataset)
    pairs = make_pairs(pos * n_classes + labels, det_boxes, gt_img * n_classes + gt_label, gt_boxes)
    best_gt, best_iou = best_overlap(pairs, len(labels))
    hit = best_iou >= MIN_OVERLAP  # the devkit's >=; py-faster-rcnn's port uses >
    ignored = np.zeros(len(hit), bool)
    ignored[hit] = difficult[best_gt[hit]]
    tp = first_claims(best_gt, hit & ~ignored)
    fp = ~tp & ~ignored
    npos = np.bincount(gt_label[~difficult], minlength=n_classes)
    curves = class_curves(labels, tp, fp, npos)
    ap_fn = voc07_ap if use_07 else voc_ap
    counts = {"detections": int(len(labels)), "difficult_ignored": int(ignored.sum())}
    result = ClassResults(list(dataset.classes), np.array([ap_fn(c) for c in curves]), curves,
                          npos.astype(np.int64), counts)
    result.warn_nan()
    return result


def evaluate_voc_detections(dataset: DetectionDataset, dets: dict[int, Detections],
                            use_07: bool = False) -> ClassResults:
    """:func:`evaluate_voc` on per-image :class:`Detections` keyed by ``image_id`` (xyxy boxes).

    Ties are ordered by the image list, then by order within the image (see the module notes).

    Raises:
        InputError: detections for an image the list lacks (the devkit's "unrecognized image"),
            or a label outside ``0..K-1``.
    """
    flat = flatten_detections(dataset, dets)
    return evaluate_voc(dataset, flat.pos, flat.labels, flat.scores, flat.boxes, use_07=use_07)
