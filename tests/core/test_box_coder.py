"""core.box_coder: R-CNN's and MultiBox's offsets by hand, the round trip, the decode clamp."""
import math

import torch

from core.box_coder import MAX_LOG_SIZE, BoxCoder


def test_hand_worked_offsets_with_and_without_weights():
    reference = torch.tensor([[10.0, 20.0, 30.0, 60.0]])  # centre (20, 40), 20 x 40
    box = torch.tensor([[12.0, 16.0, 52.0, 56.0]])  # centre (32, 36), 40 x 40
    assert torch.allclose(BoxCoder().encode(box, reference), torch.tensor([[0.6, -0.1, math.log(2), 0.0]]))
    weighted = BoxCoder((10, 10, 5, 5)).encode(box, reference)
    assert torch.allclose(weighted, torch.tensor([[6.0, -1.0, 5 * math.log(2), 0.0]]))


def test_round_trip_broadcasts_references_and_clamps_sizes():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(5, 2, generator=g)
    references = torch.cat([xy, xy + 0.1 + torch.rand(5, 2, generator=g)], 1)
    boxes = references[:, None] + torch.rand(5, 3, 4, generator=g) * 0.05  # [R, K, 4]
    for coder in (BoxCoder(), BoxCoder((10, 10, 5, 5))):
        offsets = coder.encode(boxes, references[:, None])
        assert offsets.shape == (5, 3, 4)
        assert torch.allclose(coder.decode(offsets, references[:, None]), boxes, atol=1e-5)
    huge = BoxCoder().decode(torch.tensor([[0.0, 0.0, 100.0, 100.0]]), torch.tensor([[0.0, 0.0, 1.0, 1.0]]))
    assert torch.allclose(huge[0, 2] - huge[0, 0], torch.tensor(math.exp(MAX_LOG_SIZE)))
