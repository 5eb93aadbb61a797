"""detector.sampler: labels at the IoU thresholds, 32/96 fractions, flips, determinism."""
import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from core.structures import DetectionDataset, ImageAnnotations
from detector.config import SamplerConfig
from core.boxes import flip_boxes
from detector.sampler import RegionSampler, label_windows

GT = np.array([[0, 0, 10, 10], [20, 0, 30, 10]], np.float32)


def ann(boxes=GT, labels=(0, 1), width=40, height=20, image_id=0):
    return ImageAnnotations(image_id, "a.png", width, height, boxes, labels)


def test_labels_exactly_at_the_thresholds():
    # IoU with GT 0 = [0,0,10,10]: [0,0,10,5] → 0.5 exactly; [0,0,20,5] → 50/150 ≈ 0.33;
    # [0,0,10,4.9] → 0.49; [32,10,40,20] touches nothing → 0; [0,0,10,0] has no area.
    props = np.array([[0, 0, 10, 5], [0, 0, 20, 5], [0, 0, 10, 4.9], [32, 10, 40, 20],
                      [0, 0, 10, 0]], np.float32)
    w = label_windows(props, ann(), SamplerConfig(bg_iou_lo=0.1))
    # GT boxes first (fg, IoU 1), the degenerate box dropped.
    assert len(w.boxes) == 6
    assert w.labels.tolist() == [1, 2, 1, 0, 0, -1]
    assert w.ious[2].item() == pytest.approx(0.5)  # IoU 0.5 exactly: foreground (R-CNN: >= 0.5)
    assert w.ious[4].item() == pytest.approx(0.49)  # just below: background
    assert w.ious[5].item() == 0.0  # below bg_iou_lo = 0.1: ignored


def test_no_ground_truth_everything_is_background():
    w = label_windows(np.array([[0, 0, 5, 5]], np.float32), ann(np.zeros((0, 4)), ()), SamplerConfig())
    assert w.labels.tolist() == [0]
    w = label_windows(np.zeros((0, 4), np.float32), ann(np.zeros((0, 4)), ()), SamplerConfig())
    assert len(w.labels) == 0


def make_sampler(cfg, n_images=6, seed=0):
    rng = np.random.default_rng(0)
    images, proposals = [], {}
    for i in range(n_images):
        images.append(ann(image_id=i, width=40, height=20))
        xy = rng.uniform(0, 30, (300, 2)).astype(np.float32)
        wh = rng.uniform(4, 14, (300, 2)).astype(np.float32)
        near_gt = np.repeat(GT, 50, axis=0) + rng.uniform(-2, 2, (100, 4)).astype(np.float32)
        proposals[i] = np.concatenate([np.concatenate([xy, xy + wh], 1), near_gt])
    return RegionSampler(DetectionDataset(["a", "b"], images), proposals, cfg, seed=seed)


def check_batch(sampler, batch, cfg):
    labels = torch.cat([s.labels for s in batch])
    assert len(labels) == cfg.batch_size
    assert int((labels > 0).sum()) == round(cfg.batch_size * cfg.fg_fraction)
    for s in batch:
        boxes = flip_boxes(s.boxes, 40) if s.flip else s.boxes
        ious, best = box_iou(boxes, torch.as_tensor(GT)).max(1)
        fg = s.labels > 0
        assert (ious[fg] >= cfg.fg_iou).all()
        assert (s.labels[fg] == best[fg] + 1).all()  # labelled with its best GT's class
        assert ((ious[~fg] >= cfg.bg_iou_lo) & (ious[~fg] < cfg.bg_iou_hi)).all()


@pytest.mark.parametrize("lo", [0.0, 0.1])
def test_batches_are_32_fg_and_96_bg_within_thresholds(lo):
    cfg = SamplerConfig(bg_iou_lo=lo, images_per_batch=2)
    sampler = make_sampler(cfg)
    batches = list(sampler.epoch(0))
    assert len(batches) == len(sampler) == 3
    for batch in batches:
        check_batch(sampler, batch, cfg)


def test_few_foreground_fills_with_background():
    cfg = SamplerConfig(images_per_batch=1, batch_size=16, fg_fraction=0.5)
    sampler = RegionSampler(DetectionDataset(["a", "b"], [ann()]),
                            {0: np.array([[30, 10, 40, 20]], np.float32)}, cfg)
    (batch,) = list(sampler.epoch(0))
    labels = batch[0].labels
    assert len(labels) == 16 and int((labels > 0).sum()) == 2  # just the two GT boxes


def test_flips_mirror_boxes_and_seed_fixes_everything():
    cfg = SamplerConfig(images_per_batch=3)
    a = [[(s.index, s.flip, s.boxes.tolist()) for s in b] for b in make_sampler(cfg, seed=3).epoch(1)]
    b = [[(s.index, s.flip, s.boxes.tolist()) for s in b] for b in make_sampler(cfg, seed=3).epoch(1)]
    c = [[(s.index, s.flip) for s in b] for b in make_sampler(cfg, seed=4).epoch(1)]
    assert a == b
    assert [[x[:2] for x in batch] for batch in a] != c  # another member: another order/flips
    flips = [x[1] for batch in a for x in batch]
    assert any(flips) and not all(flips)
    assert flip_boxes(torch.tensor([[1.0, 2.0, 5.0, 6.0]]), 10).tolist() == [[5.0, 2.0, 9.0, 6.0]]
    no_flip = SamplerConfig(images_per_batch=3, flip=False)
    assert not any(s.flip for batch in make_sampler(no_flip).epoch(0) for s in batch)


def test_empty_dataset_has_no_batches():
    sampler = RegionSampler(DetectionDataset(["a"], []), {}, SamplerConfig())
    assert list(sampler.epoch(0)) == []
