"""detector.ensemble: probabilities are averaged over members; members must agree on classes."""
import numpy as np
import pytest
import torch

from core.errors import InputError
from detector.classifier import RegionClassifier
from detector.config import ClassifierConfig
from detector.ensemble import average_probabilities, balanced_batch, check_members, member_probabilities, padded

TINY = ClassifierConfig(width=0.125, input_size=32, padding=2)


def test_average_of_hand_made_probabilities():
    probs = torch.tensor([[[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]],
                          [[0.1, 0.3, 0.6], [0.0, 0.0, 1.0]]])  # [M=2, R=2, K+1=3]
    out = average_probabilities(probs)
    assert out.shape == (2, 3)
    assert torch.allclose(out, torch.tensor([[0.3, 0.4, 0.3], [0.5, 0.0, 0.5]]))
    assert torch.allclose(out.sum(1), torch.ones(2))
    with pytest.raises(ValueError):
        average_probabilities(torch.zeros(0, 2, 3))


def test_members_with_own_padding_are_averaged():
    torch.manual_seed(0)
    a = RegionClassifier(["x", "y"], TINY).eval()
    b = RegionClassifier(["x", "y"], ClassifierConfig(width=0.125, input_size=32, padding=6)).eval()
    image = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    boxes = torch.tensor([[0, 0, 20, 20], [10, 5, 45, 38], [30, 30, 31, 31]], dtype=torch.float32)
    probs, feats = member_probabilities(image, boxes, [a, b], batch=2)
    assert probs.shape == (2, 3, 3) and feats == [None, None]
    assert torch.allclose(probs[0], member_probabilities(image, boxes, [a])[0][0])
    assert torch.allclose(probs.sum(2), torch.ones(2, 3), atol=1e-5)
    empty, _ = member_probabilities(image, torch.zeros(0, 4), [a, b])
    assert empty.shape == (2, 0, 3)


def test_members_must_share_classes():
    with pytest.raises(InputError, match="no members"):
        check_members([])
    with pytest.raises(InputError, match="member 1"):
        check_members([RegionClassifier(["x"], TINY), RegionClassifier(["y"], TINY)])


def test_parallel_streams_give_one_streams_probabilities_exactly():
    # Two paddings (two warp groups), five batches of 3: several jobs per stream.
    torch.manual_seed(1)
    members = [RegionClassifier(["x", "y"], TINY).eval(),
               RegionClassifier(["x", "y"], ClassifierConfig(width=0.125, input_size=32, padding=6)).eval()]
    image = np.random.default_rng(1).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    xy = torch.rand(13, 2, generator=torch.Generator().manual_seed(2)) * 50
    boxes = torch.cat([xy, xy + 8 + xy.flip(1) / 2], dim=1)
    threads = torch.get_num_threads()
    one, _ = member_probabilities(image, boxes, members, batch=3, streams=1)
    two, feats = member_probabilities(image, boxes, members, batch=3, streams=2, with_features=True)
    assert torch.equal(one, two)  # a region's outputs do not depend on its thread or batch
    assert feats[0].shape[0] == 13 and torch.get_num_threads() == threads  # threads restored


@pytest.mark.parametrize("regions,batch,groups,streams,expect", [
    (765, 256, 3, 2, 192),   # 3 x 3 = 9 jobs -> 3 x 4 = 12, six per stream
    (512, 256, 2, 2, 256),   # already even
    (765, 256, 3, 1, 255),   # one stream: as many batches as the cap needs, evened out
    (1, 256, 3, 2, 1),       # cannot split further
    (0, 256, 3, 2, 256),
])
def test_balanced_batch_splits_jobs_evenly(regions, batch, groups, streams, expect):
    assert balanced_batch(regions, batch, groups, streams) == expect


@pytest.mark.parametrize("regions,batch,streams,expect", [
    (765, 256, 2, 192),      # already a multiple of 16
    (893, 256, 2, 224),
    (622, 256, 2, 160),      # 156 rounded up
    (700, 100, 1, 96),       # never above the cap: 100 rounds down to 96
    (5, 256, 2, 16),         # a small image: one batch of 16 rows (3 jobs: no even split exists)
    (200, 100, 2, 64),       # cap 96: 3 batches of 80 would be 9 jobs, so 4 of 64
    (129, 64, 2, 48),        # 48, 32 and 16 all give an odd job count: the largest size
])
def test_balanced_batch_is_a_multiple_within_the_cap(regions, batch, streams, expect):
    assert balanced_batch(regions, batch, 3, streams, multiple=16) == expect


def test_padded_appends_copies_of_the_last_box_up_to_the_multiple():
    boxes = torch.arange(20, dtype=torch.float32).reshape(5, 4)
    out = padded(boxes, 4)
    assert out.shape == (8, 4) and torch.equal(out[:5], boxes) and (out[5:] == boxes[-1]).all()
    assert torch.equal(padded(boxes[:4], 4), boxes[:4])
    assert len(padded(boxes[:0], 4)) == 0


def test_padded_batches_give_the_unpadded_probabilities():
    """Batches of 16 rows with a padded tail give each region what batches of any size give."""
    torch.manual_seed(0)
    members = [RegionClassifier(["a", "b"], TINY).eval()]
    image = np.random.default_rng(0).integers(0, 255, (50, 60, 3), dtype=np.uint8)
    boxes = torch.tensor([[2.0, 3.0, 40.0, 45.0], [0.0, 0.0, 60.0, 50.0], [10.0, 5.0, 30.0, 25.0]]).repeat(7, 1)
    odd, _ = member_probabilities(image, boxes, members, batch=5, streams=1)       # 5 < 16: no padding
    even, _ = member_probabilities(image, boxes, members, batch=16, streams=1)     # 16 + 5 padded to 16
    assert even.shape == (1, 21, 3)
    assert torch.equal(even, odd)
