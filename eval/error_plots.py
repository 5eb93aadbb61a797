"""PNG figures of the error analysis: TIDE's dAP bars, PR curves, Hoiem's false-positive plots and
the confusion matrix.

Drawn with matplotlib's object API on the Agg canvas (no pyplot, no display), written atomically.
Every function returns the file names it wrote, relative to ``out_dir``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

from core.io import atomic_path
from eval.errors import MAIN_ERRORS, RECALL_POINTS, SPECIAL_ERRORS, TideErrors
from eval.hoiem import FP_TYPES, HoiemResult, fp_distribution

__all__ = ["PlotConfig", "worst_classes", "plot_dap", "plot_pr_curves", "plot_hoiem", "plot_confusion", "safe_name"]

ERROR_COLOURS = {"cls": "#e6550d", "loc": "#3182bd", "both": "#756bb1", "dupe": "#31a354",
                 "bkg": "#636363", "miss": "#de2d26", "FalsePos": "#fd8d3c", "FalseNeg": "#6baed6"}
FP_COLOURS = ("#3182bd", "#e6550d", "#fdae6b", "#969696")  # Loc, Sim, Oth, BG
PANELS_PER_PAGE = 20


@dataclass(frozen=True)
class PlotConfig:
    """``plots:`` in ``configs/analysis.yaml``."""

    max_classes: int = 60  # per-class PR and false-positive plots: at most this many classes, the
                           # lowest AP first (0 = all); every class is in the tables either way


def safe_name(name: str) -> str:
    """A file-name-safe version of a class name."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)[:60]


def _save(fig: Figure, out_dir: str, name: str) -> str:
    FigureCanvasAgg(fig)
    with atomic_path(os.path.join(out_dir, name)) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return name


def plot_dap(tide: TideErrors, out_dir: str) -> list[str]:
    """``dap.png``: main and special errors as horizontal bars (AP points)."""
    fig = Figure(figsize=(9, 3.2), layout="constrained")
    for i, (names, values, title) in enumerate((
            (MAIN_ERRORS, [tide.dap[t] for t in MAIN_ERRORS], "main errors"),
            (SPECIAL_ERRORS, [tide.special[t] for t in SPECIAL_ERRORS], "special errors"))):
        ax = fig.add_subplot(1, 2, i + 1)
        y = np.arange(len(names))[::-1]
        ax.barh(y, values, color=[ERROR_COLOURS[n] for n in names])
        for yy, v in zip(y, values):
            ax.text(v, yy, f" {v:.1f}", va="center", fontsize=9)
        ax.set(yticks=y, yticklabels=names, xlabel="dAP (AP50 points gained if fixed)", title=title,
               xlim=(0, max(max(values), 1) * 1.25))
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"TIDE at IoU 0.5: AP50 = {tide.ap50:.1f}")
    return [_save(fig, out_dir, "dap.png")]


def _grid(n: int, cols: int = 5, size: tuple[float, float] = (3.0, 2.4), sharex: bool = True):
    """A figure of ``n`` panels sharing their axes; tick labels on the outer panels only (text is
    what costs time when a page of 20 panels is drawn)."""
    rows, cols = max(1, -(-n // cols)), min(cols, max(n, 1))
    height = size[1] * rows + 0.8
    fig = Figure(figsize=(size[0] * cols, height))
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.7 / height, top=1 - 0.3 / height, hspace=0.35, wspace=0.1)
    axes = fig.subplots(rows, cols, sharex=sharex, sharey=True, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    for ax in axes[:n]:
        ax.label_outer(remove_inner_ticks=False)
        ax.xaxis.set_tick_params(labelbottom=not sharex)
    for ax in axes[max(0, n - cols):n]:  # the last panel of each column shows the x labels
        ax.xaxis.set_tick_params(labelbottom=True)
    return fig, list(axes[:n])


def worst_classes(ap: np.ndarray, limit: int) -> list[int]:
    """The classes with an AP (not NaN), or the ``limit`` with the lowest AP when there are more,
    in class order."""
    known = [c for c in range(len(ap)) if not np.isnan(ap[c])]
    if limit and len(known) > limit:
        known = sorted(sorted(known, key=lambda c: (ap[c], c))[:limit])
    return known


def _pages(items: list, per_page: int = PANELS_PER_PAGE) -> list[list]:
    return [items[i:i + per_page] for i in range(0, len(items), per_page)] or [[]]


def plot_pr_curves(tide: TideErrors, out_dir: str, max_classes: int = 0) -> list[str]:
    """``pr_<page>.png``: each class's interpolated precision against recall (TIDE's 101 points);
    with ``max_classes``, only that many classes, those with the lowest AP."""
    classes = worst_classes(tide.class_ap, max_classes)
    written = []
    for page, chunk in enumerate(_pages(classes), 1):
        fig, axes = _grid(len(chunk))
        for ax, c in zip(axes, chunk):
            ax.plot(RECALL_POINTS, tide.precision[c], color="#3182bd")
            ax.set(xlim=(0, 1), ylim=(0, 1.02), title=f"{tide.classes[c]}: {tide.class_ap[c]:.1f}")
            ax.title.set_fontsize(9)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
        fig.supxlabel("recall")
        fig.supylabel("precision")
        written.append(_save(fig, out_dir, f"pr_{page}.png"))
    return written


def _stack(ax, result: HoiemResult, classes, title: str) -> None:
    x, frac = fp_distribution(result, np.asarray(classes))
    if not len(x):
        ax.text(0.5, 0.5, "no false positives", ha="center", va="center", transform=ax.transAxes)
    else:
        ax.stackplot(x, frac.T * 100, colors=FP_COLOURS, labels=FP_TYPES)
        ax.set(xscale="log", xlim=(x[0], x[-1]) if len(x) > 1 else None)
        ticks = [t for t in (1 / 8, 1 / 4, 1 / 2, 1, 2, 4, 8, 16, 32) if x[0] <= t <= x[-1]]
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_major_formatter(FixedFormatter([f"1/{round(1 / t)}" if t < 1 else f"{t:g}" for t in ticks]))
        ax.xaxis.set_minor_locator(NullLocator())
    ax.set(ylim=(0, 100), title=title)
    ax.title.set_fontsize(9)
    ax.tick_params(labelsize=7)


def plot_hoiem(result: HoiemResult, classes: list[str], out_dir: str, shown: list[int] | None = None) -> list[str]:
    """``hoiem_groups.png`` (all classes, then each group) and ``hoiem_<page>.png`` (each class of
    ``shown``, default all)."""
    groups = [(f"all classes", np.arange(len(classes)))]
    groups += [(name, np.flatnonzero(result.group == g)) for g, name in enumerate(result.group_names)
               if (result.group == g).sum() > 1]
    fig, axes = _grid(len(groups), cols=4, size=(3.4, 2.6), sharex=False)
    for ax, (name, members) in zip(axes, groups):
        _stack(ax, result, members, name)
    axes[0].legend(loc="lower left", fontsize=7)
    fig.supxlabel("top-ranked false positives, in multiples of the number of positives")
    fig.supylabel("percentage of each type")
    written = [_save(fig, out_dir, "hoiem_groups.png")]
    ranked = [c for c in (range(len(classes)) if shown is None else shown) if result.npos[c] > 0]
    for page, chunk in enumerate(_pages(ranked), 1):
        fig, axes = _grid(len(chunk), sharex=False)
        for ax, c in zip(axes, chunk):
            _stack(ax, result, [c], f"{classes[c]} ({result.group_names[result.group[c]]})")
        if axes:
            axes[0].legend(loc="lower left", fontsize=6)
        fig.supxlabel("top-ranked false positives / positives")
        fig.supylabel("% of each type")
        written.append(_save(fig, out_dir, f"hoiem_{page}.png"))
    return written


def plot_confusion(matrix: np.ndarray, classes: list[str], columns: list[str], out_dir: str) -> list[str]:
    """``confusion.png``: rows = true class, columns = what the ensemble gives the object's own box
    (row-normalised, %; the cell text is the count)."""
    k, n = matrix.shape
    rate = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    per, font = (0.45, 8) if n <= 41 else (0.12, 3)  # ILSVRC's 200 classes: small cells, small names
    fig = Figure(figsize=(max(4.0, per * n + 2), max(3.5, per * k + 2)), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(rate * 100, cmap="Blues", vmin=0, vmax=100, aspect="auto")
    if k * n <= 900:
        for i in range(k):
            for j in range(n):
                if matrix[i, j]:
                    ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=7,
                            color="white" if rate[i, j] > 0.5 else "black")
    ax.set(xticks=range(n), yticks=range(k), xlabel="class given to the object's own box",
           ylabel="true class", title="ensemble on the ground-truth boxes (row %)")
    ax.set_xticklabels(columns, rotation=60, ha="right", fontsize=font)
    ax.set_yticklabels(classes, fontsize=font)
    fig.colorbar(im, ax=ax, fraction=0.04)
    return [_save(fig, out_dir, "confusion.png")]
