"""``report.html``: the error analysis on one static page.

No server, no script, nothing from the network: inline CSS, tables, and ``<img>`` tags whose
sources are PNG files beside the page (relative paths), so the folder can be zipped, mailed or
opened straight from disk in any browser.
"""
from __future__ import annotations

import html
import math

from core.io import write_text
from eval.errors import MAIN_ERRORS, SPECIAL_ERRORS
from eval.hoiem import FP_TYPES

__all__ = ["render_report", "write_report"]

CSS = """
body { font-family: -apple-system, "Segoe UI", "DejaVu Sans", Arial, sans-serif; margin: 2em auto;
       max-width: 1200px; color: #222; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
td.hi { background: #fde0dd; font-weight: bold; } td.t { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.4em 0; }
.muted { color: #666; font-size: 0.9em; } .big { font-size: 1.3em; }
nav a { margin-right: 1em; }
"""

EXPLAIN = {
    "cls": "right place, wrong class (IoU >= 0.5 with an object of another class)",
    "loc": "right class, poorly placed (0.1 <= IoU <= 0.5 with an object of its class)",
    "both": "wrong class and poorly placed",
    "dupe": "a second detection of an object already found",
    "bkg": "fired on background (IoU <= 0.1 with every object)",
    "miss": "objects no detection comes near",
    "FalsePos": "AP if every false positive scored below every true positive",
    "FalseNeg": "AP if every missed object were found (precision unchanged)",
}


def _num(v, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _table(header: list[str], rows: list[list], highlight: set | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cells = []
        for j, v in enumerate(row):
            cls = ' class="hi"' if highlight and (i, j) in highlight else (' class="t"' if isinstance(v, str) and j else "")
            cells.append(f"<td{cls}>{html.escape(_num(v) if not isinstance(v, str) else v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _images(files: list[str], alt: str) -> str:
    return "".join(f'<p><img src="{html.escape(f)}" alt="{html.escape(alt)}" loading="lazy"></p>' for f in files)


def _summary(data: dict) -> str:
    dap = data["dAP"]
    worst = max(MAIN_ERRORS, key=lambda t: dap[t])
    rows = [[t, dap[t], EXPLAIN[t]] for t in MAIN_ERRORS]
    special = [[t, data["special"][t], EXPLAIN[t]] for t in SPECIAL_ERRORS]
    return (f'<p class="big">AP50 <b>{data["AP50"]:.1f}</b>. The costliest error: <b>{worst}</b>, '
            f'{dap[worst]:.1f} AP points: {html.escape(EXPLAIN[worst])}.</p>'
            "<p>dAP: the AP50 points gained if only that error were fixed (TIDE, Bolya et al. 2020).</p>"
            + _table(["error", "dAP", "meaning"], rows, {(MAIN_ERRORS.index(worst), 1)})
            + _table(["special error", "dAP", "meaning"], special))


def _class_table(data: dict) -> str:
    per = data["per_class"]
    hoiem = data.get("false_positives", {}).get("per_class", {})
    conf = (data.get("confusion") or {}).get("accuracy", {})
    header = ["class", "positives", "AP50"] + [f"dAP {t}" for t in MAIN_ERRORS] + \
             [f"# {t}" for t in MAIN_ERRORS] + [f"FP {t}" for t in FP_TYPES] + (["own box right"] if conf else [])
    rows, hi = [], set()
    for i, (name, v) in enumerate(per.items()):
        daps = [v["dAP"][t] for t in MAIN_ERRORS]
        finite = [d for d in daps if d is not None]
        if finite and max(finite) > 0:
            hi.add((i, 3 + daps.index(max(finite))))
        row = [name, v["positives"], v["AP50"]] + daps + [v["errors"][t] for t in MAIN_ERRORS]
        row += [hoiem.get(name, {}).get(t, 0) for t in FP_TYPES]
        if conf:
            a = conf.get(name)
            row.append(None if a is None else f"{a * 100:.0f}%")
        rows.append(row)
    return _table(header, rows, hi)


def render_report(data: dict, pictures: dict, title: str) -> str:
    """The page's HTML.

    Args:
        data: the errors.json content (AP50, dAP, special, per_class, false_positives, confusion).
        pictures: ``{"dap": [...], "pr": [...], "hoiem": [...], "confusion": [...],
            "galleries": {class: file}}``, file names relative to the page.
        title: the page's heading (e.g. the files analysed).
    """
    limited = ""
    if data.get("plotted_classes"):
        limited = (f"<p>Plotted: the {len(data['plotted_classes'])} classes with the lowest AP50 "
                   "(plots.max_classes); the table above lists every class.</p>")
    sections = [("summary", "What the errors cost", _summary(data) + _images(pictures.get("dap", []), "dAP bars")),
                ("classes", "Per class", "<p>The largest dAP of each class is highlighted. "
                 "# counts the errors of each type; FP columns are the false-positive types below.</p>"
                 + _class_table(data)),
                ("pr", "Precision-recall curves", "<p>TIDE's interpolated precision at 101 recall points, "
                 "per class; AP50 in each title.</p>" + limited + _images(pictures.get("pr", []), "PR curves")),
                ("fp", "False positives by type (R-CNN's analysis)",
                 "<p>Each false positive is Loc (its class, IoU >= 0.1: poorly placed or a duplicate), "
                 "Sim (IoU >= 0.1 with a similar class), Oth (a dissimilar class) or BG (background); "
                 "the plots show the share of each among the top-ranked false positives as more are "
                 f"taken (Hoiem et al. 2012). Similar classes: {html.escape(data.get('false_positives', {}).get('groups_text', ''))}.</p>"
                 + _images(pictures.get("hoiem", []), "false-positive types"))]
    if pictures.get("confusion"):
        sections.append(("confusion", "The ensemble on the objects' own boxes",
                         "<p>Each object's ground-truth box classified by the ensemble (background "
                         "included): classification error that no better proposal would remove.</p>"
                         + _images(pictures["confusion"], "confusion matrix")))
    galleries = pictures.get("galleries", {})
    if galleries:
        body = "".join(f"<h3>{html.escape(c)}</h3>" + _images([f], f"gallery {c}") for c, f in galleries.items())
        sections.append(("galleries", "Galleries", "<p>Red: the detection, its score and error type; "
                         "green: the object it points at, or the missed object.</p>" + body))
    nav = "".join(f'<a href="#{key}">{html.escape(name)}</a>' for key, name, _ in sections)
    parts = "".join(f'<h2 id="{key}">{html.escape(name)}</h2>{body}' for key, name, body in sections)
    meta = html.escape(data.get("source", ""))
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>'
            f'<p class="muted">{meta}</p><nav>{nav}</nav>{parts}</body></html>\n')


def write_report(path: str, data: dict, pictures: dict, title: str) -> None:
    """Write :func:`render_report` to ``path`` atomically."""
    write_text(path, render_report(data, pictures, title))
