"""detector.warp: the batched grid_sample warp against the per-region OpenCV reference.

Tolerance: atol 1e-5 (float rounding) on every pixel whose bilinear sample lies inside the cropped
region: all of a shrunk region, and all but the outer ceil((S / w - 1) / 2) rows/columns of an
enlarged one, where cv2.resize replicates the crop's edge (see detector/warp.py).
"""
import math

import pytest
import torch

from detector.warp import dilate_boxes, jitter_boxes, warp_regions, warp_regions_reference


@pytest.fixture
def image():
    g = torch.Generator().manual_seed(0)
    return torch.randn(3, 48, 64, generator=g)


def test_dilation_gives_p_pixels_of_context():
    # S = 227, p = 16: scale 227/195; a 195-px box becomes 227 px, so 16 px each side.
    out = dilate_boxes(torch.tensor([[100.0, 50.0, 295.0, 245.0]]), size=227, padding=16)
    assert out.tolist() == [[84.0, 34.0, 311.0, 261.0]]
    assert dilate_boxes(torch.tensor([[5.0, 5.0, 5.0, 5.0]]), 16, 0).tolist() == [[5, 5, 6, 6]]
    with pytest.raises(ValueError):
        dilate_boxes(torch.zeros(1, 4), size=32, padding=16)


def test_shrunk_regions_match_opencv_everywhere(image):
    # Regions inside, across the border and wholly outside the image, all larger than S.
    boxes = torch.tensor([[3.0, 2.0, 40.0, 30.0], [-10.0, 20.0, 30.0, 60.0],
                          [30.0, -5.0, 70.0, 47.0], [100.0, 100.0, 130.0, 140.0]])
    fast = warp_regions(image, boxes, size=16, padding=2)
    ref = warp_regions_reference(image, boxes, size=16, padding=2)
    assert fast.shape == (4, 3, 16, 16)
    assert torch.allclose(fast, ref, atol=1e-5)
    assert torch.count_nonzero(fast[3]) == 0  # outside the image: the mean, 0


@pytest.mark.parametrize("box", [[10.0, 12.0, 18.0, 17.0], [-2.0, 40.0, 9.0, 50.0], [60.0, 5.0, 66.0, 20.0]])
def test_enlarged_regions_match_opencv_inside_the_edge_band(image, box):
    size, padding = 24, 4
    boxes = torch.tensor([box])
    fast = warp_regions(image, boxes, size, padding)[0]
    ref = warp_regions_reference(image, boxes, size, padding)[0]
    x1, y1, x2, y2 = dilate_boxes(boxes, size, padding)[0].tolist()
    bx = max(0, math.ceil((size / (x2 - x1) - 1) / 2))
    by = max(0, math.ceil((size / (y2 - y1) - 1) / 2))
    inner = (slice(None), slice(by, size - by), slice(bx, size - bx))
    assert torch.allclose(fast[inner], ref[inner], atol=1e-5)
    assert (fast - ref).abs().max() <= 2 * image.abs().max()  # the band is still a blend of neighbours


def test_empty_and_device_and_dtype(image):
    assert warp_regions(image, torch.zeros(0, 4), 8, 1).shape == (0, 3, 8, 8)
    out = warp_regions(image.double(), [[0, 0, 64, 48]], 8, 0)
    assert out.dtype == torch.float32 and out.shape == (1, 3, 8, 8)


def test_jitter_is_seeded_and_zero_jitter_is_identity():
    boxes = torch.tensor([[10.0, 10.0, 30.0, 50.0]])
    assert torch.equal(jitter_boxes(boxes, 0.0), boxes)
    a = jitter_boxes(boxes, 0.1, torch.Generator().manual_seed(3))
    b = jitter_boxes(boxes, 0.1, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and not torch.equal(a, boxes)
    w = a[0, 2] - a[0, 0]
    assert 20 * math.exp(-0.1) - 1e-4 <= w <= 20 * math.exp(0.1) + 1e-4
