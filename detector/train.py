"""Training one region classifier (one ensemble member) on fg/bg minibatches, on core.engine.

Shape letters: B regions in a minibatch (128), S the warped size, K classes.
Loop per epoch: the sampler's minibatches → warp each image's regions (with flips and crop
jitter) → ``[B, 3, S, S]`` → (K+1)-way softmax loss + 0.3 × each auxiliary loss (GLN) → SGD
with momentum. After every epoch: validation loss on fixed val minibatches, validation mAP
(ILSVRC rules) of this member alone on cached val proposals, and an atomic checkpoint. All
randomness of epoch ``e`` derives from ``(seed, e)`` (:func:`core.engine.epoch_seed`), so a
resumed run equals an uninterrupted one.

Under torchrun every rank draws the same minibatches and warps a contiguous block of each one's
regions (:func:`core.distributed.block`; its crop jitter is drawn for the whole minibatch first);
the network runs under DistributedDataParallel with synchronised BatchNorm and dropout masks cut
from the whole minibatch's (:class:`core.distributed.BlockDropout`), and each rank's loss is its
regions' summed loss over the minibatch's region count times the ranks, so DDP's average
gradient is the minibatch's: the losses equal one process's within float tolerance. Validation
runs on rank 0 (:func:`core.engine.fit`).
"""
from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from core.distributed import (World, block, ddp_model, gather_rows, global_minibatch, mean_over_ranks, ranks,
                              sum_over_ranks)
from core.engine import Recipe, TrainState, epoch_generator, train_one_epoch
from core.engine import fit as run_engine
from core.engine import resume as engine_resume
from core.errors import InputError
from core.image import load_image
from core.structures import DetectionDataset, Detections
from detector.classifier import RegionClassifier, autocast_dtype
from detector.config import DetectorConfig, SamplerConfig, TrainConfig
from detector.sampler import ImageSample, RegionSampler, take_regions
from detector.warp import jitter_boxes

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
               gen: torch.Generator | None, device="cpu", share: slice = slice(None)) -> tuple[Tensor, Tensor]:
    """Warp a minibatch, or only its regions at positions ``share`` (one rank's block, see
    :func:`detector.sampler.take_regions`): (crops ``[b, 3, S, S]``, labels ``[b]``) on ``device``.

    The crop jitter is drawn for every region of the minibatch, in order, before the share is
    taken, so a region's crop does not depend on which rank warps it.
    """
    jittered = [dataclasses.replace(s, boxes=jitter_boxes(s.boxes, jitter, gen)) for s in samples]
    crops, labels = [], []
    for s in take_regions(jittered, share):
        pixels = store.get(s.index)
        if s.flip:
            pixels = pixels[:, ::-1]
        image = model.prepare_image(pixels, device)
        crops.append(model.warp(image, s.boxes.to(device)))
        labels.append(s.labels)
    if not crops:  # a rank's share of a minibatch with fewer regions than ranks
        size = model.cfg.input_size
        return torch.zeros((0, 3, size, size), device=device), torch.zeros(0, dtype=torch.int64, device=device)
    return torch.cat(crops), torch.cat(labels).to(device)


def region_loss(outputs, labels: Tensor, aux_weight: float, per: float | None = None,
                keep: Tensor | None = None) -> Tensor:
    """Softmax loss of the main head plus ``aux_weight`` × each auxiliary head's (GLN): each the
    mean over the regions, or with ``per`` their sum divided by ``per``. With ``keep`` (a row
    mask, :func:`hardest_background`) only the kept rows count."""
    def loss(logits: Tensor) -> Tensor:
        if keep is not None:
            rows = F.cross_entropy(logits, labels, reduction="none")[keep]
            return rows.sum() / (per if per is not None else max(len(rows), 1))
        if per is None:
            return F.cross_entropy(logits, labels)
        return F.cross_entropy(logits, labels, reduction="sum") / per

    if isinstance(outputs, tuple):
        main, *aux = outputs
        return loss(main) + aux_weight * sum(loss(a) for a in aux)
    return loss(outputs)


@torch.no_grad()
def hardest_background(logits: Tensor, labels: Tensor, count: int) -> Tensor:
    """Online hard-example mining's row mask: every object row, and the ``count`` background rows
    of the whole minibatch (all ranks' rows under torchrun) whose main-head loss is highest."""
    losses = F.cross_entropy(logits.float(), labels, reduction="none")
    background = labels == 0
    pool = torch.cat([torch.as_tensor(v) for v in gather_rows(losses[background].cpu().numpy())])
    if len(pool) <= count:
        return torch.ones_like(background)
    return ~background | (losses >= pool.topk(count).values[-1].to(losses.device))


def learning_rate(cfg: TrainConfig, epoch: int, iteration: int) -> float:
    """Step schedule (×``lr_gamma`` after each epoch in ``lr_steps``) with a linear warm-up."""
    lr = cfg.lr * cfg.lr_gamma ** sum(epoch >= s for s in cfg.lr_steps)
    if iteration < cfg.warmup_iters:
        lr *= 0.1 + 0.9 * iteration / cfg.warmup_iters
    return lr


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, crops: Tensor,
               labels: Tensor, aux_weight: float = 0.3, total: int | None = None, ohem_bg: int = 0,
               dtype: torch.dtype | None = None) -> float:
    """One SGD step on a minibatch ``[B, 3, S, S]``; returns the loss.

    Under torchrun ``model`` is the classifier in DistributedDataParallel, ``crops`` this rank's
    share of a minibatch of ``total`` regions: the rank's loss is its regions' summed loss over
    ``total / ranks``, so DDP's mean of the ranks' gradients is the gradient of the minibatch's
    mean loss, which is returned on every rank. With ``ohem_bg`` > 0 only the objects and the
    ``ohem_bg`` hardest background regions count (:func:`hardest_background`). With ``dtype``
    (``torch.bfloat16``) the forward runs under autocast; the weights stay float32. The model and
    crops are put in channels-last layout (NHWC), in which CPU convolutions run faster; the
    weights keep their values and checkpoints store the default layout.
    """
    model.train()
    model.to(memory_format=torch.channels_last)
    crops = crops.contiguous(memory_format=torch.channels_last)
    with torch.autocast(crops.device.type, dtype=dtype, enabled=dtype is not None):
        if total is None:
            outputs = model(crops)
        else:
            with global_minibatch(total):  # dropout masks: this rank's rows of the minibatch's
                outputs = model(crops)
    keep = None
    if ohem_bg:
        keep = hardest_background(outputs[0] if isinstance(outputs, tuple) else outputs, labels, ohem_bg)
        if total is not None:
            total = int(sum_over_ranks(float(keep.sum())))
    loss = region_loss(outputs, labels, aux_weight, None if total is None else total / ranks(), keep)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item() if total is None else mean_over_ranks({"loss": loss.item()})["loss"]


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


def member_recipe(model: RegionClassifier, optimizer: torch.optim.Optimizer, sampler: RegionSampler,
                  store: ImageStore, cfg: TrainConfig, jitter: float, save=lambda state: None,
                  evaluate=None, device="cpu", world: World = World(), net: torch.nn.Module | None = None) -> Recipe:
    """The engine's :class:`core.engine.Recipe` for one member.

    Epoch ``e``'s minibatches come from ``sampler.epoch(e)`` and its crop jitter from the
    generator seeded ``epoch_seed(seed, e, 7)``; the learning rate follows :func:`learning_rate`.
    In a world of several ranks each warps its block of every minibatch's regions and steps
    ``net``, the model in DistributedDataParallel (:func:`core.distributed.ddp_model`).
    """
    def batches(state: TrainState):
        gen = epoch_generator(cfg.seed, state.epoch, 7)  # crop jitter
        for samples in sampler.epoch(state.epoch):
            total = sum(len(s.labels) for s in samples)
            crops, labels = make_batch(model, store, samples, jitter, gen, device, block(total, world))
            yield crops, labels, total if world.size > 1 else None

    def step(batch, state: TrainState) -> dict[str, float]:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(cfg, state.epoch, state.iteration)
        return {"loss": train_step(net or model, optimizer, *batch[:2], cfg.aux_weight, batch[2], cfg.ohem_bg,
                                   autocast_dtype(cfg.dtype))}

    return Recipe(cfg.epochs, batches, step, save, evaluate, seed=cfg.seed, steps_per_epoch=len(sampler),
                  name="member")


def train_epoch(model: RegionClassifier, optimizer: torch.optim.Optimizer, sampler: RegionSampler,
                store: ImageStore, cfg: TrainConfig, jitter: float, state: TrainState,
                device="cpu") -> float:
    """One pass over the training images (epoch ``state.epoch``); returns the mean loss."""
    means, _ = train_one_epoch(member_recipe(model, optimizer, sampler, store, cfg, jitter, device=device), state)
    return means.get("loss", float("nan"))


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
        device="cpu", world: World = World()) -> TrainState:
    """Train from ``state.epoch`` to ``cfg.epochs``; after each epoch validate and call ``save(state)``.

    Under torchrun (``world`` of several ranks, process group joined) ``model`` trains in
    DistributedDataParallel, its BatchNorm layers synchronised (converted in place); validation
    and ``save`` run on rank 0.
    """
    def evaluate(state: TrainState) -> dict:
        row = {"lr": learning_rate(cfg, state.epoch, state.iteration)}
        if val is not None:
            row["val_loss"] = validation_loss(model, val.store, val.sampler, cfg.val_batches, device)
            row["val_map"] = validation_map(model, val.dataset, val.proposals, det_cfg)
        return row

    # channels-last before DDP: its gradient buckets follow the parameters' layout when wrapped
    net = ddp_model(model.to(memory_format=torch.channels_last), world, device)
    return run_engine(member_recipe(model, optimizer, sampler, store, cfg, jitter, save, evaluate, device,
                                    world, net), state)


# What a resumed member may change: where its data and validation are, how far it trains, and
# whether box regressors are fitted (after the last epoch; they do not touch the network).
RESUMABLE = ("data", "detector", "train.epochs", "train.val_images", "train.bbox_regression")


def resume(path, model: RegionClassifier, optimizer: torch.optim.Optimizer, config: dict) -> TrainState:
    """Continue a member from its checkpoint; the recipe in ``config`` must be the stored one."""
    from detector.checkpoint import KIND, upgrade  # late: detector.checkpoint imports the classifier

    state, _ = engine_resume(path, KIND, model, optimizer, config, RESUMABLE, upgrade)
    return state
