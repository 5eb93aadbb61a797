"""Training MultiBox (proposals.multibox's network) on core.engine: matching, loss, the epoch loop.

Shape letters: B images, K priors, M ground-truth boxes of one image. Boxes are xyxy normalised
to the image (0..1 on each axis), as inside the network.

* Matching (:func:`match_priors`): each ground-truth box to its best prior (MultiBox) plus every
  prior with IoU ≥ ``match_iou`` to its best box (SSD's addition; 1.01 disables it).
* Loss (:func:`multibox_loss`): ``α · Σ_matched smooth-L1(offsets) / P + Σ_all BCE(logits) / P``
  with P the number of matched priors in the batch (MB1's F = α·F_match + F_conf, normalised per
  match as SSD does); offsets as :data:`proposals.multibox.CODER` encodes them.
* Loop (:func:`multibox_recipe`): AdamW, cosine decay of the rate per epoch, images in an order
  and with flips drawn from ``(seed, epoch)``, so a resumed run equals an uninterrupted one.
* Under torchrun each rank takes a contiguous block of every batch's images, the network runs
  in DistributedDataParallel with synchronised BatchNorm, and P is the whole batch's count
  (all-reduced), each rank's loss scaled by the ranks so DDP's mean gradient is the batch's.
  Every rank holds the whole split in memory (:func:`load_split`).
"""
from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from core.box_ops import box_iou
from tqdm import tqdm

from core.config import AT_LEAST_ONE, COUNT, POSITIVE, check_ranges
from core.distributed import World, block, ddp_model, global_minibatch, mean_over_ranks, ranks, sum_over_ranks
from core.engine import Recipe, TrainState, epoch_generator
from core.engine import resume as engine_resume
from core.image import load_image
from nets.inception import normalize
from proposals.multibox import CODER, KIND, MultiBoxConfig, MultiBoxNet, resize_image, upgrade

# What a resumed run may change: where its data are, inference settings that do not shape
# training, how far it trains and how much of val it scores.
RESUMABLE = ("data", "multibox.nms_iou", "multibox.top_k", "train.epochs", "train.val_images")


@dataclass(frozen=True)
class MultiBoxTrainConfig:
    """Optimisation of :class:`~proposals.multibox.MultiBoxNet` (tools/train_multibox.py's "train" section)."""

    epochs: int = 12  # from the pretrained trunk (tools/pretrain.py --pretrained): val recall is flat after 12 (README)
    batch_size: int = 32
    lr: float = 0.003  # AdamW peak, cosine decay per epoch (1e-3 learned too slowly in 20 epochs)
    weight_decay: float = 0.0001
    flip: bool = True  # random horizontal flips
    seed: int = 0  # network init, batch order and flips
    max_images: int = 0  # 0 = the whole train split (a cap helps quick sweeps)
    val_images: int = 0  # 0 = the whole val split for the per-epoch recall

    def __post_init__(self):
        check_ranges(self, epochs=AT_LEAST_ONE, batch_size=AT_LEAST_ONE, lr=POSITIVE, weight_decay=COUNT,
                     seed=COUNT, max_images=COUNT, val_images=COUNT)


def match_priors(gt: Tensor, priors: Tensor, match_iou: float = 0.5) -> Tensor:
    """Assign ground-truth boxes to priors.

    Each GT box takes its best prior (ties: the lowest prior index); every other prior whose best
    IoU with any GT is ≥ ``match_iou`` takes that GT. When two GT boxes share a best prior, the
    later box keeps it (SSD's rule).

    Args:
        gt: ``[M, 4]`` xyxy normalised.
        priors: ``[K, 4]`` xyxy normalised.

    Returns:
        ``[K]`` int64: the matched GT index per prior, −1 for unmatched.
    """
    matched = torch.full((len(priors),), -1, dtype=torch.int64, device=priors.device)
    if len(gt) == 0:
        return matched
    iou = box_iou(gt, priors)  # [M, K]
    best_iou, best_gt = iou.max(dim=0)
    matched = torch.where(best_iou >= match_iou, best_gt, matched)
    for j, k in enumerate(iou.argmax(dim=1).tolist()):
        matched[k] = j
    return matched


def multibox_loss(offsets: Tensor, logits: Tensor, targets: list[Tensor], priors: Tensor,
                  alpha: float = 1.0, match_iou: float = 0.5,
                  loc_loss: str = "smooth_l1") -> tuple[Tensor, dict[str, float]]:
    """``α · loc + conf`` for a batch (see the module docstring).

    Args:
        offsets: ``[B, K, 4]`` predicted offsets.
        logits: ``[B, K]`` objectness logits.
        targets: B tensors ``[M_b, 4]`` of xyxy normalised GT boxes (may be empty).
        priors: ``[K, 4]`` xyxy normalised.
        alpha, match_iou, loc_loss: as :class:`MultiBoxConfig`.

    Returns:
        The scalar loss and its parts ``{"loc", "conf", "matched"}`` as floats. Under torchrun
        (``targets`` one rank's share of the batch) P and "matched" count the whole batch and
        the loss and its parts are this rank's sums over P / ranks, whose mean over the ranks is
        the batch's.
    """
    matched = torch.stack([match_priors(t.to(priors.device), priors, match_iou) for t in targets])
    positive = matched >= 0  # [B, K]
    total_pos = int(sum_over_ranks(float(positive.sum())))
    num_pos = max(1, total_pos) / ranks()
    conf = F.binary_cross_entropy_with_logits(logits, positive.to(logits.dtype), reduction="sum")
    loc = offsets.sum() * 0.0  # keeps the graph when nothing matched
    if positive.any():
        b, k = torch.nonzero(positive, as_tuple=True)
        gt = torch.stack([targets[i][j] for i, j in zip(b.tolist(), matched[b, k].tolist())])
        target = CODER.encode(gt.to(priors.device), priors[k])
        if loc_loss == "l2":
            loc = 0.5 * ((offsets[b, k] - target) ** 2).sum()
        else:
            loc = F.smooth_l1_loss(offsets[b, k], target, beta=1.0, reduction="sum")
    total = (alpha * loc + conf) / num_pos
    return total, {"loc": float(loc.detach()) / num_pos, "conf": float(conf.detach()) / num_pos,
                   "matched": float(total_pos)}


def hflip(images: Tensor, targets: list[Tensor], flip: Tensor) -> tuple[Tensor, list[Tensor]]:
    """Mirror the images ``[B, 3, S, S]`` where ``flip [B]`` is True, with their normalised boxes."""
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    out = []
    for t, f in zip(targets, flip.tolist()):
        out.append(torch.stack([1 - t[:, 2], t[:, 1], 1 - t[:, 0], t[:, 3]], 1) if f and len(t) else t)
    return images, out


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, images: Tensor,
               targets: list[Tensor], priors: Tensor, cfg: MultiBoxConfig, total: int | None = None) -> dict[str, float]:
    """One optimisation step on uint8 images ``[B, 3, S, S]`` with normalised GT boxes; returns the loss parts.

    Under torchrun ``model`` is the network in DistributedDataParallel and the batch this rank's
    block of a batch of ``total`` images; the parts returned are the whole batch's, on every
    rank. Model and batch run in channels-last layout (NHWC), in which CPU convolutions are faster.
    """
    device = priors.device
    model.train()
    model.to(memory_format=torch.channels_last)
    with global_minibatch(total) if total is not None else contextlib.nullcontext():
        offsets, logits = model(normalize(images.to(device)).contiguous(memory_format=torch.channels_last))
    loss, parts = multibox_loss(offsets, logits, [t.to(device) for t in targets], priors,
                                cfg.alpha, cfg.match_iou, cfg.loc_loss)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    out = {"loss": float(loss.detach()), **parts}
    return {**out, **mean_over_ranks({k: out[k] for k in ("loss", "loc", "conf")})}


def load_split(dataset, size: int) -> tuple[Tensor, list[Tensor], list[tuple[int, int]]]:
    """Every image of a :class:`core.structures.DetectionDataset` resized for training.

    Returns:
        uint8 images ``[N, 3, size, size]``, N tensors ``[M, 4]`` of xyxy normalised non-crowd GT
        boxes, and the N original ``(width, height)``.
    """
    images, targets, sizes = [], [], []
    for ann in tqdm(dataset.images, desc="loading images", unit="img", leave=False):
        pixels = load_image(os.path.join(dataset.image_root, ann.file_name)).pixels
        h, w = pixels.shape[:2]
        images.append(resize_image(pixels, size))
        boxes = ann.boxes[~ann.iscrowd] / np.array([w, h, w, h], np.float32)
        targets.append(torch.from_numpy(boxes.clip(0, 1).astype(np.float32)).reshape(-1, 4))
        sizes.append((w, h))
    stacked = torch.stack(images) if images else torch.zeros((0, 3, size, size), dtype=torch.uint8)
    return stacked, targets, sizes


def learning_rate(tcfg: MultiBoxTrainConfig, epoch: int) -> float:
    """Cosine decay from ``tcfg.lr``, set per epoch (so resuming needs no scheduler state)."""
    return tcfg.lr * 0.5 * (1 + math.cos(math.pi * epoch / tcfg.epochs))


def epoch_batches(images: Tensor, targets: list[Tensor], tcfg: MultiBoxTrainConfig, epoch: int,
                  world: World = World()):
    """The (images, targets, total) batches of one epoch: an order and flips drawn from
    ``(seed, epoch)``; in a world of several ranks, this rank's block of each batch of ``total``
    images (``total`` is None in a world of one)."""
    gen = epoch_generator(tcfg.seed, epoch)
    order = torch.randperm(len(images), generator=gen)
    flips = (torch.rand(len(images), generator=gen) < 0.5) & tcfg.flip
    for start in range(0, len(order), tcfg.batch_size):
        idx = order[start:start + tcfg.batch_size]
        if len(idx) < 2:  # BatchNorm needs two samples
            continue
        total = len(idx) if world.size > 1 else None
        idx = idx[block(len(idx), world)]
        yield (*hflip(images[idx], [targets[i] for i in idx.tolist()], flips[idx]), total)


def multibox_recipe(model: MultiBoxNet, optimizer: torch.optim.Optimizer, images: Tensor,
                    targets: list[Tensor], cfg: MultiBoxConfig, tcfg: MultiBoxTrainConfig,
                    save=lambda state: None, evaluate=None, world: World = World()) -> Recipe:
    """The engine's :class:`core.engine.Recipe` for MultiBox on uint8 ``images [N, 3, S, S]``
    with their normalised GT boxes; each step's outputs are the loss parts.

    In a world of several ranks (process group joined) ``model`` trains in
    DistributedDataParallel, its BatchNorm synchronised (converted in place,
    :func:`core.distributed.ddp_model`); ``model`` itself stays usable for validation.
    """
    priors = model.priors
    # channels-last before DDP: its gradient buckets follow the parameters' layout when wrapped
    net = ddp_model(model.to(memory_format=torch.channels_last), world, str(priors.device))

    def step(batch, state: TrainState) -> dict[str, float]:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(tcfg, state.epoch)
        images, targets, total = batch
        return train_step(net, optimizer, images, targets, priors, cfg, total)

    return Recipe(tcfg.epochs, lambda state: epoch_batches(images, targets, tcfg, state.epoch, world), step, save,
                  evaluate, seed=tcfg.seed, steps_per_epoch=math.ceil(len(images) / tcfg.batch_size),
                  name="multibox")


def make_optimizer(model: MultiBoxNet, tcfg: MultiBoxTrainConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)


def resume(path, model: MultiBoxNet, optimizer: torch.optim.Optimizer, config: dict) -> TrainState:
    """Continue from a MultiBox checkpoint; the recipe in ``config`` must be the stored one."""
    state, _ = engine_resume(path, KIND, model, optimizer, config, RESUMABLE, upgrade)
    return state
