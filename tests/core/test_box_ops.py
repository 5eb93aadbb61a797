"""core.box_ops equals torchvision.ops bit for bit (tests/detector/test_tools.py: detection never imports it)."""
import pytest
import torch
import torchvision.ops as tv

from core import box_ops


def random_boxes(n, seed, scale=100.0, ties=False):
    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=gen) * scale
    boxes = torch.cat([xy, xy + 1 + torch.rand(n, 2, generator=gen) * scale / 3], 1)
    scores = torch.rand(n, generator=gen)
    if ties:  # equal scores: the kernels' order among them must be the same too
        scores = (scores * 5).floor() / 5
    return boxes, scores


@pytest.mark.parametrize("seed", [0, 1])
def test_elementwise_ops_equal_torchvision(seed):
    a, _ = random_boxes(40, seed)
    b, _ = random_boxes(30, seed + 10)
    assert torch.equal(box_ops.box_iou(a, b), tv.box_iou(a, b))
    assert box_ops.box_iou(a[:0], b).shape == (0, 30)
    wide = a * 3 - 50
    assert torch.equal(box_ops.clip_boxes_to_image(wide, (90, 120)), tv.clip_boxes_to_image(wide, (90, 120)))
    assert torch.equal(box_ops.clip_boxes_to_image(wide[None], (90, 120)), tv.clip_boxes_to_image(wide[None], (90, 120)))
    thin = a.clone()
    thin[::3, 2] = thin[::3, 0] + 0.5
    assert torch.equal(box_ops.remove_small_boxes(thin, 1.0), tv.remove_small_boxes(thin, 1.0))


@pytest.mark.parametrize("n", [0, 50, 1500])  # 1500 x 4 > 4000: torchvision's per-category branch
@pytest.mark.parametrize("ties", [False, True])
def test_nms_and_batched_nms_equal_torchvision(n, ties):
    boxes, scores = random_boxes(n, 3, ties=ties)
    idxs = torch.arange(n) % 7
    for iou in (0.3, 0.7):
        assert torch.equal(box_ops.nms(boxes, scores, iou), tv.nms(boxes, scores, iou))
        assert torch.equal(box_ops.batched_nms(boxes, scores, idxs, iou), tv.batched_nms(boxes, scores, idxs, iou))


def test_roi_align_equals_torchvision_forward_and_backward():
    gen = torch.Generator().manual_seed(0)
    fmap = torch.rand(2, 3, 9, 11, generator=gen)
    rois = [random_boxes(5, 1, scale=8.0)[0], random_boxes(3, 2, scale=8.0)[0]]
    args = dict(output_size=2, spatial_scale=1.0, sampling_ratio=2, aligned=True)
    with torch.inference_mode():
        assert torch.equal(box_ops.roi_align(fmap, rois, **args), tv.roi_align(fmap, rois, **args))
    assert torch.equal(box_ops.roi_align(fmap, rois, (3, 2), 0.5), tv.roi_align(fmap, rois, (3, 2), 0.5))
    ours, theirs = fmap.clone().requires_grad_(), fmap.clone().requires_grad_()
    box_ops.roi_align(ours, rois, **args).sum().backward()
    tv.roi_align(theirs, rois, **args).sum().backward()
    assert torch.equal(ours.grad, theirs.grad)
