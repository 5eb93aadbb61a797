"""detector.ensemble: probabilities are averaged over members; members must agree on classes."""
import numpy as np
import pytest
import torch

from core.errors import InputError
from detector.classifier import RegionClassifier
from detector.config import ClassifierConfig
from detector.ensemble import average_probabilities, balanced_batch, check_members, member_probabilities

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
    (765, 256, 3, 1, 256),   # one stream: unchanged
    (1, 256, 3, 2, 1),       # cannot split further
    (0, 256, 3, 2, 256),
])
def test_balanced_batch_splits_jobs_evenly(regions, batch, groups, streams, expect):
    assert balanced_batch(regions, batch, groups, streams) == expect
