"""torchvision Faster R-CNN on a time budget, with one of two backbones (``baseline.backbone``):

* ``mobilenet_v3``: torchvision's own ``fasterrcnn_mobilenet_v3_large_fpn``, random init;
* ``inception``: our Inception trunk (``nets.inception``, the width our members use) under a
  torchvision FPN over blocks 3b/4e/5b (strides 8/16/32, plus a max-pooled 64), which
  ``tools/train_baseline.py --pretrained`` starts from a ``tools/pretrain.py`` checkpoint, so that
  the baseline's backbone learns from the same crop stream as our members. Its BatchNorm layers are
  frozen (``freeze_bn``), as torchvision and detectron2 do for a pretrained backbone: 4 images a
  step are too few to re-estimate them.

Trained by core.engine (one endless epoch that the wall-clock budget ends); checkpoints in
core.checkpoint's format (earlier files load through :func:`upgrade`).

Data flow: COCO split → (image float [3,H,W] in 0..1, target {boxes [N,4] xyxy, labels [N] 1..K})
→ torchvision's own transform (resize to ``min_size``..``max_size``, ImageNet normalisation)
→ losses in training / ``Detections`` in original pixels at inference (labels back to 0..K-1).
"""
from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torchvision.models.detection import FasterRCNN, fasterrcnn_mobilenet_v3_large_fpn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d
from tqdm import tqdm

from core import checkpoint as common
from core.boxes import flip_boxes
from core.config import (AT_LEAST_ONE, COUNT, FRACTION, POSITIVE, ConfigError, Range, build_dataclass,
                         check_ranges)
from core.engine import Recipe, TrainState, fit
from core.engine import resume as engine_resume
from core.errors import InputError
from core.image import load_image
from core.structures import DetectionDataset, Detections, ImageAnnotations
from nets.inception import BLOCK_STRIDES, Inception

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BaselineConfig:
    backbone: str = "mobilenet_v3"  # or "inception" (our trunk + FPN; see the module docstring)
    width: float = 0.25          # inception: the trunk's width multiplier (a pretrained trunk's own)
    levels: tuple[str, ...] = ("3b", "4e", "5b")  # inception: the blocks the FPN reads, in trunk order
    fpn_channels: int = 128      # inception: FPN output channels
    freeze_bn: bool = True       # inception: BatchNorm frozen at the (pretrained) statistics
    clock: str = "wall"          # what budget_minutes counts: "wall" clock or this process's "cpu" time
    min_size: int = 384          # our images are 256-512 px on the long side
    max_size: int = 512
    batch_size: int = 4
    lr: float = 0.02             # SGD; from scratch with BatchNorm trains stably at this rate
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iters: int = 100
    budget_minutes: float = 85.0  # wall-clock training budget (counts across resumes): what the 6-epoch
                                  # bundle took; the 12-epoch tools/train_bundled.sh takes ~210 (README)
    lr_drop_at: float = 0.8      # the rate drops x0.1 after this fraction of the budget (step policy)
    score_thresh: float = 0.01   # keep low scores: AP needs the tail
    detections_per_img: int = 100
    seed: int = 0

    def __post_init__(self):
        check_ranges(self, min_size=AT_LEAST_ONE, max_size=AT_LEAST_ONE, batch_size=AT_LEAST_ONE, lr=POSITIVE,
                     momentum=Range(0, 1, hi_open=True), weight_decay=COUNT, warmup_iters=COUNT,
                     budget_minutes=POSITIVE, lr_drop_at=Range(0, 1), score_thresh=FRACTION,
                     detections_per_img=AT_LEAST_ONE, seed=COUNT, width=POSITIVE, fpn_channels=AT_LEAST_ONE)
        if self.backbone not in BACKBONES:
            raise ConfigError(f"backbone: {self.backbone!r} is not one of {', '.join(BACKBONES)}")
        if self.clock not in CLOCKS:
            raise ConfigError(f"clock: {self.clock!r} is not one of {', '.join(CLOCKS)}")
        order = list(BLOCK_STRIDES)
        if (not self.levels or any(name not in BLOCK_STRIDES for name in self.levels)
                or [order.index(n) for n in self.levels] != sorted({order.index(n) for n in self.levels})):
            raise ConfigError(f"levels: {list(self.levels)} must be distinct inception blocks in trunk order "
                              f"({', '.join(order)})")
        if self.min_size > self.max_size:
            raise ConfigError(f"min_size: {self.min_size} is out of range (value <= max_size {self.max_size})")


BACKBONES = ("mobilenet_v3", "inception")
CLOCKS = {"wall": time.monotonic, "cpu": time.process_time}
# Inception backbone anchors, per FPN level (strides 8, 16, 32, 64): two sizes × three aspect ratios
# each, spanning the benchmark's objects (12-300 px, ×0.75-2.5 after the resize to min_size).
INCEPTION_ANCHORS = ((16, 24), (32, 48), (64, 96), (160, 320))


class InceptionFPN(nn.Module):
    """Our Inception trunk → a torchvision FPN over ``levels`` (+ a max-pooled level): the
    backbone torchvision's ``FasterRCNN`` takes (``out_channels``; forward → ordered maps)."""

    def __init__(self, cfg: BaselineConfig) -> None:
        super().__init__()
        self.body = Inception(0, cfg.width, aux_logits=False)
        self.levels = tuple(cfg.levels)
        channels = [getattr(self.body, f"inception{name}").out_channels for name in self.levels]
        self.fpn = FeaturePyramidNetwork(channels, cfg.fpn_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = cfg.fpn_channels

    def forward(self, x: torch.Tensor) -> OrderedDict:
        maps = self.body.block_maps(x, self.levels)
        return self.fpn(OrderedDict((str(i), m) for i, m in enumerate(maps)))


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Every ``BatchNorm2d`` under ``module`` replaced, in place, by torchvision's ``FrozenBatchNorm2d``
    (the same state-dict keys, so a BatchNorm checkpoint loads into it)."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            frozen.load_state_dict({k: v for k, v in child.state_dict().items() if k != "num_batches_tracked"})
            setattr(module, name, frozen)
        else:
            freeze_batchnorm(child)
    return module


def build_model(num_classes: int, cfg: BaselineConfig) -> torch.nn.Module:
    """Faster R-CNN with ``num_classes`` object classes (+1 background), random init, on
    ``cfg.backbone`` (start an inception backbone from pretraining with :func:`load_backbone`)."""
    common_args = dict(min_size=cfg.min_size, max_size=cfg.max_size, box_score_thresh=cfg.score_thresh,
                       box_detections_per_img=cfg.detections_per_img)
    if cfg.backbone == "mobilenet_v3":
        return fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None, num_classes=num_classes + 1,
                                                 **common_args)
    backbone = InceptionFPN(cfg)
    if cfg.freeze_bn:
        freeze_batchnorm(backbone.body)
    levels = len(cfg.levels) + 1
    anchors = AnchorGenerator(INCEPTION_ANCHORS[-levels:], ((0.5, 1.0, 2.0),) * levels)
    pool = MultiScaleRoIAlign([str(i) for i in range(len(cfg.levels))], output_size=7, sampling_ratio=2)
    return FasterRCNN(backbone, num_classes + 1, rpn_anchor_generator=anchors, box_roi_pool=pool, **common_args)


def load_backbone(model: FasterRCNN, path) -> str:
    """Start an inception-backbone baseline's trunk from a ``tools/pretrain.py`` checkpoint.

    Raises:
        InputError: not a pretraining checkpoint, a MobileNet baseline, or weights that do not fit.
    """
    from detector.pretrain import load_pretrained, read_pretrained
    if not isinstance(model.backbone, InceptionFPN):
        raise InputError(f"{path}: --pretrained needs baseline.backbone=inception")
    blob = read_pretrained(path)
    if blob is None:
        raise InputError(f"{path}: not a tools/pretrain.py checkpoint")
    return load_pretrained(model.backbone.body, blob, path)


def _sample(ann: ImageAnnotations, root: str, flip: bool):
    pixels = load_image(os.path.join(root, ann.file_name)).pixels
    image = torch.tensor(pixels).permute(2, 0, 1).float().div_(255)  # a copy: decoded arrays may be read-only
    keep = ~ann.iscrowd
    boxes = torch.from_numpy(ann.boxes[keep]).float()
    labels = torch.from_numpy(ann.labels[keep]).long() + 1
    if flip:
        image = image.flip(-1)
        boxes = flip_boxes(boxes, image.shape[-1])
    return image, {"boxes": boxes.reshape(-1, 4), "labels": labels}


def _learning_rate(cfg: BaselineConfig, it: int, spent: float) -> float:
    drop = 0.1 if spent >= cfg.lr_drop_at * cfg.budget_minutes * 60 else 1.0
    return cfg.lr * drop * min(1.0, (it + 1) / cfg.warmup_iters)


def make_optimizer(model, cfg: BaselineConfig) -> torch.optim.SGD:
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def batches(dataset: DetectionDataset, cfg: BaselineConfig, iteration: int, device="cpu"):
    """Endless minibatches from step ``iteration`` on: (images, targets) lists for the model.

    Images are drawn at random (with a flip half the time) from a generator seeded by the seed
    and the step, as are torch's (the detector's box samplers), so a resumed run draws afresh.
    """
    rng = np.random.default_rng(cfg.seed + iteration)
    torch.manual_seed(cfg.seed + iteration)
    while True:
        idx = rng.choice(len(dataset.images), cfg.batch_size, replace=False)
        batch = [_sample(dataset.images[i], dataset.image_root, bool(rng.random() < 0.5)) for i in idx]
        yield [b[0].to(device) for b in batch], [{k: v.to(device) for k, v in b[1].items()} for b in batch]


def baseline_recipe(model, dataset: DetectionDataset, cfg: BaselineConfig, optimizer: torch.optim.Optimizer,
                    save=lambda state: None, device="cpu") -> Recipe:
    """The engine's :class:`core.engine.Recipe`: one endless epoch that the wall-clock budget ends
    (counted across resumes), a checkpoint every 200 steps and when the budget is spent."""
    params = [p for g in optimizer.param_groups for p in g["params"]]

    def step(batch, state: TrainState) -> dict[str, float]:
        for g in optimizer.param_groups:
            g["lr"] = _learning_rate(cfg, state.iteration, state.seconds)
        model.train()
        loss = sum(model(*batch).values())
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        optimizer.step()
        return {"loss": loss.item()}

    return Recipe(1, lambda state: batches(dataset, cfg, state.iteration, device), step, save, seed=cfg.seed,
                  budget_seconds=cfg.budget_minutes * 60, save_every=200, name="faster-rcnn",
                  clock=CLOCKS[cfg.clock])


def train(model, dataset: DetectionDataset, cfg: BaselineConfig, optimizer: torch.optim.Optimizer,
          state: TrainState | None = None, save=lambda state: None, device="cpu") -> TrainState:
    """Train until the wall-clock budget runs out (``state.seconds`` counts earlier runs)."""
    model.to(device)
    return fit(baseline_recipe(model, dataset, cfg, optimizer, save, device), state)


# ---------------------------------------------------------------- checkpoints

KIND = "faster-rcnn"
# A resumed run may get a larger budget (it trains on) and other inference settings.
RESUMABLE = ("baseline.budget_minutes", "baseline.score_thresh", "baseline.detections_per_img", "baseline.clock")


def save_checkpoint(path, model, config: dict, classes: list[str], optimizer: torch.optim.Optimizer,
                    state: TrainState) -> None:
    """core.checkpoint's format, plus the class names."""
    common.save_checkpoint(path, KIND, model.state_dict(), config, optimizer.state_dict(), state.to_dict(),
                           extra={"classes": list(classes)})


def upgrade(blob: dict) -> dict | None:
    """A checkpoint of the earlier layout (``model``, ``optimizer``, ``iteration``, ``seconds``,
    ``config`` = the baseline section, ``classes``) in today's."""
    if "format" in blob or not {"model", "iteration", "config"} <= set(blob):
        return None
    return {"format": common.FORMAT_PREFIX + KIND, "config": {"baseline": blob["config"]}, "model": blob["model"],
            "optimizer": blob.get("optimizer"), "commit": "unknown", "classes": blob.get("classes", []),
            "train_state": {"iteration": blob["iteration"], "seconds": blob.get("seconds", 0.0)}}


def resume(path, model, optimizer: torch.optim.Optimizer | None, config: dict) -> TrainState:
    """Weights, optimizer and progress from ``path``; refuses another recipe (see ``RESUMABLE``)."""
    state, _ = engine_resume(path, KIND, model, optimizer, config, RESUMABLE, upgrade)
    return state


def load_baseline(path) -> tuple[torch.nn.Module, dict]:
    """The trained detector in a checkpoint (either layout) and the checkpoint dict.

    Raises:
        InputError: unreadable, unsafe, damaged or foreign file; weights that do not fit.
    """
    blob = common.read_checkpoint(path, KIND, upgrade)
    try:
        cfg = build_dataclass(BaselineConfig, blob["config"].get("baseline"), "baseline")
    except ConfigError as err:
        raise InputError(f"{path}: not a Faster R-CNN baseline checkpoint ({err})") from None
    classes = blob.get("classes")
    if not isinstance(classes, list) or not classes:
        raise InputError(f"{path}: checkpoint has no class list")
    model = build_model(len(classes), cfg)
    return common.load_model_state(model, blob["model"], path), blob


@torch.no_grad()
def detect_dataset(model, dataset: DetectionDataset, device="cpu") -> tuple[dict[int, Detections], float]:
    """Run the model over every image; returns detections by image id and seconds per image."""
    model.to(device).eval()
    out: dict[int, Detections] = {}
    seconds = 0.0
    for ann in tqdm(dataset.images, desc="faster-rcnn detect", unit="img"):
        image, _ = _sample(ann, dataset.image_root, flip=False)
        start = time.perf_counter()
        pred = model([image.to(device)])[0]
        seconds += time.perf_counter() - start
        out[ann.image_id] = Detections(pred["boxes"].cpu().numpy(), pred["scores"].cpu().numpy(),
                                       pred["labels"].cpu().numpy() - 1)
    return out, seconds / max(len(dataset.images), 1)
