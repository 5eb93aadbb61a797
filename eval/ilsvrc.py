"""ILSVRC detection evaluation, exactly as the ILSVRC2014 devkit's ``eval_detection.m`` + ``VOCap.m``.

Shape letters: D detections, G ground-truth objects, K classes of the dataset, C classes scored.

The rules (``docs/method.md`` §5.1), each mirrored from the devkit:

* Boxes are the devkit's 0-based inclusive pixels; IoU uses ``+1`` widths.
* Each object has its own threshold ``min(0.5, w*h / ((w+10)(h+10)))`` (``w = xmax-xmin+1``) and
  a detection matches it when ``ov >= thr`` (equality matches).
* Per image, detections in descending confidence take the best-overlapping object of their class
  that passes its threshold; an object already detected is *skipped* (a duplicate may still take
  another object of the class, else it is a false positive).
* Ties keep the devkit's order: stable sorts, so equal confidences stay ordered by image index,
  then by line of the submission.
* A blacklisted (image, class) pair: its detections are neither TP nor FP (they stay in the
  curve as ``0/0`` rows, as in the devkit) and its objects leave the positive count.
* Classes scored: 1 .. the largest class with a box. A class without positives scores 0 without
  detections and NaN with any (``0/0`` recall).
* AP is the all-point envelope AP, MATLAB's ``max`` ignoring NaN.

Where the devkit crashes or silently corrupts, we decide, and say so:

* Detections on image indices that are not in the image list make the devkit fail; here they are
  **ignored** and a warning counts them.
* A DET_ID not in the meta file: the devkit would index past its arrays; here a clear
  :class:`~core.errors.InputError` names the file and line. An unknown WNID in a blacklist is an
  error too (unknown WNIDs in the XMLs are rejected by :func:`core.formats.ilsvrc.read_ilsvrc`).
* The devkit's mean AP is NaN as soon as one class is NaN; we report the mean over the classes
  that are not NaN (``nanmean``), warn naming the NaN classes, and keep the devkit's plain mean in
  ``stats["devkit_mean"]`` (``None`` when NaN). A class without positives scores 0 without
  detections but NaN with any, so detections on such classes leave them out of the mean and raise
  it: the counts ``classes_without_positives`` and ``classes_without_positives_detected`` say how
  many, and the warning names them.
"""
from __future__ import annotations

import logging

import numpy as np

from core.errors import InputError
from core.structures import DetectionDataset, Detections
from eval.ap import ClassResults, class_curves, voc_ap
from eval.inputs import flatten_detections
from eval.matching import greedy_skip_matched, make_pairs

__all__ = ["IlsvrcResult", "PIXEL_TOLERANCE", "DEFAULT_IOU", "object_thresholds",
           "ground_truth_arrays", "evaluate_ilsvrc", "evaluate_detections", "evaluate_submission",
           "det_id_labels"]

log = logging.getLogger(__name__)

DEFAULT_IOU = 0.5  # eval_detection.m: defaultIOUthr
PIXEL_TOLERANCE = 10  # eval_detection.m: pixelTolerance (about 5 px of slack on each side)


IlsvrcResult = ClassResults  # counts: detections, unlisted_image, blacklisted, class_not_scored,
# blacklisted_objects, classes_without_positives, classes_without_positives_detected


def object_thresholds(boxes: np.ndarray) -> np.ndarray:
    """``[G]`` per-object IoU thresholds ``min(0.5, w*h / ((w+10)(h+10)))`` for inclusive boxes ``[G, 4]``."""
    gt_w = boxes[:, 3] - boxes[:, 1] + 1  # the devkit names the height gt_w; the product is the same
    gt_h = boxes[:, 2] - boxes[:, 0] + 1
    thr = (gt_w * gt_h) / ((gt_w + PIXEL_TOLERANCE) * (gt_h + PIXEL_TOLERANCE))
    return np.minimum(DEFAULT_IOU, thr)


def ground_truth_arrays(dataset: DetectionDataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The dataset's objects as flat arrays in image-list then file order.

    Returns:
        ``(image [G] int64 position in dataset.images, label [G] int64, boxes [G, 4] float64)``
        with boxes back in the devkit's 0-based inclusive pixels (``xmax = x2 - 1``).
    """
    counts = [len(img.labels) for img in dataset.images]
    image = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    if not sum(counts):
        return image, np.zeros(0, np.int64), np.zeros((0, 4))
    label = np.concatenate([img.labels for img in dataset.images]).astype(np.int64)
    boxes = np.concatenate([img.boxes for img in dataset.images]).astype(np.float64)
    boxes[:, 2:] -= 1
    return image, label, boxes


def _image_positions(ids: np.ndarray, image_index: np.ndarray) -> np.ndarray:
    """``[D]`` position in the image list ``ids`` (``[N]`` devkit indices) of each image index, -1
    if not listed."""
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    at = np.minimum(np.searchsorted(sorted_ids, image_index), max(len(ids) - 1, 0))
    found = (sorted_ids[at] == image_index) if len(ids) else np.zeros(len(image_index), bool)
    return np.where(found, order[at] if len(ids) else -1, -1)


def _blacklist_keys(dataset: DetectionDataset, ids: np.ndarray, blacklist, where: str) -> np.ndarray:
    """Sorted group keys ``position * K + label`` of the blacklisted (image, class) pairs."""
    if not blacklist:
        return np.zeros(0, np.int64)
    wnid_label = {str(w): k for k, w in enumerate(dataset.class_ids)}
    labels = []
    for i, (_, wnid) in enumerate(blacklist):
        if wnid not in wnid_label:
            raise InputError(f"{where}: entry {i + 1}: unknown WNID {wnid!r}")
        labels.append(wnid_label[wnid])
    pos = _image_positions(ids, np.array([int(b[0]) for b in blacklist], np.int64))
    keys = pos * len(dataset.classes) + np.array(labels, np.int64)
    return np.unique(keys[pos >= 0])  # pairs on unlisted images have no effect in the devkit


def _check_labels(labels: np.ndarray, n_classes: int) -> None:
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"detection labels must be in 0..{n_classes - 1}")


def _devkit_order(image_index: np.ndarray, score: np.ndarray, line: np.ndarray | None,
                  listed: np.ndarray) -> np.ndarray:
    """Indices of the listed detections in the devkit's processing order.

    Descending confidence; equal confidences by image index, then by line (the devkit's stable
    sorts). Rows arrive in line order when ``line`` is None, and a stable sort keeps that order.
    """
    rows = np.flatnonzero(listed)
    if line is None:
        return rows[np.lexsort((image_index[rows], -score[rows]))]
    return rows[np.lexsort((line[rows], image_index[rows], -score[rows]))]


def evaluate_ilsvrc(dataset: DetectionDataset, image_index: np.ndarray, labels: np.ndarray,
                    scores: np.ndarray, boxes: np.ndarray, line: np.ndarray | None = None,
                    blacklist=None, blacklist_name: str = "blacklist",
                    list_index: np.ndarray | None = None) -> IlsvrcResult:
    """Score detections with the devkit's rules.

    Args:
        dataset: the ground truth, labels in DET_ID order (:func:`core.formats.ilsvrc.read_ilsvrc`).
        image_index: ``[D]`` int64 devkit image index of each detection.
        labels: ``[D]`` int64 contiguous class labels (DET_ID - 1 in the real meta file).
        scores: ``[D]`` float64 confidences.
        boxes: ``[D, 4]`` float64 devkit inclusive ``[xmin, ymin, xmax, ymax]``.
        line: ``[D]`` tie-break order (the submission's line numbers); None = row order.
        blacklist: ``[(image_index, wnid), ...]`` pairs to ignore, or None.
        blacklist_name: how to name the blacklist in error messages.
        list_index: ``[N]`` devkit index of each dataset image; default their ``image_id``
            (the image list's index, as :func:`~core.formats.ilsvrc.read_ilsvrc` sets it).
    """
    n_classes = len(dataset.classes)
    labels = np.asarray(labels, np.int64)
    _check_labels(labels, n_classes)
    if list_index is None:
        list_index = np.array([int(img.image_id) for img in dataset.images], np.int64)
    image_index = np.asarray(image_index, np.int64)
    pos = _image_positions(list_index, image_index)
    counts = {"detections": int(len(labels)), "unlisted_image": int((pos < 0).sum())}
    if counts["unlisted_image"]:
        log.warning("ignored %d detections on image indices not in the image list", counts["unlisted_image"])
    order = _devkit_order(image_index, np.asarray(scores, np.float64), line, pos >= 0)
    black = _blacklist_keys(dataset, list_index, blacklist, blacklist_name)
    return _score(dataset, pos[order] * n_classes + labels[order],
                  np.asarray(boxes, np.float64).reshape(-1, 4)[order], black, counts)


def _score(dataset: DetectionDataset, det_key: np.ndarray, det_boxes: np.ndarray, black: np.ndarray,
           counts: dict) -> IlsvrcResult:
    """Match and accumulate detections already in processing order.

    ``det_key = position * K + label`` per detection; ``black`` the sorted blacklisted keys.
    """
    n_classes = len(dataset.classes)
    labels = det_key % n_classes
    gt_img, gt_label, gt_boxes = ground_truth_arrays(dataset)
    scored = int(gt_label.max()) + 1 if len(gt_label) else 0
    gt_key = gt_img * n_classes + gt_label
    det_black = np.isin(det_key, black)
    gt_black = np.isin(gt_key, black)
    npos = np.bincount(gt_label[~gt_black], minlength=scored)[:scored]
    counts.update(blacklisted=int(det_black.sum()), class_not_scored=int((labels >= scored).sum()),
                  blacklisted_objects=int(gt_black.sum()))
    # blacklisted detections and objects get keys that meet nothing
    pairs = make_pairs(np.where(det_black, -1, det_key), det_boxes, np.where(gt_black, -2, gt_key), gt_boxes)
    acceptable = pairs.iou >= object_thresholds(gt_boxes)[pairs.gt]
    matched = greedy_skip_matched(pairs, acceptable, det_key, len(gt_key))
    tp = matched >= 0
    curves = class_curves(labels, tp, ~tp & ~det_black, npos)
    detected = np.bincount(labels[labels < scored], minlength=scored)[:scored] > 0
    counts.update(classes_without_positives=int((npos == 0).sum()),
                  classes_without_positives_detected=int(((npos == 0) & detected).sum()))
    ap = np.array([voc_ap(c) for c in curves], np.float64)
    result = IlsvrcResult(list(dataset.classes[:scored]), ap, curves, npos.astype(np.int64), counts)
    _warn(result, n_classes)
    return result


def evaluate_detections(dataset: DetectionDataset, dets: dict[int, Detections],
                        blacklist=None) -> IlsvrcResult:
    """The devkit's rules on in-memory detections (``{image_id: Detections}``, xyxy boxes).

    Each image's devkit index is its 1-based position in ``dataset.images``, and the detections
    are taken in dataset then per-image order, as :func:`core.formats.ilsvrc.submission_from_detections`
    writes a submission. ``blacklist`` pairs use those indices and the dataset's ``class_ids``.

    Raises:
        InputError: detections for an image id the dataset lacks, or a label outside ``0..K-1``.
    """
    flat = flatten_detections(dataset, dets)
    boxes = flat.boxes.copy()
    boxes[:, 2:] -= 1  # xyxy -> 0-based inclusive (core.boxes.xyxy_to_ilsvrc, in float64)
    return evaluate_ilsvrc(dataset, flat.pos + 1, flat.labels, flat.scores, boxes, blacklist=blacklist,
                           list_index=np.arange(1, len(dataset.images) + 1, dtype=np.int64))


def _warn(result: IlsvrcResult, n_classes: int) -> None:
    without = [name for name, n, ap in zip(result.classes, result.npos, result.ap) if n == 0 and np.isnan(ap)]
    if without:  # the devkit's own rule, kept for parity; say what it does to the mean
        log.warning("%d classes have detections but no ground truth (%s): their AP is NaN (the devkit's "
                    "0/0 recall), so they are left out of the mAP; without those detections they would "
                    "score 0 and lower it", len(without), ", ".join(without[:10]) + (" ..." if len(without) > 10 else ""))
    else:
        result.warn_nan()
    if len(result.classes) < n_classes:
        log.warning("only classes 1..%d are scored (the largest class with a box); %d detections of "
                    "later classes ignored", len(result.classes), result.counts["class_not_scored"])


def det_id_labels(det_id: np.ndarray, line: np.ndarray, synsets, dataset: DetectionDataset,
                  path: str) -> np.ndarray:
    """Map submission DET_IDs to the dataset's labels via the meta file's WNIDs.

    Raises:
        InputError: ``"<path>:<line>: unknown DET_ID n"`` for the first DET_ID not in the meta.
    """
    wnid_label = {str(w): k for k, w in enumerate(dataset.class_ids)}
    table = {int(s.det_id): wnid_label.get(s.wnid, -1) for s in synsets}
    ids = np.array(sorted(table), np.int64)
    values = np.array([table[i] for i in ids], np.int64)
    at = np.minimum(np.searchsorted(ids, det_id), max(len(ids) - 1, 0))
    ok = (ids[at] == det_id) if len(ids) else np.zeros(len(det_id), bool)
    labels = np.where(ok, values[at] if len(ids) else -1, -1)
    bad = np.flatnonzero(labels < 0)
    if len(bad):
        i = bad[np.argmin(line[bad])]
        known = f"{ids.min()}..{ids.max()}" if len(ids) else "none"
        raise InputError(f"{path}:{int(line[i])}: unknown DET_ID {int(det_id[i])} (the meta file has {known})")
    return labels


def evaluate_submission(dataset: DetectionDataset, submission, synsets, path: str,
                        blacklist=None, blacklist_name: str = "blacklist") -> IlsvrcResult:
    """Score a parsed devkit submission (:func:`core.formats.ilsvrc.read_submission`).

    Args:
        submission: arrays ``image_index, det_id, score, boxes [D, 4] (raw inclusive), line``.
        synsets: the meta file's :class:`~core.formats.ilsvrc.Synset` list (DET_ID → WNID).
        path: the submission's path, for error messages.
    """
    labels = det_id_labels(submission.det_id, submission.line, synsets, dataset, path)
    return evaluate_ilsvrc(dataset, submission.image_index, labels, submission.score, submission.boxes,
                           submission.line, blacklist, blacklist_name)
