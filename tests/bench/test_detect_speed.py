"""bench.detect_speed: the stage watch, the paper setting's regions and members, forward rates."""
import numpy as np
import torch

from bench.detect_speed import (
    PAPER_CLASSIFIER,
    Stopwatch,
    _scaled,
    forward_rate,
    topped_up,
)
from detector.classifier import RegionClassifier
from detector.config import ClassifierConfig
from proposals.base import Proposals


def test_stopwatch_adds_up_each_stage():
    watch = Stopwatch()
    for _ in range(2):
        with watch("nms"):
            pass
    with watch("warping"):
        sum(range(10000))
    assert set(watch.seconds) == {"nms", "warping"} and watch.seconds["warping"] > 0


def test_only_per_region_stages_are_scaled():
    scaled = _scaled({"warping": 1.0, "member 3 forward": 2.0, "nms": 0.5, "selective search": 1.0}, 4.0)
    assert scaled == {"warping": 4.0, "member 3 forward": 8.0, "nms": 0.5, "selective search": 1.0}


def test_topped_up_proposals_have_the_count_and_stay_in_the_image():
    own = Proposals(np.array([[0, 0, 10, 10], [5, 5, 30, 40]], np.float32), np.zeros(2, np.uint8))
    more = topped_up(own, 50, (60, 80))
    assert len(more) == 50 and np.array_equal(more.boxes[:2], own.boxes)
    extra = more.boxes[2:]
    assert (extra[:, :2] >= 0).all() and (extra[:, 2] <= 80).all() and (extra[:, 3] <= 60).all()
    assert ((extra[:, 2:] - extra[:, :2]) > 0).all()
    assert len(topped_up(more, 10, (60, 80))) == 10


def test_paper_members_are_googlenet_at_224_with_three_paddings():
    assert PAPER_CLASSIFIER.width == 1.0 and PAPER_CLASSIFIER.input_size == 224
    assert PAPER_CLASSIFIER.padding == 16


def test_forward_rate_leaves_the_member_as_it_was():
    member = RegionClassifier(["x"], ClassifierConfig(width=0.125, input_size=32, padding=2)).eval()
    before = member.net.conv1.conv.weight.stride()
    rate = forward_rate(member, 4, 1, torch.contiguous_format, None)
    assert rate > 0 and member.net.conv1.conv.weight.stride() == before
