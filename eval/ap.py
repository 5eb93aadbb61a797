"""Precision/recall curves and average precision, with the devkits' arithmetic.

Shape letters: D detections of one class in processing order (descending score).
``tp``/``fp`` flags may both be 0 for an *ignored* detection (ILSVRC blacklist, VOC difficult):
the devkits keep such rows in the cumulative sums, so precision there may be ``0/0 = NaN``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Curve", "ClassResults", "pr_curve", "voc_ap", "voc07_ap", "class_curves", "VOC07_THRESHOLDS"]

log = logging.getLogger(__name__)

# MATLAB's colon operator computes the first half of 0:0.1:1 from the start (k * 0.1) and the second
# half from the end (1 - (10 - k) * 0.1), so its 0.6 and 0.7 are the doubles nearest 0.6 and 0.7,
# while numpy's ``arange(0, 1.1, 0.1)`` (used by py-faster-rcnn) gives 0.6000000000000001 and
# 0.7000000000000001: a recall of exactly 3/5 counts for t = 0.6 only in the devkit.
VOC07_THRESHOLDS = np.concatenate((np.arange(6) * 0.1, 1.0 - np.arange(4, -1, -1) * 0.1))


@dataclass(frozen=True)
class Curve:
    """One class's precision/recall points, ``[D]`` float64 each, in processing order."""

    recall: np.ndarray
    precision: np.ndarray


@dataclass
class ClassResults:
    """Per-class results of an AP protocol (ILSVRC, VOC).

    Attributes:
        classes: names of the C classes scored.
        ap: ``[C]`` float64; NaN for a class without positives that has detections (``0/0``).
        curves: C precision/recall curves in processing order.
        npos: ``[C]`` int64 positives per class.
        counts: detections scored and ignored, by reason.
    """

    classes: list[str]
    ap: np.ndarray
    curves: list[Curve]
    npos: np.ndarray
    counts: dict = field(default_factory=dict)

    @property
    def mean_ap(self) -> float:
        """Mean AP over the classes that are not NaN (the devkits' plain mean would be NaN)."""
        finite = self.ap[~np.isnan(self.ap)]
        return float(finite.mean()) if len(finite) else float("nan")

    @property
    def median_ap(self) -> float:
        finite = self.ap[~np.isnan(self.ap)]
        return float(np.median(finite)) if len(finite) else float("nan")

    def warn_nan(self) -> None:
        """Log the classes whose AP is NaN and what the reported mean does about them."""
        nan = [self.classes[k] for k in np.flatnonzero(np.isnan(self.ap))]
        if nan:
            log.warning("AP is NaN (detections but no positives) for %d classes: %s; the devkit's "
                        "mean would be NaN, the reported mAP is the mean over the other classes",
                        len(nan), ", ".join(nan[:10]) + (" ..." if len(nan) > 10 else ""))


def pr_curve(tp: np.ndarray, fp: np.ndarray, npos: int) -> Curve:
    """Cumulative recall ``tp/npos`` and precision ``tp/(tp+fp)`` (``VOCevaldet.m`` lines).

    Args:
        tp, fp: ``[D]`` 0/1 flags in processing order.
        npos: number of positives (0 gives NaN recall, as in MATLAB's ``0/0``).
    """
    tp_c = np.cumsum(tp, dtype=np.float64)
    fp_c = np.cumsum(fp, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return Curve(tp_c / np.float64(npos), tp_c / (fp_c + tp_c))


def voc_ap(curve: Curve) -> float:
    """All-point AP with the monotone envelope (``VOCap.m``, used by ILSVRC and VOC 2010+).

    ``mpre(i) = max(mpre(i), mpre(i+1))`` backwards: MATLAB's ``max`` ignores NaN, hence
    ``np.fmax``. Points where recall does not change add nothing. No detections give 0; NaN recall
    (no positives but some detections) gives NaN, both as in the devkit.
    """
    mrec = np.concatenate(([0.0], curve.recall, [1.0]))
    mpre = np.concatenate(([0.0], curve.precision, [0.0]))
    mpre = np.fmax.accumulate(mpre[::-1])[::-1]
    i = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[i] - mrec[i - 1]) * mpre[i]))


def voc07_ap(curve: Curve) -> float:
    """VOC2007 11-point AP: mean over ``t`` in 0, 0.1, .., 1 of ``max(prec(rec >= t))``, 0 if none.

    ``max`` ignores NaN precision as MATLAB's does (all-NaN stays NaN). The thresholds are the
    values MATLAB's ``0:0.1:1`` produces (:data:`VOC07_THRESHOLDS`).
    """
    ap = 0.0
    for t in VOC07_THRESHOLDS:
        p = curve.precision[curve.recall >= t]
        ap += (np.fmax.reduce(p) if len(p) else 0.0) / 11
    return float(ap)


def class_curves(labels: np.ndarray, tp: np.ndarray, fp: np.ndarray,
                 npos: np.ndarray) -> list[Curve]:
    """One :class:`Curve` per class ``0..K-1`` from all detections in processing order.

    Args:
        labels: ``[D]`` int64 class of each detection (rows with labels outside ``0..K-1`` are
            left out, as the devkit's class loop never reaches them).
        tp, fp: ``[D]`` flags.
        npos: ``[K]`` positives per class.
    """
    order = np.argsort(labels, kind="stable")  # keeps processing order inside a class
    sorted_labels = labels[order]
    bounds = np.searchsorted(sorted_labels, np.arange(len(npos) + 1))
    curves = []
    for k in range(len(npos)):
        rows = order[bounds[k]:bounds[k + 1]]
        curves.append(pr_curve(tp[rows], fp[rows], int(npos[k])))
    return curves
