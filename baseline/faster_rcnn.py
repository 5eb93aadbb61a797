"""torchvision Faster R-CNN (MobileNetV3-Large FPN), no pretrained weights, on a CPU-time budget.

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
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_fpn
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

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BaselineConfig:
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
                     detections_per_img=AT_LEAST_ONE, seed=COUNT)
        if self.min_size > self.max_size:
            raise ConfigError(f"min_size: {self.min_size} is out of range (value <= max_size {self.max_size})")


def build_model(num_classes: int, cfg: BaselineConfig) -> torch.nn.Module:
    """Faster R-CNN MobileNetV3-FPN with ``num_classes`` object classes (+1 background), random init."""
    return fasterrcnn_mobilenet_v3_large_fpn(
        weights=None, weights_backbone=None, num_classes=num_classes + 1,
        min_size=cfg.min_size, max_size=cfg.max_size, box_score_thresh=cfg.score_thresh,
        box_detections_per_img=cfg.detections_per_img)


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
                  budget_seconds=cfg.budget_minutes * 60, save_every=200, name="faster-rcnn")


def train(model, dataset: DetectionDataset, cfg: BaselineConfig, optimizer: torch.optim.Optimizer,
          state: TrainState | None = None, save=lambda state: None, device="cpu") -> TrainState:
    """Train until the wall-clock budget runs out (``state.seconds`` counts earlier runs)."""
    model.to(device)
    return fit(baseline_recipe(model, dataset, cfg, optimizer, save, device), state)


# ---------------------------------------------------------------- checkpoints

KIND = "faster-rcnn"
# A resumed run may get a larger budget (it trains on) and other inference settings.
RESUMABLE = ("baseline.budget_minutes", "baseline.score_thresh", "baseline.detections_per_img")


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
