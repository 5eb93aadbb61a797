"""Shared fixtures of the detector tests: easy generated images, a fixed-box proposer, a tiny model.

The easy task: bright red or green squares on black, 64×64 images. Proposals are a fixed grid of
square windows (stride 4, sides 12..28), so every planted square has a window with IoU > 0.6.
The tiny model (width 0.125, 32 px input) is trained once per session for a few SGD steps.
"""
from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from PIL import Image

from core.structures import DetectionDataset, ImageAnnotations
from detector.checkpoint import save_checkpoint
from detector.classifier import RegionClassifier
from detector.config import ClassifierConfig, SamplerConfig, TrainConfig
from detector.sampler import RegionSampler
from detector.train import ImageStore, TrainState, make_optimizer, train_epoch
from proposals.base import Proposals

CLASSES = ["red", "green"]
COLOURS = [(255, 40, 40), (40, 255, 40)]
SIZE = 64
BG_LO = 0.1  # Fast R-CNN's lower bound: partial windows as negatives sharpen localisation
TINY = ClassifierConfig(width=0.125, input_size=64, padding=4)


def grid_boxes(width: int = SIZE, height: int = SIZE, sides=(12, 16, 20, 24, 28), stride: int = 4) -> np.ndarray:
    """``[P, 4]`` xyxy square windows on a regular grid inside the image."""
    out = [(x, y, x + s, y + s) for s in sides for y in range(0, height - s + 1, stride)
           for x in range(0, width - s + 1, stride)]
    return np.asarray(out, np.float32).reshape(-1, 4)


class GridProposer:
    """A fake proposer: the same grid of windows for every image (no selective search needed)."""

    def __call__(self, image: np.ndarray) -> Proposals:
        boxes = grid_boxes(image.shape[1], image.shape[0])
        return Proposals(boxes, np.zeros(len(boxes), np.uint8))


def easy_image(rng: np.random.Generator, n_objects: int = 2):
    """A black 64×64 image with ``n_objects`` non-overlapping squares: (pixels, boxes, labels)."""
    pixels = np.zeros((SIZE, SIZE, 3), np.uint8)
    boxes, labels = [], []
    while len(boxes) < n_objects:
        side = int(rng.integers(14, 27))
        x, y = (int(v) for v in rng.integers(0, SIZE - side, 2))
        box = (x, y, x + side, y + side)
        if any(x < b[2] + 2 and b[0] < box[2] + 2 and y < b[3] + 2 and b[1] < box[3] + 2 for b in boxes):
            continue
        label = int(rng.integers(0, len(CLASSES)))
        pixels[y:y + side, x:x + side] = COLOURS[label]
        boxes.append(box)
        labels.append(label)
    return pixels, np.asarray(boxes, np.float32), np.asarray(labels, np.int64)


def make_split(folder, n: int, seed: int) -> DetectionDataset:
    """Write ``n`` easy PNGs into ``folder`` and return their dataset."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images = []
    for i in range(n):
        pixels, boxes, labels = easy_image(rng, n_objects=1 + i % 2)
        Image.fromarray(pixels).save(folder / f"img{i:03d}.png")
        images.append(ImageAnnotations(i + 1, f"img{i:03d}.png", SIZE, SIZE, boxes, labels))  # 1-based as devkit indices
    return DetectionDataset(list(CLASSES), images, image_root=str(folder))


def train_tiny(dataset: DetectionDataset, epochs: int = 15, seed: int = 0) -> tuple[RegionClassifier, list[float]]:
    """A tiny classifier trained for a few epochs on ``dataset`` with grid proposals."""
    torch.manual_seed(seed)
    model = RegionClassifier(CLASSES, TINY)
    proposals = {ann.image_id: grid_boxes() for ann in dataset.images}
    sampler = RegionSampler(dataset, proposals, SamplerConfig(images_per_batch=4, bg_iou_lo=BG_LO), seed=seed)
    cfg = TrainConfig(epochs=epochs, lr=0.05, warmup_iters=5, lr_steps=(), seed=seed)
    optimizer = make_optimizer(model, cfg)
    store, state = ImageStore(dataset), TrainState()
    losses = []
    for _ in range(epochs):
        losses.append(train_epoch(model, optimizer, sampler, store, cfg, 0.0, state))
        state.epoch += 1
    return model.eval(), losses


@pytest.fixture(scope="session")
def easy_split(tmp_path_factory) -> DetectionDataset:
    return make_split(tmp_path_factory.mktemp("easy") / "images", 24, seed=1)


@pytest.fixture(scope="session")
def tiny_model(easy_split, tmp_path_factory):
    """(model, per-epoch losses, folder with member_0.pt) trained once per test session."""
    torch.set_num_threads(1)
    model, losses = train_tiny(easy_split)
    folder = tmp_path_factory.mktemp("weights")
    save_checkpoint(folder / "member_0.pt", model, {"note": "test"}, member=0, epoch=len(losses),
                    commit="test")
    return model, losses, folder


def pretrain_args(out) -> list[str]:
    """tools/pretrain.py arguments for a tiny run: width 0.125, 32 px crops, 2 epochs of 2 steps of 16."""
    return ["--out", str(out), "--set", "classifier.width=0.125", "--set", "classifier.input_size=32",
            "--set", "classifier.padding=3", "--set", "stream.batch_size=16", "--set", "stream.workers=0",
            "--set", "stream.heldout_batches=1", "--set", "train.epochs=2", "--set", "train.steps_per_epoch=2",
            "--set", "train.warmup_iters=1"]


@pytest.fixture(scope="session")
def kit(load_tool):
    """This module's helpers for test files (importlib mode: tests cannot import conftest)."""
    return types.SimpleNamespace(CLASSES=CLASSES, TINY=TINY, SIZE=SIZE, grid_boxes=grid_boxes,
                                 GridProposer=GridProposer, easy_image=easy_image,
                                 make_split=make_split, train_tiny=train_tiny, pretrain_args=pretrain_args,
                                 load_tool=load_tool)
