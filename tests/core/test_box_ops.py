"""core.box_ops equals torchvision.ops bit for bit (tests/detector/test_tools.py: detection never imports it)."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision.ops as tv

from core import box_ops

ROOT = Path(__file__).resolve().parents[2]


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


def test_half_precision_and_roi_rows_as_torchvision():
    a, _ = random_boxes(20, 4)
    b, _ = random_boxes(10, 5)
    assert torch.equal(box_ops.box_iou(a.half(), b.half()), tv.box_iou(a.half(), b.half()))
    assert box_ops.box_iou(a.half(), b.half()).dtype == torch.float32
    ints = a.to(torch.int16)
    assert torch.equal(box_ops.box_iou(ints, ints), tv.box_iou(ints, ints))
    fmap = torch.rand(1, 2, 8, 8)
    rows = torch.cat([torch.zeros(4, 1), random_boxes(4, 6, scale=6.0)[0]], 1)
    with torch.inference_mode():
        assert torch.equal(box_ops.roi_align(fmap, rows, 2), tv.roi_align(fmap, rows, 2))


def test_kernels_load_without_torchvision_and_give_its_results():
    """In a fresh process box_ops loads the extension itself (here torchvision is already imported)."""
    code = """
import sys, torch
from core import box_ops
gen = torch.Generator().manual_seed(0)
xy = torch.rand(300, 2, generator=gen) * 50
boxes = torch.cat([xy, xy + 1 + torch.rand(300, 2, generator=gen) * 20], 1)
scores = torch.rand(300, generator=gen)
fmap = torch.rand(1, 3, 16, 16, generator=gen)
with torch.inference_mode():
    ours = (box_ops.nms(boxes, scores, 0.5), box_ops.roi_align(fmap, [boxes[:20] / 4], 2, 1.0, 2, True))
assert 'torchvision' not in sys.modules
import torchvision.ops as tv
with torch.inference_mode():
    theirs = (tv.nms(boxes, scores, 0.5), tv.roi_align(fmap, [boxes[:20] / 4], 2, 1.0, 2, True))
assert all(torch.equal(a, b) for a, b in zip(ours, theirs))
print('equal')
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "equal"
