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


def test_each_image_gets_its_yardstick_measured_beside_it(tmp_path):
    from PIL import Image

    from bench.detect_speed import time_images
    from detector.config import DetectorConfig

    paths = []
    for i in range(2):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(np.full((40, 50, 3), 60 * i, np.uint8)).save(paths[-1])
    boxes = np.array([[0, 0, 20, 20], [5, 5, 45, 35], [10, 0, 30, 40]], np.float32)

    def proposer(pixels):
        return Proposals(boxes, np.zeros(3, np.uint8))

    member = RegionClassifier(["x"], ClassifierConfig(width=0.125, input_size=32, padding=2)).eval()
    calls = []
    stages, cpu, totals, counts, bare = time_images(
        paths, proposer, [member], DetectorConfig(streams=1), bare_per_region=lambda: calls.append(1) or 0.5)
    assert counts == [3, 3] and bare == [1.5, 1.5] and len(calls) == 2 and len(totals) == 2
    assert stages["proposals"] > 0 and "proposals" in cpu and "member 0 forward" in stages


def test_work_outside_the_classifiers_is_shared_over_the_cores():
    from bench.detect_speed import outside_classifiers

    out = outside_classifiers({"warping": 0.2, "member 0 forward": 5.0},
                              {"selective search": 0.4, "multibox": 0.1, "warping": 9.0}, bare=1.0)
    assert out["outside_classifiers_s_per_image"] == {"selective search": 0.4, "multibox": 0.1, "warping": 0.2}
    assert abs(out["outside_share_of_bare"] - 0.7 / out["cores"]) < 1e-9
    alone = outside_classifiers({}, {"proposals": 0.3, "image loading": 0.1}, bare=0.0)
    assert alone["outside_classifiers_s_per_image"] == {"proposals": 0.3, "warping": 0.0}
    assert alone["outside_share_of_bare"] != alone["outside_share_of_bare"]  # NaN: no yardstick
