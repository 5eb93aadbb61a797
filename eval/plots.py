"""PNG plots of evaluation results: precision-recall curves and proposal recall against IoU.

Figures are drawn with matplotlib's object API on the Agg canvas (no pyplot, no display, no
global state). Files are written atomically; names are ``pr_grid.png`` (all curves in one figure
of small multiples: the overall curve, then one panel per class), ``pr_<k>_<class>.png`` per class
(``k`` the class's position, 3 digits) and ``pr_overall.png``; ``recall_iou.png`` and
``recall_n.png`` for proposals.
"""
from __future__ import annotations

import math
import os
import re

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from core.io import atomic_path
from eval.ap import ClassResults
from eval.coco import CocoResult
from eval.recall import IOU_THRESHOLDS, RecallReport
from eval.report import EvalReport

__all__ = ["RECALL_GRID", "interpolated_precision", "pr_grid_figure", "plot_pr_curves", "plot_recall"]

RECALL_GRID = np.linspace(0.0, 1.0, 101)  # COCO's recall thresholds, used for every overall curve
PANEL = (2.2, 2.0)  # inches per small multiple: about 220 x 200 pixels, titles still readable


def _save(fig: Figure, path: str) -> str:
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path


def _axes(title: str, xlabel: str, ylabel: str):
    fig = Figure(figsize=(5, 4))
    ax = fig.add_subplot()
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel, xlim=(0, 1), ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    return fig, ax


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:60]


def interpolated_precision(recall: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """``[101]`` precision at :data:`RECALL_GRID`: the best precision at recall >= r (NaN ignored), 0 if none."""
    out = np.zeros(len(RECALL_GRID))
    ok = ~np.isnan(recall)
    rec, prec = recall[ok], np.nan_to_num(precision[ok], nan=0.0)
    if len(rec):
        envelope = np.maximum.accumulate(prec[::-1])[::-1]
        at = np.searchsorted(rec, RECALL_GRID, side="left")  # recall is non-decreasing
        out[at < len(rec)] = envelope[at[at < len(rec)]]
    return out


def _class_curves(report: EvalReport) -> list[tuple[str, float, np.ndarray, np.ndarray, np.ndarray | None]]:
    """``(name, AP, recall, precision, interpolated [101] or None)`` per class.

    ILSVRC/VOC: the raw curves and their envelope on :data:`RECALL_GRID` (None for a class
    without positives). COCO: the engine's interpolated precision at IoU 0.5 (area all, 100
    detections), None for a class without ground truth.
    """
    details = report.details
    if isinstance(details, ClassResults):
        return [(n, float(a), c.recall, c.precision, interpolated_precision(c.recall, c.precision) if npos else None)
                for n, a, c, npos in zip(details.classes, details.ap, details.curves, details.npos)]
    if isinstance(details, CocoResult):
        p = details.precision[0, :, :, 0, -1]  # [R, K] at IoU 0.5
        return [(n, float(report.per_class[n]), RECALL_GRID, p[:, k], p[:, k] if (p[:, k] >= 0).all() else None)
                for k, n in enumerate(report.per_class)]
    raise ValueError("the report carries no curves (details is empty)")


def _overall(curves: list) -> np.ndarray | None:
    """``[101]`` mean interpolated precision over the classes with ground truth, None if none has."""
    grid = [interp for *_, interp in curves if interp is not None]
    return np.mean(grid, axis=0) if grid else None


def _panel(ax, title: str, rec: np.ndarray, prec: np.ndarray, interp: np.ndarray | None, colour: str) -> None:
    """One small multiple: the raw curve (thin, grey) under its interpolated envelope."""
    ax.set_title(title, fontsize=8)
    ax.set(xlim=(0, 1), ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=7)
    if interp is None:
        ax.text(0.5, 0.5, "no ground truth", ha="center", va="center", fontsize=7, color="grey")
        return
    if rec is not RECALL_GRID:
        ax.plot(rec, prec, lw=0.8, color="0.6")
    ax.plot(RECALL_GRID, interp, lw=1.5, color=colour)


def pr_grid_figure(report: EvalReport, curves: list | None = None) -> Figure:
    """All precision-recall curves of ``report`` as one figure of small multiples.

    The first panel is the overall curve (mean interpolated precision, titled with the mAP), then
    one panel per class in class order, titled with its AP; panels share their axes (recall
    across, precision up) on a near-square grid. ``curves`` is :func:`_class_curves`'s output
    when the caller has it.
    """
    curves = _class_curves(report) if curves is None else curves
    cols = math.ceil(math.sqrt(len(curves) + 1))
    rows = math.ceil((len(curves) + 1) / cols)
    fig = Figure(figsize=(PANEL[0] * cols, PANEL[1] * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False).ravel()
    _panel(axes[0], f"overall: mAP {report.mAP:.3f}", RECALL_GRID, None, _overall(curves), "black")
    for ax, (name, ap, rec, prec, interp) in zip(axes[1:], curves):
        _panel(ax, f"{name}: AP {ap:.3f}", rec, prec, interp, "tab:blue")
    for ax in axes[len(curves) + 1:]:
        ax.set_visible(False)
    fig.suptitle(f"{report.protocol} precision-recall" + (" at IoU 0.5" if isinstance(report.details, CocoResult)
                                                          else ""), fontsize=10)
    fig.supxlabel("recall", fontsize=9)
    fig.supylabel("precision (grey: raw; line: interpolated)", fontsize=9)
    return fig


def plot_pr_curves(report: EvalReport, out_dir: str) -> list[str]:
    """``pr_grid.png`` (every curve, one figure), one PNG per class and ``pr_overall.png`` (mean
    interpolated precision over the classes with ground truth). COCO curves are at IoU 0.5;
    titles give the report's per-class AP."""
    curves = _class_curves(report)
    written = [_save(pr_grid_figure(report, curves), os.path.join(out_dir, "pr_grid.png"))]
    for k, (name, ap, rec, prec, interp) in enumerate(curves):
        fig, ax = _axes(f"{name}: AP {ap:.4f}", "recall", "precision")
        if interp is not None:
            if rec is not RECALL_GRID:
                ax.plot(rec, prec, lw=1, label="precision")
            ax.plot(RECALL_GRID, interp, lw=1, ls="--", label="interpolated")
            ax.legend(loc="lower left")
        written.append(_save(fig, os.path.join(out_dir, f"pr_{k:03d}_{_safe(name)}.png")))
    fig, ax = _axes(f"{report.protocol}: mAP {report.mAP:.4f}", "recall", "mean interpolated precision")
    overall = _overall(curves)
    if overall is not None:
        ax.plot(RECALL_GRID, overall, lw=2)
    written.append(_save(fig, os.path.join(out_dir, "pr_overall.png")))
    return written


def plot_recall(report: RecallReport, out_dir: str) -> list[str]:
    """``recall_iou.png`` (recall against IoU, overall and by size) and ``recall_n.png`` (AR@N)."""
    fig, ax = _axes(f"coverage {report.coverage:.3f}, AR {report.ar:.3f}, MABO {report.mabo:.3f}",
                    "IoU", "recall")
    ax.set_xlim(0.5, 0.95)
    ax.plot(IOU_THRESHOLDS, report.overall.recall, lw=2, marker="o", label=f"all ({report.overall.objects})")
    for name, s in report.by_size.items():
        if s.objects:
            ax.plot(IOU_THRESHOLDS, s.recall, lw=1, marker=".", label=f"{name} ({s.objects})")
    ax.legend(loc="lower left")
    written = [_save(fig, os.path.join(out_dir, "recall_iou.png"))]
    fig, ax = _axes("average recall (IoU 0.5..0.95)", "proposals per image", "AR")
    counts = list(report.overall.ar_at)
    ax.set_xscale("log")
    ax.set_xlim(max(min(counts, default=1), 1), max(max(counts, default=10), 2))
    ax.plot(counts, [report.overall.ar_at[n] for n in counts], lw=2, marker="o", label="all")
    for name, s in report.by_size.items():
        if s.objects:
            ax.plot(counts, [s.ar_at[n] for n in counts], lw=1, marker=".", label=name)
    ax.legend(loc="upper left")
    written.append(_save(fig, os.path.join(out_dir, "recall_n.png")))
    return written
