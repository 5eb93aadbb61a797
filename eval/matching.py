"""The one matching core the detection protocols (ILSVRC, VOC) share.

Shape letters: D detections, G ground-truth objects, P candidate (detection, object) pairs.

A *group* is one (image, class) pair encoded as one int64 key; a detection only ever meets the
objects of its own group. Detections are indexed in *processing order*: index ``i`` is processed
before ``j > i`` (the protocols sort them by descending score with their devkit's tie rules first).
Objects keep their file order inside a group, which decides ties of equal overlap.

Boxes here are the devkits' inclusive pixel coordinates ``[xmin, ymin, xmax, ymax]`` float64, and
IoU uses their ``+1`` widths with the exact operation order of ``VOCevaldet.m`` /
``eval_detection.m`` (so a comparison ``ov >= thr`` gives the devkit's answer bit for bit).

The protocols are small sets of rules around two matchers:

* :func:`greedy_skip_matched` (ILSVRC): a detection takes the best-overlapping object that passes
  its own threshold *and is not yet matched*; matched objects are skipped, not hit.
* :func:`best_overlap` + :func:`first_claims` (VOC): a detection goes to its best-overlapping
  object whether or not it is taken; only the first claim on an object is a true positive.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Pairs", "group_pairs", "inclusive_iou", "make_pairs", "greedy_skip_matched",
           "best_overlap", "first_claims"]


@dataclass(frozen=True)
class Pairs:
    """Every (detection, object) pair of the same group.

    Attributes:
        det: ``[P]`` int64 detection index, ascending (detection-major order).
        gt: ``[P]`` int64 object index; within one detection in the objects' file order.
        iou: ``[P]`` float64 devkit IoU; ``-inf`` where the boxes do not overlap
            (the devkit's ``iw > 0 & ih > 0`` test fails).
    """

    det: np.ndarray
    gt: np.ndarray
    iou: np.ndarray


def group_pairs(det_key: np.ndarray, gt_key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (detection, object) index pairs with equal keys, vectorised.

    Args:
        det_key: ``[D]`` int64 group key of each detection.
        gt_key: ``[G]`` int64 group key of each object.

    Returns:
        ``(det [P], gt [P])`` int64, detection-major; a detection's objects in index order.
    """
    order = np.argsort(gt_key, kind="stable")
    sorted_keys = gt_key[order]
    lo = np.searchsorted(sorted_keys, det_key, side="left")
    count = np.searchsorted(sorted_keys, det_key, side="right") - lo
    total = int(count.sum())
    det = np.repeat(np.arange(len(det_key), dtype=np.int64), count)
    # position of each pair inside its detection's run of objects
    start = np.repeat(np.cumsum(count) - count, count)
    within = np.arange(total, dtype=np.int64) - start
    gt = order[np.repeat(lo, count) + within]
    return det, gt.astype(np.int64, copy=False)


def inclusive_iou(det_boxes: np.ndarray, gt_boxes: np.ndarray, det: np.ndarray,
                  gt: np.ndarray) -> np.ndarray:
    """The devkits' IoU of the pairs ``(det[p], gt[p])``, ``-inf`` where they do not overlap.

    Args:
        det_boxes: ``[D, 4]`` float64 inclusive ``[xmin, ymin, xmax, ymax]``.
        gt_boxes: ``[G, 4]`` float64, same convention.
        det, gt: ``[P]`` pair indices.

    Returns:
        ``[P]`` float64: ``iw*ih / ua`` with ``iw = min(xmax) - max(xmin) + 1`` and
        ``ua = (bb3-bb1+1)*(bb4-bb2+1) + (gt3-gt1+1)*(gt4-gt2+1) - iw*ih``, in that operation order.
    """
    b = det_boxes[det]
    g = gt_boxes[gt]
    iw = np.minimum(b[:, 2], g[:, 2]) - np.maximum(b[:, 0], g[:, 0]) + 1
    ih = np.minimum(b[:, 3], g[:, 3]) - np.maximum(b[:, 1], g[:, 1]) + 1
    inter = iw * ih
    ua = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1) + (g[:, 2] - g[:, 0] + 1) * (g[:, 3] - g[:, 1] + 1) - inter
    overlap = (iw > 0) & (ih > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(overlap, inter / np.where(overlap, ua, 1.0), -np.inf)


def make_pairs(det_key: np.ndarray, det_boxes: np.ndarray, gt_key: np.ndarray,
               gt_boxes: np.ndarray) -> Pairs:
    """:func:`group_pairs` plus their :func:`inclusive_iou`."""
    det, gt = group_pairs(np.asarray(det_key, np.int64), np.asarray(gt_key, np.int64))
    return Pairs(det, gt, inclusive_iou(det_boxes, gt_boxes, det, gt))


def _segments(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For a sorted id array: the start of each run and each element's run number."""
    new = np.empty(len(ids), bool)
    new[:1] = True
    np.not_equal(ids[1:], ids[:-1], out=new[1:])
    return np.flatnonzero(new), np.cumsum(new) - 1


def _first_best(det: np.ndarray, gt: np.ndarray, iou: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per detection run (``det`` sorted), the pair with the highest IoU, the first on ties.

    Returns the winning pairs' ``(det, gt)``. The first of equal overlaps wins because the devkits
    update their running maximum only on ``ov > ovmax``.
    """
    starts, seg = _segments(det)
    best = np.maximum.reduceat(iou, starts)
    win = np.flatnonzero(iou == best[seg])
    win_seg = seg[win]
    first = win[np.concatenate(([True], win_seg[1:] != win_seg[:-1]))]
    return det[first], gt[first]


def _rank_in_group(cand: np.ndarray, det_key: np.ndarray) -> np.ndarray:
    """For candidate detections ``cand`` (ascending indices): their rank inside their group."""
    keys = det_key[cand]
    order = np.lexsort((cand, keys))
    starts, seg = _segments(keys[order])
    rank = np.empty(len(cand), np.int64)
    rank[order] = np.arange(len(cand)) - starts[seg]
    return rank


def greedy_skip_matched(pairs: Pairs, acceptable: np.ndarray, det_key: np.ndarray,
                        n_gt: int) -> np.ndarray:
    """ILSVRC matching: each detection, in processing order, takes the free object with the highest
    IoU among its acceptable pairs (first on ties); objects already matched are skipped.

    Exact greedy semantics, vectorised in *rounds*: round ``r`` processes the ``r``-th candidate
    detection of every group at once. Groups share no objects, so one round has no conflicts, and
    a detection only waits for the earlier detections of its own group. Most groups need one
    round; the loop runs max-candidates-per-group times.

    Args:
        pairs: the groups' pairs (:func:`make_pairs`).
        acceptable: ``[P]`` bool, e.g. ``iou >= thr[gt]`` (never true where ``iou`` is ``-inf``).
        det_key: ``[D]`` group keys (to rank detections inside their group).
        n_gt: G.

    Returns:
        ``[D]`` int64: the matched object index, or -1 (a false positive or an ignored detection).
    """
    matched = np.full(len(det_key), -1, np.int64)
    det, gt, iou = pairs.det[acceptable], pairs.gt[acceptable], pairs.iou[acceptable]
    if not len(det):
        return matched
    cand, cand_of_pair = np.unique(det, return_inverse=True)
    pair_rank = _rank_in_group(cand, np.asarray(det_key, np.int64))[cand_of_pair]
    order = np.argsort(pair_rank, kind="stable")  # keeps detection-major, object order inside
    det, gt, iou, pair_rank = det[order], gt[order], iou[order], pair_rank[order]
    bounds = np.searchsorted(pair_rank, np.arange(pair_rank[-1] + 2))
    taken = np.zeros(n_gt, bool)
    for r in range(len(bounds) - 1):
        s = slice(bounds[r], bounds[r + 1])
        free = ~taken[gt[s]]
        if not free.any():
            continue
        win_det, win_gt = _first_best(det[s][free], gt[s][free], iou[s][free])
        matched[win_det] = win_gt
        taken[win_gt] = True
    return matched


def best_overlap(pairs: Pairs, n_det: int) -> tuple[np.ndarray, np.ndarray]:
    """VOC matching step: each detection's best-overlapping object of its group, taken or not.

    Returns:
        ``(gt [D] int64, iou [D] float64)``: the object with the highest IoU (the first on ties),
        or ``-1`` and ``-inf`` for a detection that overlaps no object.
    """
    best_gt = np.full(n_det, -1, np.int64)
    best_iou = np.full(n_det, -np.inf)
    hit = pairs.iou > -np.inf
    if hit.any():
        d, g = _first_best(pairs.det[hit], pairs.gt[hit], pairs.iou[hit])
        best_gt[d] = g
        best_iou[d] = np.maximum.reduceat(pairs.iou[hit], _segments(pairs.det[hit])[0])
    return best_gt, best_iou


def first_claims(target: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    """``[D]`` bool: eligible detections that are the first (lowest index) to claim their target.

    Args:
        target: ``[D]`` int64 object each detection claims.
        eligible: ``[D]`` bool, which detections make a claim.
    """
    out = np.zeros(len(target), bool)
    idx = np.flatnonzero(eligible)
    if len(idx):
        _, first = np.unique(target[idx], return_index=True)
        out[idx[first]] = True
    return out
