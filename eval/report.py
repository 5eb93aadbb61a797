"""The evaluation report every protocol returns, its JSON form and its printed table.

REPORT.json is ``{"protocol": str, "mAP": float, "per_class": {name: AP}, "stats": {...}}``
(a contract of ``tools/eval.py --json``). JSON has no NaN: an undefined number (an ILSVRC class
with detections but no positives) is written as ``null`` and read back as NaN. COCO's undefined
numbers stay -1, as pycocotools gives them.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

from core.io import write_text

__all__ = ["EvalReport", "to_json_value", "write_report", "read_report", "format_table", "format_recall_table"]


def to_json_value(value):
    """NaN/inf → None, numpy scalars → Python, recursively."""
    if isinstance(value, dict):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [to_json_value(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _nan(value):
    return float("nan") if value is None else float(value)


@dataclass
class EvalReport:
    """A protocol's result.

    Attributes:
        protocol: "ilsvrc", "voc", "voc07" or "coco".
        mAP: the headline number (ILSVRC/VOC mean AP, COCO AP@[.5:.95]).
        per_class: ``{class name: AP}`` in class order.
        stats: protocol-specific numbers (COCO: the twelve under AP, AP50, ... ARl).
        details: the protocol's full result (:class:`eval.ap.ClassResults` or
            :class:`eval.coco.CocoResult`) for plots; not written to JSON.
    """

    protocol: str
    mAP: float
    per_class: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)
    details: object = field(default=None, repr=False, compare=False)  # curves for plots; not in JSON

    def to_json(self) -> dict:
        """The REPORT.json content as a JSON-ready dict (NaN as None, plain Python numbers)."""
        return to_json_value({"protocol": self.protocol, "mAP": self.mAP,
                               "per_class": self.per_class, "stats": self.stats})

    def dumps(self, indent: int | None = 2) -> str:
        """The REPORT.json text (strict JSON: NaN written as null)."""
        return json.dumps(self.to_json(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, data: dict) -> "EvalReport":
        return cls(protocol=str(data["protocol"]), mAP=_nan(data["mAP"]),
                   per_class={k: _nan(v) for k, v in data.get("per_class", {}).items()},
                   stats=dict(data.get("stats", {})))

    @classmethod
    def loads(cls, text: str) -> "EvalReport":
        return cls.from_dict(json.loads(text))


def write_report(path, report: EvalReport) -> None:
    """Write REPORT.json atomically."""
    write_text(path, report.dumps() + "\n")


def read_report(path) -> EvalReport:
    with open(path, encoding="utf-8") as f:
        return EvalReport.loads(f.read())


def _cell(value) -> str:
    return "    nan" if value is None or value != value else f"{value:7.4f}"


def format_table(report: EvalReport, extra: dict | None = None) -> str:
    """The per-class table the command line prints, then the summary lines.

    Args:
        extra: optional ``{class name: value}`` column, e.g. positives per class.
    """
    names = list(report.per_class)
    width = max([len(n) for n in names] + [12])
    lines = [f"{'class':<{width}}  {'AP':>7}" + ("  npos" if extra else "")]
    for name in names:
        lines.append(f"{name:<{width}}  {_cell(report.per_class[name])}" + (f"  {extra.get(name, '')}" if extra else ""))
    lines.append("-" * (width + 9))
    if report.protocol == "coco":  # the twelve numbers in pycocotools' order
        lines += [f"{key:<{width}}  {_cell(value)}" for key, value in report.stats.items()]
    else:
        lines.append(f"{'mAP':<{width}}  {_cell(report.mAP)}")
        lines.append(f"{'median AP':<{width}}  {_cell(report.stats.get('median_AP'))}")
    return "\n".join(lines)


def format_recall_table(report) -> str:
    """The summary a :class:`eval.recall.RecallReport` prints: one row for all objects and one per size."""
    counts = list(report.overall.ar_at)
    head = f"{'objects':<8} {'count':>7} {'cover':>7} {'R@0.7':>7} {'ABO':>7} {'AR':>7}" + "".join(
        f" {'AR@' + str(n):>8}" for n in counts)
    lines = [head]
    for name, s in [("all", report.overall), *report.by_size.items()]:
        lines.append(f"{name:<8} {s.objects:>7} {_cell(s.coverage)} {_cell(s.recall_07)} {_cell(s.abo)} "
                     f"{_cell(s.ar)}" + "".join(f" {_cell(s.ar_at[n]):>8}" for n in counts))
    lines.append(f"MABO {report.mabo:.4f} over {sum(1 for c in report.per_class.values() if c['objects'])} classes; "
                 f"{report.images} images, {report.mean_proposals:.1f} proposals per image")
    return "\n".join(lines)
