"""bench/replicate.py: the claims table is built from the measured rows (no hard-coded results)."""
from bench import replicate as rep


def rows(per_image, coverage):
    return {"per_image": per_image, "coverage": coverage, "recall@0.7": coverage / 2, "abo": 0.7, "seconds": 0.3}


def dets(m):
    return {"mAP": m, "coco_AP": m / 2, "coco_AP50": m, "seconds": 1.5}


def test_claims_follow_the_measurements():
    props = {"ss": rows(1000, 0.80), "ss2x": rows(500, 0.79), "multibox": rows(200, 0.5), "merged": rows(700, 0.81)}
    detectors = {"single, ss": dets(0.30), "single, merged": dets(0.32), "ensemble, merged": dets(0.40)}
    claims = rep.claim_rows(props, detectors, None)
    table = {claim: ours for claim, _paper, ours in claims}
    assert table["1. ss2x proposals / ss proposals"].startswith("x0.50 (500 / 1000")
    assert table["2. merged (ss2x + 200 MultiBox) proposals / ss"].startswith("x0.70")
    assert table["2. coverage (recall at IoU 0.5): ss -> merged"] == "80.0% -> 81.0%"
    assert table["3. single model mAP: ss -> merged proposals"].endswith("(+2.0)")
    assert table["5. + R-CNN bounding-box regression (mAP)"] == "no regressors in the weights"
    text = rep.markdown(claims, props, detectors, dets(0.1), "python tools/replicate.py", 3)
    assert "| ensemble, merged | 40.0% | 20.0% | 40.0% | 1.50 | - | - | - | - | - | - |" in text  # measured before dAP
    assert "Faster R-CNN MobileNetV3-FPN (baseline) | 10.0%" in text
    assert "| ss2x | 500 | 79.0% | 39.5% | 0.700 | 0.30 |" in text
    detectors["single, ss"]["dAP"] = {"cls": 12.0, "loc": 3.0, "both": 1.5, "dupe": 0.0, "bkg": 1.0, "miss": 4.0}
    text = rep.markdown(claims, props, detectors, None, "python tools/replicate.py", 3)
    assert "| single, ss | 30.0% | 15.0% | 30.0% | 1.50 | 12.0 | 3.0 | 1.5 | 0.0 | 1.0 | 4.0 |" in text
    detectors["ensemble without member 3"] = {k: v for k, v in dets(0.37).items() if k != "seconds"}
    claims = rep.claim_rows(props, detectors, None)
    assert ("7. ensemble without member 3 (mAP; what it adds)", "not reported", "37.0% (+3.0)") in claims
    text = rep.markdown(claims, props, detectors, None, "python tools/replicate.py", 3)
    assert "| ensemble without member 3 | 37.0% | 18.5% | 37.0% | - |" in text


def test_resume_keeps_rows_only_for_the_same_key(tmp_path):
    out = str(tmp_path / "rep")
    (tmp_path / "rep.json").write_text('{"key": {"images": "a"}, "detectors": {"single, ss": {"mAP": 0.3}}}')
    assert rep.previous_rows(out, {"images": "a"})["detectors"] == {"single, ss": {"mAP": 0.3}}
    assert rep.previous_rows(out, {"images": "b"}) == {}
    assert rep.previous_rows(str(tmp_path / "none"), {"images": "a"}) == {}


def test_a_damaged_results_file_is_measured_again(tmp_path, caplog):
    out = str(tmp_path / "replicate")
    (tmp_path / "replicate.json").write_text('{"key": {"images": "ab')  # truncated
    assert rep.previous_rows(out, {"images": "ab"}) == {}
    assert "replicate.json: unreadable" in caplog.text
    (tmp_path / "replicate.json").write_text("[1, 2]")  # valid JSON, not a results file
    assert rep.previous_rows(out, {"images": "ab"}) == {}
