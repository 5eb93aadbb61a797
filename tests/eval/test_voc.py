"""VOC rules on hand-worked cases: difficult objects, duplicates, ``>=`` vs ``>``, 11-point vs all-point."""
import numpy as np
import pytest

from core.boxes import voc_to_xyxy
from core.errors import InputError
from core.structures import DetectionDataset, Detections, ImageAnnotations
from eval.ap import VOC07_THRESHOLDS, Curve, voc07_ap
from eval.api import evaluate


def voc_case():
    """Class 'car': image 0 has G1 [1,1,100,100] and a difficult G2; image 1 has G3 (VOC 1-based).

    Detections by score: d1 on G1 (TP), d2 on difficult G2 (ignored), d3 duplicate on G1 (FP),
    d4 on G3 with IoU exactly 0.5 (TP under the devkit's ``>=``; FP under the port's ``>``).
    """
    images = [
        ImageAnnotations(0, "000001.jpg", 400, 300, voc_to_xyxy([[1, 1, 100, 100], [201, 1, 300, 100]]), [0, 0],
                         difficult=[False, True]),
        ImageAnnotations(1, "000002.jpg", 400, 300, voc_to_xyxy([[1, 1, 100, 100]]), [0]),
    ]
    dataset = DetectionDataset(classes=["car", "dog"], images=images)
    dets = {0: Detections(voc_to_xyxy([[1, 1, 100, 100], [201, 1, 300, 100], [1, 1, 100, 100]]),
                          [0.9, 0.8, 0.7], [0, 0, 0]),
            1: Detections(voc_to_xyxy([[1, 1, 100, 50]]), [0.6], [0])}
    return dataset, dets


def test_all_point_ap_with_difficult_and_duplicate():
    dataset, dets = voc_case()
    report = evaluate(dataset, dets, "voc")
    # rec .5 .5 .5 1, prec 1 1 .5 2/3 (the ignored d2 repeats the row) -> .5 * 1 + .5 * 2/3
    assert report.per_class["car"] == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert report.stats["difficult_ignored"] == 1 and report.stats["npos"] == {"car": 2, "dog": 0}
    curve = report.details.curves[0]
    np.testing.assert_allclose(curve.recall, [0.5, 0.5, 0.5, 1.0])
    np.testing.assert_allclose(curve.precision, [1.0, 1.0, 0.5, 2 / 3])
    assert report.per_class["dog"] == 0.0  # no positives and no detections


def test_eleven_point_ap():
    dataset, dets = voc_case()
    # t = 0..0.5: max precision 1 (6 points); t = 0.6..1: 2/3 (5 points)
    assert evaluate(dataset, dets, "voc07").per_class["car"] == pytest.approx((6 + 5 * 2 / 3) / 11)


def test_iou_exactly_half_matches_under_devkit_not_strict_port():
    dataset, dets = voc_case()
    dets[1] = Detections(voc_to_xyxy([[1, 1, 100, 49]]), [0.6], [0])  # IoU 0.49: a miss
    # what the port's '>' would give for the 0.5 case too: d4 a false positive
    assert evaluate(dataset, dets, "voc").per_class["car"] == pytest.approx(0.5)
    assert evaluate(dataset, dets, "voc07").per_class["car"] == pytest.approx(6 / 11)


def test_duplicates_fp_under_voc_but_take_a_second_object_under_ilsvrc():
    boxes = voc_to_xyxy([[1, 1, 100, 100], [11, 1, 110, 100]])
    images = [ImageAnnotations(0, "a.jpg", 200, 200, boxes, [0, 0])]
    dataset = DetectionDataset(classes=["car"], images=images)
    dets = {0: Detections(voc_to_xyxy([[1, 1, 100, 100]] * 2), [0.9, 0.8], [0, 0])}
    assert evaluate(dataset, dets, "voc").per_class["car"] == pytest.approx(0.5)  # best overlap taken: FP
    assert evaluate(dataset, dets, "ilsvrc").per_class["car"] == 1.0  # taken one skipped: second object


def test_voc07_thresholds_are_matlabs():
    # MATLAB's 0:0.1:1 has exactly 0.6 and 0.7; numpy's arange has 0.6000000000000001
    assert VOC07_THRESHOLDS[6] == 0.6 and VOC07_THRESHOLDS[7] == 0.7 and len(VOC07_THRESHOLDS) == 11
    assert voc07_ap(Curve(np.array([0.6]), np.array([1.0]))) == pytest.approx(7 / 11)


def test_unknown_image_is_an_error():
    dataset, dets = voc_case()
    dets[5] = Detections()
    with pytest.raises(InputError, match="image ids the ground truth lacks"):
        evaluate(dataset, dets, "voc")


def test_no_objects_at_all():
    dataset = DetectionDataset(classes=["car"], images=[ImageAnnotations(0, "a.jpg", 50, 50)])
    report = evaluate(dataset, {0: Detections([[0, 0, 9, 9]], [0.5], [0])}, "voc")
    assert np.isnan(report.per_class["car"]) and report.stats["npos"] == {"car": 0}
