import numpy as np
import pytest

from core import boxes as B


def test_coco_round_trip():
    xywh = np.array([[10, 20, 30, 40], [0, 0, 1, 1]], np.float32)
    xyxy = B.coco_xywh_to_xyxy(xywh)
    assert xyxy.tolist() == [[10, 20, 40, 60], [0, 0, 1, 1]]
    np.testing.assert_array_equal(B.xyxy_to_coco_xywh(xyxy), xywh)


def test_inclusive_conventions_keep_devkit_width():
    # A VOC box 1..10 (inclusive, 1-based) is 10 pixels wide; so is ILSVRC 0..9 (0-based).
    voc = B.voc_to_xyxy([[1, 1, 10, 20]])
    ils = B.ilsvrc_to_xyxy([[0, 0, 9, 19]])
    np.testing.assert_array_equal(voc, ils)
    assert voc[0, 2] - voc[0, 0] == 10 and voc[0, 3] - voc[0, 1] == 20
    np.testing.assert_array_equal(B.xyxy_to_voc(voc), [[1, 1, 10, 20]])
    np.testing.assert_array_equal(B.xyxy_to_ilsvrc(ils), [[0, 0, 9, 19]])


def test_cv_rects():
    np.testing.assert_array_equal(B.cv_rect_to_xyxy([[3, 4, 5, 6]]), [[3, 4, 8, 10]])
    np.testing.assert_array_equal(B.xyxy_to_cv_rect([[3.2, 4.0, 7.9, 10.0]]), [[3, 4, 5, 6]])


@pytest.mark.parametrize("fn", [B.coco_xywh_to_xyxy, B.voc_to_xyxy, B.ilsvrc_to_xyxy, B.xyxy_to_cv_rect])
def test_empty(fn):
    assert fn(np.zeros((0, 4))).shape == (0, 4)


def test_as_boxes_and_scale():
    t = B.as_boxes([[0, 0, 2, 2]])
    assert t.dtype.is_floating_point and t.shape == (1, 4)
    np.testing.assert_allclose(B.scale_boxes([[1, 2, 3, 4]], 2.0, 0.5), [[2, 1, 6, 2]])
