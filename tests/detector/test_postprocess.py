"""detector.postprocess: per-class NMS at exactly 0.3, threshold, caps, clipping, empty input."""
import numpy as np
import pytest
import torch
from torchvision.ops import box_iou, nms

from detector.postprocess import postprocess


def probs_for(scores_by_class):
    """[R, K] object scores → [R, K+1] rows with background filling the rest."""
    s = torch.tensor(scores_by_class, dtype=torch.float32)
    return torch.cat([1 - s.sum(1, keepdim=True), s], 1)


def test_nms_is_per_class_and_uses_iou_03():
    # IoU([0,0,10,10], [x,0,x+10,10]) = (10-x)/(10+x): x = 7/1.3 gives 0.3, x = 10/3 gives 0.5.
    x = 7 / 1.3
    boxes = torch.tensor([[0, 0, 10, 10], [x, 0, x + 10, 10], [10 / 3, 0, 10 / 3 + 10, 10]])
    assert box_iou(boxes[:1], boxes[1:])[0].tolist() == pytest.approx([0.3, 0.5], abs=1e-5)
    # IoU 0.3 is kept (R-CNN removes only IoU > threshold); the float IoU is 0.3 ± 1e-7, hence
    # the threshold nudged by 1e-5. IoU 0.5 is removed within the class.
    det = postprocess(boxes, probs_for([[0.9, 0.0], [0.8, 0.0], [0.7, 0.0]]), (20, 20), nms_iou=0.3 + 1e-5)
    assert det.labels.tolist() == [0, 0] and det.scores.tolist() == pytest.approx([0.9, 0.8])
    # In another class the IoU-0.5 box survives: NMS is per class.
    det = postprocess(boxes, probs_for([[0.9, 0.0], [0.8, 0.0], [0.0, 0.7]]), (20, 20), nms_iou=0.3 + 1e-5)
    assert det.labels.tolist() == [0, 0, 1]


def test_matches_torchvision_nms_per_class():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(60, 2, generator=g) * 50
    boxes = torch.cat([xy, xy + 5 + torch.rand(60, 2, generator=g) * 30], 1)
    probs = torch.softmax(torch.randn(60, 4, generator=g) * 3, 1)
    det = postprocess(boxes, probs, (100, 100), score_threshold=0.05, nms_iou=0.3, top_k=1000,
                      pre_nms_per_class=0)
    for k in range(3):
        s = probs[:, k + 1]
        keep = s > 0.05
        ref = nms(boxes[keep], s[keep], 0.3)
        mine = det.labels == k
        assert sorted(det.scores[mine].tolist()) == pytest.approx(sorted(s[keep][ref].tolist()))


def test_threshold_topk_cap_clip_and_non_finite():
    boxes = torch.tensor([[-5, -5, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50],
                          [float("nan"), 0, 1, 1], [0, 0, float("inf"), 5]], dtype=torch.float32)
    probs = probs_for([[0.9], [0.5], [0.04], [0.9], [0.9]])
    det = postprocess(boxes, probs, (25, 25))
    assert det.scores.tolist() == pytest.approx([0.9, 0.5])  # threshold and non-finite dropped
    assert det.boxes.tolist() == [[0, 0, 10, 10], [20, 20, 25, 25]]  # clipped to (h=25, w=25)
    assert len(postprocess(boxes, probs, (25, 25), top_k=1)) == 1
    assert len(postprocess(boxes, probs, (25, 25), pre_nms_per_class=1)) == 1
    assert np.all(np.diff(det.scores) <= 0)


def test_class_specific_boxes_and_empty_input():
    boxes = torch.tensor([[[0, 0, 5, 5], [10, 10, 20, 20]]], dtype=torch.float32)  # [R=1, K=2, 4]
    det = postprocess(boxes, probs_for([[0.3, 0.6]]), (30, 30))
    assert det.labels.tolist() == [1, 0]
    assert det.boxes.tolist() == [[10, 10, 20, 20], [0, 0, 5, 5]]
    empty = postprocess(torch.zeros(0, 4), torch.zeros(0, 3), (10, 10))
    assert len(empty) == 0 and empty.boxes.shape == (0, 4)
