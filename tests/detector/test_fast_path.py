"""The optimised inference path (channels-last, shared warps, batches, inference mode) gives the
detections of the straightforward one; the cascade and bfloat16 options; the Python API."""
import copy

import numpy as np
import pytest
import torch
from PIL import Image

from core.config import ConfigError
from core.errors import InputError
from detector import Detector
from detector.checkpoint import save_checkpoint
from detector.classifier import RegionClassifier
from detector.config import ClassifierConfig, DetectorConfig
from detector.ensemble import (
    average_probabilities,
    cascade_probabilities,
    member_probabilities,
    warp_groups,
)
from detector.pipeline import detect_regions, region_boxes
from detector.postprocess import postprocess
from proposals.base import Proposals

CLASSES = ["a", "b", "c"]


def members(paddings=(2, 5, 2, 7)):
    """Tiny members with random weights; members 0 and 2 share their crops."""
    out = []
    for i, p in enumerate(paddings):
        torch.manual_seed(i)
        out.append(RegionClassifier(CLASSES, ClassifierConfig(width=0.125, input_size=32, padding=p)).eval())
    return out


def scene(n_boxes=40, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (48, 70, 3), dtype=np.uint8)
    xy = rng.uniform(0, 50, (n_boxes, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(4, 30, (n_boxes, 2))], 1).astype(np.float32)
    return image, Proposals(boxes, np.zeros(n_boxes, np.uint8))


def straightforward(image, proposals, models, cfg):
    """Each member on its own, NCHW copy of its network, all regions in one batch, no_grad."""
    boxes = region_boxes(proposals, image.shape[:2], cfg.max_proposals)
    probs = []
    for m in models:
        net = copy.deepcopy(m).to(memory_format=torch.contiguous_format)
        with torch.no_grad():
            crops = net.warp(net.prepare_image(image), boxes)
            probs.append(torch.softmax(net.net(crops), dim=1))
    return postprocess(boxes, average_probabilities(torch.stack(probs)), image.shape[:2], cfg.score_threshold,
                       cfg.nms_iou, cfg.top_k, cfg.pre_nms_per_class)


def test_fast_path_gives_the_straightforward_detections():
    image, proposals = scene()
    models = members()
    assert models[0].net.conv1.conv.weight.is_contiguous(memory_format=torch.channels_last)
    cfg = DetectorConfig(batch_regions=7, score_threshold=0.0)
    fast = detect_regions(image, proposals, models, cfg)
    slow = straightforward(image, proposals, models, cfg)
    assert len(fast) == len(slow) > 0
    assert np.array_equal(fast.boxes, slow.boxes) and np.array_equal(fast.labels, slow.labels)
    assert np.abs(fast.scores - slow.scores).max() < 1e-4


def test_members_with_equal_crops_share_one_warp():
    groups = warp_groups(members())
    assert sorted(groups.values()) == [[0, 2], [1], [3]]


def test_cascade_scores_the_top_regions_with_every_member():
    image, proposals = scene(30)
    models = members()
    boxes = region_boxes(proposals, image.shape[:2])
    full = average_probabilities(member_probabilities(image, boxes, models, batch=8)[0])
    assert torch.allclose(cascade_probabilities(image, boxes, models, top=len(boxes), batch=8), full, atol=1e-6)
    only_first = member_probabilities(image, boxes, models[:1])[0][0]
    out = cascade_probabilities(image, boxes, models, top=5, batch=8)
    chosen = torch.argsort(only_first[:, 0], stable=True)[:5]
    rest = torch.ones(len(boxes), dtype=torch.bool)
    rest[chosen] = False
    assert torch.allclose(out[chosen], full[chosen], atol=1e-6)
    assert torch.allclose(out[rest], only_first[rest], atol=1e-6)
    with pytest.raises(ConfigError, match="bbox_regression"):
        DetectorConfig(cascade_top=5, bbox_regression=True)


def test_bfloat16_runs_and_stays_close():
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        pytest.skip("no bfloat16 on this CPU")
    image, proposals = scene()
    models = members()
    boxes = region_boxes(proposals, image.shape[:2])
    fp32 = member_probabilities(image, boxes, models)[0]
    bf16 = member_probabilities(image, boxes, models, dtype=torch.bfloat16)[0]
    assert bf16.dtype == torch.float32 and (bf16 - fp32).abs().max() < 0.05
    with pytest.raises(ConfigError, match="dtype"):
        DetectorConfig(dtype="float16")


def test_python_api_on_arrays_pil_images_and_lists(kit, tmp_path):
    for i, m in enumerate(members((2, 5))):
        save_checkpoint(tmp_path / f"member_{i}.pt", m, {}, member=i, epoch=0, commit="test")
    pixels = scene()[0]
    det = Detector.load(tmp_path, config={"proposal_method": "ss2x"})
    assert len(det.members) == 2 and det.classes == CLASSES
    det.proposer = kit.GridProposer()  # no selective search in a unit test
    one = det(pixels)
    assert len(one) > 0 and one.boxes.shape == (len(one), 4) and one.scores.dtype == np.float32
    assert one.class_names == [CLASSES[i] for i in one.labels]
    both = det([pixels, Image.fromarray(pixels)])
    assert len(both) == 2 and np.array_equal(both[1].boxes, one.boxes)
    with pytest.raises(InputError, match="uint8"):
        det(pixels.astype(np.float32))
    with pytest.raises(ConfigError, match="unknown"):
        Detector.load(tmp_path, config={"no_such_key": 1})
