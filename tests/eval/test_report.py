"""The report: JSON round trips (NaN as null), the printed table, the API's protocol checks."""
import json
import math

import numpy as np
import pytest

from core.errors import InputError
from core.structures import DetectionDataset, Detections, ImageAnnotations
from eval.api import evaluate
from eval.report import EvalReport, format_table, read_report, write_report


def dataset():
    images = [ImageAnnotations(10, "a.png", 100, 100, [[0, 0, 50, 50]], [0]),
              ImageAnnotations(20, "b.png", 100, 100, [[10, 10, 60, 60], [70, 70, 90, 90]], [0, 2])]
    return DetectionDataset(classes=["A", "B", "C"], images=images,
                            class_ids=["n00000001", "n00000002", "n00000003"])


def test_round_trip_keeps_nan_as_null(tmp_path):
    ds = dataset()
    dets = {10: Detections([[0, 0, 50, 50], [0, 0, 9, 9]], [0.9, 0.5], [0, 1])}  # B: detections, no positives
    report = evaluate(ds, dets, "ilsvrc")
    assert math.isnan(report.per_class["B"]) and report.mAP == 0.25  # mean over the classes that are not NaN
    data = report.to_json()
    assert data["per_class"]["B"] is None and data["stats"]["devkit_mean"] is None
    text = json.dumps(data, allow_nan=False)  # strict JSON
    assert set(json.loads(text)) == {"protocol", "mAP", "per_class", "stats"}
    write_report(tmp_path / "r.json", report)
    back = read_report(tmp_path / "r.json")
    assert back.protocol == "ilsvrc" and back.mAP == 0.25 and math.isnan(back.per_class["B"])
    assert back.per_class["A"] == 0.5 and back.stats["npos"] == {"A": 2, "B": 0, "C": 1}
    assert EvalReport.loads(report.dumps()).to_json() == data
    table = format_table(report, extra=report.stats["npos"])
    assert "nan" in table.splitlines()[2] and "mAP" in table


def test_ilsvrc_api_indices_and_blacklist():
    ds = dataset()
    dets = {10: Detections([[0, 0, 50, 50]], [0.9], [0]), 20: Detections([[10, 10, 60, 60]], [0.8], [0])}
    assert evaluate(ds, dets, "ilsvrc").per_class == {"A": 1.0, "B": 0.0, "C": 0.0}
    assert evaluate(ds, {10: dets[10]}, "ilsvrc").per_class["A"] == 0.5
    # the devkit index of an image is its 1-based position: image id 20 is index 2
    report = evaluate(ds, {10: dets[10]}, "ilsvrc", blacklist=[(2, "n00000001")])
    assert report.per_class["A"] == 1.0 and report.stats["npos"]["A"] == 1


def test_api_errors():
    ds = dataset()
    with pytest.raises(ValueError, match="unknown protocol"):
        evaluate(ds, {}, "pascal")
    with pytest.raises(InputError, match="image ids the ground truth lacks"):
        evaluate(ds, {99: Detections()}, "coco")
    with pytest.raises(InputError, match="labels must be in 0..2"):
        evaluate(ds, {10: Detections([[0, 0, 1, 1]], [0.5], [3])}, "ilsvrc")
    for protocol in ("ilsvrc", "voc", "voc07", "coco"):  # no detections anywhere
        report = evaluate(ds, {}, protocol)
        assert report.mAP == 0.0 and report.to_json()["protocol"] == protocol
    assert np.isfinite(evaluate(ds, {10: Detections()}, "voc").mAP)
