"""Precision-recall plots: the small-multiples figure and the files written."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from eval.ap import ClassResults, Curve
from eval.api import class_report
from eval.plots import interpolated_precision, plot_pr_curves, pr_grid_figure


@pytest.fixture
def report():
    curves = [Curve(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3])),  # cat: 2 positives
              Curve(np.array([1.0]), np.array([1.0])),  # dog: 1 positive, found first
              Curve(np.array([np.nan]), np.array([0.0]))]  # emu: no positives, one detection
    return class_report("voc", ClassResults(["cat", "dog", "emu"], np.array([0.75, 1.0, np.nan]), curves,
                                            np.array([2, 1, 0])))


def test_grid_has_the_overall_panel_then_one_per_class(report):
    fig = pr_grid_figure(report)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["overall: mAP 0.875", "cat: AP 0.750", "dog: AP 1.000",
                                                 "emu: AP nan"]
    assert len(fig.axes) == 4  # 4 panels on a 2 x 2 grid, none hidden
    overall = panels[0].lines[-1].get_ydata()
    cat = interpolated_precision(*[np.array(v) for v in ([0.5, 0.5, 1.0], [1.0, 0.5, 2 / 3])])
    np.testing.assert_allclose(overall, (cat + np.ones(101)) / 2)  # the mean over classes with positives
    assert [t.get_text() for t in panels[3].texts] == ["no ground truth"] and not panels[3].lines
    assert len(panels[1].lines) == 2  # the raw curve and its envelope


def test_grid_hides_unused_cells():
    curves = [Curve(np.array([1.0]), np.array([1.0]))] * 4
    rep = class_report("ilsvrc", ClassResults(list("abcd"), np.ones(4), curves, np.ones(4, np.int64)))
    fig = pr_grid_figure(rep)
    assert len(fig.axes) == 6 and sum(ax.get_visible() for ax in fig.axes) == 5  # 5 panels on 3 x 2


def test_plot_pr_curves_writes_the_grid_beside_the_per_class_files(report, tmp_path):
    written = plot_pr_curves(report, str(tmp_path))
    assert [p.rsplit("/", 1)[1] for p in written] == ["pr_grid.png", "pr_000_cat.png", "pr_001_dog.png",
                                                       "pr_002_emu.png", "pr_overall.png"]
    assert Image.open(tmp_path / "pr_grid.png").size == (440, 460)  # 2 x 2 panels of 2.2 x 2.0 in at 100 dpi
