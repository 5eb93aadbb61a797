"""Training one region classifier (one ensemble member) on fg/bg minibatches (METHOD §2.3).

Shape letters: B regions in a minibatch (128), S the warped size, K classes.
Loop per epoch: the sampler's minibatches → warp each image's regions (with flips and crop
jitter) → ``[B, 3, S, S]`` → (K+1)-way softmax loss + 0.3 × each auxiliary loss (GLN) → SGD
with momentum. After every epoch: validation loss on fixed val minibatches, validation mAP
(ILSVRC rules) of this member alone on cached val proposals, and an atomic checkpoint. All
randomness of epoch ``e`` derives from ``(seed, e)``, so a resumed run equals an uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from core.errors import InputError
from core.image import load_image
from core.structures import DetectionDataset, Detections
from detector.classifier import RegionClassifier
from detector.config import DetectorConfig, SamplerConfig, TrainConfig
from detector.sampler import ImageSample, RegionSampler

log = logging.getLogger(__name__)


class ImageStore:
    """Decoded images of a split by position, optionally kept in memory (uint8 ``[H, W, 3]``)."""

    def __init__(self, dataset: DetectionDataset, cache: bool = True) -> None:
        self.dataset, self.cache = dataset, cache
        self._images: dict[int, np.ndarray] = {}

    def path(self, index: int) -> str:
        return os.path.join(self.dataset.image_root, self.dataset.images[index].file_name)

    def get(self, index: int) -> np.ndarray:
        if index in self._images:
            return self._images[index]
        pixels = load_image(self.path(index)).pixels
        ann = self.dataset.images[index]
        if pixels.shape[:2] != (ann.height, ann.width):
            raise InputError(f"{self.path(index)}: image is {pixels.shape[1]}x{pixels.shape[0]}, "
                             f"the annotations say {ann.width}x{ann.height}")
        if self.cache:
            self._images[index] = pixels
        return pixels


def make_batch(model: RegionClassifier, store: ImageStore, samples: list[ImageSample], jitter: float,
               gen: torch.Generator | None, device="cpu") -> tuple[Tensor, Tensor]:
    """Warp a minibatch: (crops ``[B, 3, S, S]``, labels ``[B]``) on ``device``."""
    crops, labels = [], []
    for s in samples:
        pixels = store.get(s.index)
        if s.flip:
            pixels = pixels[:, ::-1]
        image = model.prepare_image(pixels, device)
        crops.append(model.warp(image, s.boxes.to(device), jitter, gen))
        labels.append(s.labels)
    return torch.cat(crops), torch.cat(labels).to(device)


def region_loss(outputs, labels: Tensor, aux_weight: float) -> Tensor:
    """Softmax loss of the main head plus ``aux_weight`` × each auxiliary head's (GLN)."""
    if isinstance(outputs, tuple):
        main, *aux = outputs
        return F.cross_entropy(main, labels) + aux_weight * sum(F.cross_entropy(a, labels) for a in aux)
    return F.cross_entropy(outputs, labels)


def learning_rate(cfg: TrainConfig, epoch: int, iteration: int) -> float:
    """Step schedule (×``lr_gamma`` after each epoch in ``lr_steps``) with a linear warm-up."""
    lr = cfg.lr * cfg.lr_gamma ** sum(epoch >= s for s in cfg.lr_steps)
    if iteration < cfg.warmup_iters:
        lr *= 0.1 + 0.9 * iteration / cfg.warmup_iters
    return lr


def train_step(model: RegionClassifier, optimizer: torch.optim.Optimizer, crops: Tensor,
               labels: Tensor, aux_weight: float = 0.3) -> float:
    """One SGD step on a minibatch; returns the loss."""
    model.train()
    loss = region_loss(model(crops), labels, aux_weight)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def make_optimizer(model: RegionClassifier, cfg: TrainConfig) -> torch.optim.SGD:
    """SGD with momentum; no weight decay on BatchNorm and bias parameters."""
    decay = [p for p in model.parameters() if p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.dim() <= 1]
    return torch.optim.SGD([{"params": decay, "weight_decay": cfg.weight_decay},
                            {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, momentum=cfg.momentum)


@torch.no_grad()
def validation_loss(model: RegionClassifier, store: ImageStore, sampler: RegionSampler,
                    batches: int, device="cpu") -> float:
    """Mean main-head loss over the first ``batches`` minibatches of the sampler's epoch 0."""
    model.eval()
    losses = []
    for i, samples in enumerate(sampler.epoch(0)):
        if i >= batches:
            break
        crops, labels = make_batch(model, store, samples, 0.0, None, device)
        losses.append(float(F.cross_entropy(model(crops), labels)))
    return float(np.mean(losses)) if losses else float("nan")


@dataclass
class TrainState:
    """What a checkpoint restores: the epoch to start from, the global step, the history."""

    epoch: int = 0
    iteration: int = 0
    history: list[dict] = field(default_factory=list)


def train_epoch(model: RegionClassifier, optimizer: torch.optim.Optimizer, sampler: RegionSampler,
                store: ImageStore, cfg: TrainConfig, jitter: float, state: TrainState,
                device="cpu") -> float:
    """One pass over the training images; returns the mean loss. Updates ``state.iteration``."""
    torch.manual_seed(cfg.seed * 100003 + state.epoch)  # dropout: resumable and per-member
    gen = torch.Generator().manual_seed(cfg.seed * 100003 + state.epoch + 7)  # crop jitter
    losses = []
    bar = tqdm(sampler.epoch(state.epoch), total=len(sampler), desc=f"epoch {state.epoch + 1}",
               leave=False, dynamic_ncols=True)
    for samples in bar:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(cfg, state.epoch, state.iteration)
        crops, labels = make_batch(model, store, samples, jitter, gen, device)
        loss = train_step(model, optimizer, crops, labels, cfg.aux_weight)
        if not math.isfinite(loss):
            raise FloatingPointError(f"loss became {loss} at epoch {state.epoch + 1}; lower train.lr")
        losses.append(loss)
        state.iteration += 1
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    return float(np.mean(losses)) if losses else float("nan")


def validation_map(model: RegionClassifier, dataset: DetectionDataset, proposals: dict,
                   det_cfg: DetectorConfig, protocol: str = "ilsvrc") -> float | None:
    """This member's mAP on ``dataset`` with its cached proposals (None if eval is unavailable)."""
    try:
        from eval.api import evaluate
    except ImportError:
        log.warning("eval.api is not available: skipping the validation mAP")
        return None
    from detector.dataset_run import run_detector  # late: dataset_run imports this module's users
    model.eval()
    dets: dict[int, Detections] = run_detector(dataset, [model], det_cfg, proposals=proposals)
    return float(evaluate(dataset, dets, protocol).mAP)


@dataclass
class ValidationData:
    """A validation split with its cached proposals, fixed minibatches and images."""

    dataset: DetectionDataset
    proposals: dict  # image_id -> Proposals or [P, 4] boxes
    sampler: RegionSampler
    store: ImageStore


def make_validation(dataset: DetectionDataset, proposals: dict, sampler_cfg: SamplerConfig,
                    cfg: TrainConfig) -> ValidationData | None:
    """The first ``cfg.val_images`` images of ``dataset`` (all if 0, none if -1) for validation."""
    if cfg.val_images < 0 or not dataset.images:
        return None
    if cfg.val_images > 0:
        dataset = DetectionDataset(dataset.classes, dataset.images[:cfg.val_images],
                                   dataset.class_ids, dataset.image_root)
    boxes = {k: getattr(v, "boxes", v) for k, v in proposals.items()}
    # No flips or jitter: the same minibatches every epoch make val losses comparable.
    sampler = RegionSampler(dataset, boxes, dataclasses.replace(sampler_cfg, flip=False), seed=12345)
    return ValidationData(dataset, proposals, sampler, ImageStore(dataset, cfg.cache_images))


def fit(model: RegionClassifier, optimizer: torch.optim.Optimizer, sampler: RegionSampler,
        store: ImageStore, cfg: TrainConfig, jitter: float, state: TrainState, save,
        val: ValidationData | None = None, det_cfg: DetectorConfig = DetectorConfig(),
        device="cpu") -> TrainState:
    """Train from ``state.epoch`` to ``cfg.epochs``; after each epoch validate and call ``save(state)``."""
    for _ in tqdm(range(state.epoch, cfg.epochs), desc="epochs", initial=state.epoch,
                  total=cfg.epochs, dynamic_ncols=True):
        row = {"epoch": state.epoch + 1, "lr": learning_rate(cfg, state.epoch, state.iteration)}
        row["loss"] = train_epoch(model, optimizer, sampler, store, cfg, jitter, state, device)
        if val is not None:
            row["val_loss"] = validation_loss(model, val.store, val.sampler, cfg.val_batches, device)
            row["val_map"] = validation_map(model, val.dataset, val.proposals, det_cfg)
        state.epoch += 1
        state.history.append(row)
        save(state)
        log.info("epoch %d: %s", row["epoch"], " ".join(
            f"{k}={v:.4f}" for k, v in row.items() if isinstance(v, float)))
    return state


def state_entry(state: TrainState) -> dict:
    """The checkpoint's "train_state" entry (plain data)."""
    return {"iteration": state.iteration, "history": state.history}


def resume(blob: dict, model: RegionClassifier, optimizer: torch.optim.Optimizer) -> TrainState:
    """Restore weights, optimizer and progress from a checkpoint dict (see detector.checkpoint)."""
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in blob["model"].items()})
    if blob.get("optimizer"):
        optimizer.load_state_dict(blob["optimizer"])
    entry = blob.get("train_state") or {}
    return TrainState(int(blob["epoch"]), int(entry.get("iteration", 0)), list(entry.get("history", [])))
