"""MultiBox: class-agnostic box proposals from one Inception network: model, priors, inference.

Shape letters: B images, K priors, M ground-truth boxes of one image, R proposals.
Coordinates: boxes inside the network are xyxy *normalised* to the image (0..1 on each axis);
:class:`MultiBoxProposer` returns xyxy in original-image pixels.

Data flow: image uint8 H×W×3 → resized anisotropically to ``input_size``² (as MB-code resizes to
224²) → :func:`nets.inception.normalize` → the Inception trunk's 5b map (``nets.inception``, the
same implementation as the region classifiers) → 1×1 conv → a head → per prior 4 offsets + 1
objectness logit. Head ``"fc"`` is MB1's (one FC output slot per prior); the default ``"prior"``
shares one small MLP across priors, each reading the map under its own prior box (see
:class:`MultiBoxNet`): on this CPU budget the FC head did not learn beyond its priors. Head
``"multiscale"`` (MSC-MultiBox's idea of predictors on several scales) reads each prior from the
3b, 4e or 5b map (strides 8 / 16 / 32) by its size (:func:`assign_levels`), so that small objects
are not lost inside one cell of the 5b map (numbers in ``configs/multibox.yaml``).

* Priors: k-means with distance 1 − IoU on the normalised training boxes (:func:`kmeans_priors`).
* Offsets: centre/size encoding against the prior, ``(dx, dy, dw, dh) = (10·Δcx/pw, 10·Δcy/ph,
  5·log(w/pw), 5·log(h/ph))`` (:data:`CODER`; the weights make the targets of a typical match
  about unit size).

Training (matching, loss, the loop) is in :mod:`proposals.multibox_train`:

* Matching (:func:`~proposals.multibox_train.match_priors`): each ground-truth box to its best prior (MultiBox) plus every
  prior with IoU ≥ ``match_iou`` to its best box (SSD's addition; 1.01 disables it).
* Loss (:func:`~proposals.multibox_train.multibox_loss`): ``α · Σ_matched smooth-L1(offsets) / P + Σ_all BCE(logits) / P``
  with P the number of matched priors in the batch (MB1's F = α·F_match + F_conf, normalised per
  match as SSD does).
* Inference: decode, clip to the image, NMS, the top 200 (GLN added 200 MultiBox proposals).

α, K and the NMS threshold are left open by the MultiBox papers and GLN. Chosen by quick sweeps
(numbers and commands in ``configs/multibox.yaml``): α = 1 (0.3 and 3 within noise), K = 400 (recall
at IoU 0.7 of the top 200: 0.38 / 0.48 / 0.63 for K = 100 / 200 / 400), NMS IoU 0.8 (0.5 … 0.9:
0.30 / 0.45 / 0.57 / 0.63 / 0.62).
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from core.box_ops import box_iou, nms, roi_align

from core import checkpoint as common
from core.box_coder import BoxCoder
from core.config import AT_LEAST_ONE, COUNT, IOU, POSITIVE, ConfigError, Range, build_dataclass, check_ranges
from core.errors import InputError
from nets.inception import BLOCK_STRIDES, BasicConv2d, Inception, normalize
from proposals.base import SOURCE_MULTIBOX, Proposals

log = logging.getLogger(__name__)

CODER = BoxCoder((10.0, 10.0, 5.0, 5.0))  # offsets (dx, dy, dw, dh) against the priors, see above

# The Inception maps the multiscale head can read (each inception block's output) → stride in input pixels.
LEVEL_STRIDES = BLOCK_STRIDES


@dataclass(frozen=True)
class MultiBoxConfig:
    """The MultiBox network and its inference; saved in every checkpoint."""

    width: float = 0.25  # Inception width multiplier of the trunk (1.0 = GoogLeNet)
    input_size: int = 224  # images are resized to input_size × input_size (multiscale; the prior head used 160)
    num_priors: int = 1200  # K, priors (k-means clusters) = output slots (swept 100/200/400 for the prior head)
    head: Literal["fc", "prior", "multiscale"] = "multiscale"  # see MultiBoxNet: MB1's FC slots, a shared per-prior
    #   MLP on the 5b map, or the same MLP reading each prior from a trunk level chosen by its size
    levels: tuple[str, ...] = ("3b", "4e", "5b")  # multiscale: the trunk maps read, in trunk order (LEVEL_STRIDES)
    level_cells: float = 3.0  # multiscale: a prior reads the coarsest level on which it spans ≥ this many cells
    head_channels: int = 64  # 1×1 conv on each map read, before the head
    head_grid: int = 2  # fc: the map pooled to grid²; prior: RoI grid² per prior
    hidden: int = 128  # hidden FC width (MB-code: 1536 at full size)
    dropout: float = 0.2  # before the output layer, training only
    alpha: float = 1.0  # weight of the localisation loss (swept 0.3/1/3)
    loc_loss: Literal["smooth_l1", "l2"] = "smooth_l1"  # l2 is MB1's ½‖l − g‖²
    match_iou: float = 0.5  # besides its best GT match, a prior with IoU ≥ this is positive
    nms_iou: float = 0.8  # NMS threshold at inference (swept 0.5..0.9, configs/multibox.yaml)
    top_k: int = 200  # proposals kept after NMS (GLN: 200)
    prior_seed: int = 0  # k-means initialisation seed
    kmeans_iters: int = 100  # k-means iteration cap

    def __post_init__(self):
        check_ranges(self, width=POSITIVE, input_size=Range(32), num_priors=AT_LEAST_ONE, head_channels=AT_LEAST_ONE,
                     head_grid=AT_LEAST_ONE, hidden=AT_LEAST_ONE, dropout=Range(0, 1, hi_open=True), alpha=COUNT,
                     match_iou=IOU, nms_iou=IOU, top_k=AT_LEAST_ONE, prior_seed=COUNT, kmeans_iters=AT_LEAST_ONE,
                     level_cells=POSITIVE)
        order = list(LEVEL_STRIDES)
        if (not self.levels or any(name not in LEVEL_STRIDES for name in self.levels)
                or [order.index(n) for n in self.levels] != sorted({order.index(n) for n in self.levels})):
            raise ConfigError(f"levels: {list(self.levels)} must be distinct maps of {order}, in that order")


# ---------------------------------------------------------------- priors

def kmeans_priors(boxes: Tensor, k: int, seed: int = 0, iters: int = 100) -> Tensor:
    """k-means on boxes with distance ``1 − IoU``; the cluster means are the priors.

    Args:
        boxes: ``[N, 4]`` xyxy normalised training boxes (position matters: priors are not
            translation invariant).
        k: number of clusters; ``N ≥ k`` is required.
        seed: k-means++ initialisation seed (same boxes + seed → same priors, same order).
        iters: iteration cap; stops earlier when no assignment changes.

    Returns:
        ``[k, 4]`` float32 xyxy normalised priors.
    """
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    if len(boxes) < k:
        raise ValueError(f"k-means needs at least k={k} training boxes, got {len(boxes)}")
    centres = _kmeanspp_init(boxes, k, torch.Generator().manual_seed(seed))
    assign = torch.full((len(boxes),), -1, dtype=torch.int64)
    for _ in range(iters):
        iou = box_iou(boxes, centres)
        new_assign = iou.argmax(dim=1)
        if torch.equal(new_assign, assign):
            break
        assign = new_assign
        centres = _update_centres(boxes, assign, centres, 1 - iou.gather(1, assign[:, None])[:, 0])
    return centres


def _kmeanspp_init(boxes: Tensor, k: int, gen: torch.Generator) -> Tensor:
    """k-means++ seeding with the IoU distance (each new centre drawn ∝ distance²)."""
    chosen = [int(torch.randint(len(boxes), (1,), generator=gen))]
    dist = 1 - box_iou(boxes, boxes[chosen[-1]][None])[:, 0]
    for _ in range(1, k):
        weights = dist.clamp(min=0) ** 2
        if float(weights.sum()) <= 0:  # every box coincides with a centre: take unused ones in order
            unused = [i for i in range(len(boxes)) if i not in set(chosen)]
            chosen.append(unused[0])
        else:
            chosen.append(int(torch.multinomial(weights, 1, generator=gen)))
        dist = torch.minimum(dist, 1 - box_iou(boxes, boxes[chosen[-1]][None])[:, 0])
    return boxes[chosen].clone()


def _update_centres(boxes: Tensor, assign: Tensor, centres: Tensor, dist: Tensor) -> Tensor:
    """Mean box of each cluster; an empty cluster takes the box farthest from its centre."""
    k = len(centres)
    sums = torch.zeros_like(centres).index_add_(0, assign, boxes)
    counts = torch.bincount(assign, minlength=k).to(torch.float32)
    new = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], centres)
    dist = dist.clone()
    for j in torch.nonzero(counts == 0)[:, 0].tolist():
        far = int(dist.argmax())  # first index among ties: deterministic
        new[j] = boxes[far]
        dist[far] = -1
    return new


# ---------------------------------------------------------------- network

def assign_levels(priors: Tensor, input_size: int, levels: tuple[str, ...], level_cells: float) -> Tensor:
    """Which of ``levels`` (fine to coarse) each prior is read from.

    A prior of size ``s = √(w·h)`` (normalised) spans ``s · input_size / stride`` cells of a
    level; it takes the coarsest level where that is at least ``level_cells`` (coarser maps see
    more context and are more semantic), the finest level if none is (small priors: on the
    coarse map they would fall inside one cell, and their offsets could not be told apart).

    Args:
        priors: ``[K, 4]`` xyxy normalised.

    Returns:
        ``[K]`` int64 indices into ``levels``.
    """
    size = ((priors[:, 2] - priors[:, 0]).clamp(min=0) * (priors[:, 3] - priors[:, 1]).clamp(min=0)).sqrt()
    level = torch.zeros(len(priors), dtype=torch.int64)
    for i, name in enumerate(levels):  # fine → coarse: the last level that fits wins
        level[size * input_size / LEVEL_STRIDES[name] >= level_cells] = i
    return level


def trunk_maps(trunk: Inception, x: Tensor, names: tuple[str, ...]) -> list[Tensor]:
    """Normalised images ``[B, 3, S, S]`` → the outputs of the inception blocks ``names`` (in trunk
    order), each ``[B, C_l, ⌈S/stride⌉, ⌈S/stride⌉]`` (:meth:`nets.inception.Inception.block_maps`)."""
    return trunk.block_maps(x, names)


class MultiBoxNet(nn.Module):
    """Inception trunk → 1×1 conv → a head → ``(offsets [B, K, 4], logits [B, K])``.

    Heads (``head``):
        ``"fc"``: MB1's design, the map average-pooled to ``head_grid``² → FC ``hidden`` → one
            output slot per prior (``5·K`` outputs).
        ``"prior"``: one small MLP shared by all priors; prior k sees ``roi_align`` of the map
            over its own box (dilated 1.5× for context) at ``head_grid``², the global average of
            the map, and its own coordinates. Same outputs and loss; it learned far faster on this
            CPU budget (see configs/multibox.yaml).
        ``"multiscale"``: the ``"prior"`` MLP, but each prior's RoI is pooled from one of several
            trunk maps (``levels``, each with its own 1×1 conv), the one :func:`assign_levels`
            picks for its size; the global average is the coarsest map's. In the spirit of
            MSC-MultiBox's predictors on several scales: on the 5b map alone (5×5 at 160 px) a
            small object is under one cell and its box cannot be regressed.
    """

    def __init__(self, priors: Tensor, width: float = 0.25, head: str = "prior", head_channels: int = 64,
                 head_grid: int = 2, hidden: int = 256, dropout: float = 0.2, levels: tuple[str, ...] = ("5b",),
                 input_size: int = 160, level_cells: float = 3.0) -> None:
        super().__init__()
        self.num_priors, self.head, self.head_grid = len(priors), head, head_grid
        self.register_buffer("priors", torch.as_tensor(priors, dtype=torch.float32).reshape(-1, 4).clone())
        self.trunk = Inception(0, width=width, aux_logits=False)
        self.dropout = nn.Dropout(dropout)
        if head == "multiscale":
            self._init_levels(levels, input_size, level_cells, head_channels)
        else:  # the single-map heads keep their parameter names: older checkpoints load unchanged
            self.reduce = BasicConv2d(self.trunk.feature_channels, head_channels, kernel_size=1)
        if head == "fc":
            self.fc = nn.Linear(head_channels * head_grid * head_grid, hidden)
            self.out = nn.Linear(hidden, self.num_priors * 5)
        elif head in ("prior", "multiscale"):
            self.fc = nn.Linear(head_channels * (head_grid * head_grid + 1) + 4, hidden)
            self.out = nn.Linear(hidden, 5)
        else:
            raise ValueError(f"head must be 'fc', 'prior' or 'multiscale', got {head!r}")
        # Start at the priors with objectness ~1%: the many negatives then cost little at step 0.
        nn.init.normal_(self.out.weight, std=1e-3)
        bias = self.out.bias.view(-1, 5) if head == "fc" else self.out.bias.view(1, 5)
        with torch.no_grad():
            bias[:, :4] = 0
            bias[:, 4] = -math.log(99.0)

    def _init_levels(self, levels: tuple[str, ...], input_size: int, level_cells: float, channels: int) -> None:
        """One 1×1 conv per level, and each prior's level (a function of the priors: not saved)."""
        self.levels = tuple(levels)
        self.reduces = nn.ModuleDict({name: BasicConv2d(getattr(self.trunk, f"inception{name}").out_channels,
                                                        channels, kernel_size=1) for name in self.levels})
        level = assign_levels(self.priors, input_size, self.levels, level_cells)
        order = torch.argsort(level, stable=True)  # priors grouped by level, in prior order within one
        self.register_buffer("prior_level", level, persistent=False)
        self.register_buffer("level_order", order, persistent=False)
        self.register_buffer("level_inverse", torch.argsort(order), persistent=False)

    def _rois(self) -> Tensor:
        """``[K, 4]`` the priors dilated 1.5× about their centres (context), normalised."""
        p = self.priors
        centre, half = (p[:, :2] + p[:, 2:]) / 2, (p[:, 2:] - p[:, :2]) * 0.75
        return torch.cat([centre - half, centre + half], 1)

    def _pool(self, fmap: Tensor, rois: Tensor) -> Tensor:
        """``roi_align`` of normalised ``rois [R, 4]`` on every image of ``fmap [B, C, h, w]`` → ``[B, R, C·g²]``."""
        b, c, h, w = fmap.shape
        pixels = rois * fmap.new_tensor([w, h, w, h])
        pooled = roi_align(fmap, [pixels] * b, self.head_grid, spatial_scale=1.0, sampling_ratio=2, aligned=True)
        return pooled.view(b, len(rois), c * self.head_grid ** 2)  # explicit: a level may have no priors

    def _prior_inputs(self, fmap: Tensor) -> Tensor:
        """``[B, C, h, w]`` → per-prior inputs ``[B, K, C·g² + C + 4]``."""
        b, c = fmap.shape[:2]
        glob = fmap.mean(dim=(2, 3))[:, None].expand(b, self.num_priors, c)
        return torch.cat([self._pool(fmap, self._rois()), glob, self.priors[None].expand(b, -1, -1)], dim=2)

    def _multiscale_inputs(self, maps: list[Tensor]) -> Tensor:
        """Reduced level maps (fine → coarse) → per-prior inputs ``[B, K, C·g² + C + 4]``, each
        prior's RoI pooled from its own level."""
        rois, b = self._rois()[self.level_order], len(maps[0])
        sorted_level = self.prior_level[self.level_order]
        parts = [self._pool(fmap, rois[sorted_level == i]) for i, fmap in enumerate(maps)]
        pooled = torch.cat(parts, dim=1)[:, self.level_inverse]  # back to prior order
        glob = maps[-1].mean(dim=(2, 3))[:, None].expand(b, self.num_priors, maps[-1].shape[1])
        return torch.cat([pooled, glob, self.priors[None].expand(b, -1, -1)], dim=2)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Normalised images ``[B, 3, S, S]`` → offsets ``[B, K, 4]``, objectness logits ``[B, K]``."""
        if self.head == "multiscale":
            maps = trunk_maps(self.trunk, x, self.levels)
            h = self._multiscale_inputs([self.reduces[n](m) for n, m in zip(self.levels, maps)])
        else:
            fmap = self.reduce(self.trunk.features(x))
            if self.head == "fc":
                h = torch.flatten(F.adaptive_avg_pool2d(fmap, self.head_grid), 1)
            else:
                h = self._prior_inputs(fmap)
        out = self.out(self.dropout(F.relu(self.fc(h), inplace=True))).view(len(x), self.num_priors, 5)
        return out[..., :4], out[..., 4]


def build_net(cfg: MultiBoxConfig, priors: Tensor) -> MultiBoxNet:
    """The network a :class:`MultiBoxConfig` describes, for ``priors [K, 4]`` (xyxy normalised)."""
    if len(priors) != cfg.num_priors:
        raise ValueError(f"config says {cfg.num_priors} priors, got {len(priors)}")
    return MultiBoxNet(priors, width=cfg.width, head=cfg.head, head_channels=cfg.head_channels,
                       head_grid=cfg.head_grid, hidden=cfg.hidden, dropout=cfg.dropout, levels=cfg.levels,
                       input_size=cfg.input_size, level_cells=cfg.level_cells)


# ---------------------------------------------------------------- images

def resize_image(image: np.ndarray, size: int) -> Tensor:
    """uint8 ``[H, W, 3]`` (or ``[H, W]``) RGB → uint8 ``[3, size, size]``, anisotropic bilinear."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 H×W×3 image, got {image.dtype} {image.shape}")
    # INTER_AREA when shrinking avoids aliasing on the large→128 px reduction.
    shrink = image.shape[0] > size or image.shape[1] > size
    out = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return torch.from_numpy(np.ascontiguousarray(out.reshape(size, size, 3).transpose(2, 0, 1)))


# ---------------------------------------------------------------- inference

class MultiBoxProposer:
    """The MultiBox :class:`proposals.base.Proposer`: image → the top ``cfg.top_k`` boxes after NMS.

    Args:
        model: a trained :class:`MultiBoxNet` (put in eval mode here).
        priors: ``[K, 4]`` xyxy normalised priors it was trained with.
        cfg: its :class:`MultiBoxConfig` (``nms_iou`` and ``top_k`` may be changed for inference).
        device: where the network runs.
    """

    def __init__(self, model: MultiBoxNet, priors: Tensor, cfg: MultiBoxConfig, device="cpu") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.priors = torch.as_tensor(priors, dtype=torch.float32).to(self.device)
        self.cfg = cfg

    def __call__(self, image: np.ndarray) -> Proposals:
        """uint8 ``[H, W, 3]`` RGB → :class:`Proposals` (xyxy original pixels, ranked by objectness)."""
        return self.batch([image])[0]

    @torch.no_grad()
    def scored_boxes(self, images: list[np.ndarray]) -> tuple[Tensor, Tensor]:
        """Raw network output for images: normalised boxes ``[B, K, 4]`` and objectness ``[B, K]``."""
        x = torch.stack([resize_image(im, self.cfg.input_size) for im in images])
        return self._forward(x)

    @torch.no_grad()
    def _forward(self, resized: Tensor) -> tuple[Tensor, Tensor]:
        self.model.eval()  # the trainer shares this model and switches it to train mode
        offsets, logits = self.model(normalize(resized.to(self.device)))
        return CODER.decode(offsets, self.priors).clamp(0, 1), torch.sigmoid(logits)

    def batch(self, images: list[np.ndarray]) -> list[Proposals]:
        """:meth:`__call__` for several images with one forward pass."""
        if not images:
            return []
        sizes = [(im.shape[1], im.shape[0]) for im in images]
        return self.propose_resized(torch.stack([resize_image(im, self.cfg.input_size) for im in images]), sizes)

    def propose_resized(self, resized: Tensor, sizes: list[tuple[int, int]]) -> list[Proposals]:
        """Proposals for images already made ``[B, 3, S, S]`` uint8 by :func:`resize_image`.

        ``sizes`` are the original ``(width, height)``; boxes come back in those pixels.
        """
        boxes, scores = self._forward(resized)
        return [self._select(b, s, w, h) for b, s, (w, h) in zip(boxes, scores, sizes)]

    def _select(self, boxes: Tensor, scores: Tensor, width: int, height: int) -> Proposals:
        """Normalised ``[K, 4]`` → pixels, drop empty boxes, NMS, top-k."""
        boxes = boxes * torch.tensor([width, height, width, height], dtype=boxes.dtype, device=boxes.device)
        keep = ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).nonzero()[:, 0]
        keep = keep[nms(boxes[keep], scores[keep], self.cfg.nms_iou)][: self.cfg.top_k]
        out = boxes[keep].cpu().numpy().astype(np.float32)
        return Proposals(boxes=out, sources=np.full(len(out), SOURCE_MULTIBOX, np.uint8))


# ---------------------------------------------------------------- checkpoints

KIND = "multibox"  # core.checkpoint's format "inception-rcnn/multibox"


def save_checkpoint(path, model: MultiBoxNet, cfg: MultiBoxConfig, config: dict | None = None,
                    optimizer: dict | None = None, train_state: dict | None = None, half: bool = False,
                    commit: str | None = None) -> None:
    """Write a MultiBox checkpoint atomically (core.checkpoint's format; the priors are the
    model's ``priors`` buffer).

    Args:
        cfg: the network's config, stored as the config's "multibox" section.
        config: the rest of the run's effective config (e.g. its "train" and "data" sections).
        half: store the floating-point weights as float16 (they load back into the float32
            network); the priors stay float32, since the boxes are decoded from them.
    """
    state = {k: v.half() if half and v.is_floating_point() and k != "priors" else v
             for k, v in model.state_dict().items()}
    common.save_checkpoint(path, KIND, state, {**(config or {}), "multibox": dataclasses.asdict(cfg)},
                           optimizer, train_state, commit=commit)


def upgrade(blob: dict) -> dict | None:
    """A file of the earlier MultiBox layout (``model``, ``priors``, ``config`` = the network's
    config, ``epoch``, ``optimizer``, ``train_config``, ``history``, ``commit``) in today's."""
    if "format" in blob or not {"model", "priors", "config", "epoch"} <= set(blob):
        return None
    config = {"multibox": blob["config"]}
    if isinstance(blob.get("train_config"), dict):
        config["train"] = blob["train_config"]
    # Earlier exports stored the network (its priors buffer too) in fp16 and the priors apart in
    # float32; the boxes were decoded from the float32 ones, which "decode_priors" keeps.
    return {"format": common.FORMAT_PREFIX + KIND, "config": config, "model": blob["model"],
            "optimizer": blob.get("optimizer") or None, "commit": blob.get("commit", "unknown"),
            "train_state": {"epoch": blob["epoch"], "history": blob.get("history", [])},
            "decode_priors": blob["priors"]}


def read_checkpoint(path) -> tuple[dict, MultiBoxConfig]:
    """A MultiBox checkpoint and its network config, loaded with ``weights_only=True``.

    Raises:
        InputError: the file is missing, is not a torch file, would need arbitrary unpickling,
            or is not a MultiBox checkpoint (of either layout); the message names the file.
    """
    path = os.fspath(path)
    blob = common.read_checkpoint(path, KIND, upgrade, label="MultiBox")
    try:
        cfg = build_dataclass(MultiBoxConfig, blob["config"].get("multibox"), "multibox")
    except ConfigError as err:
        raise InputError(f"{path}: not a MultiBox checkpoint ({err})") from None
    priors = blob["model"].get("priors")
    if not isinstance(priors, Tensor) or tuple(priors.shape) != (cfg.num_priors, 4):
        shape = tuple(priors.shape) if isinstance(priors, Tensor) else None
        raise InputError(f"{path}: priors have shape {shape}, expected ({cfg.num_priors}, 4)")
    return blob, cfg


def load_multibox(path, device="cpu") -> MultiBoxProposer:
    """The proposer stored in a checkpoint written by :func:`save_checkpoint` (or the earlier layout)."""
    blob, cfg = read_checkpoint(path)
    model = build_net(cfg, blob["model"]["priors"].float())
    common.load_model_state(model, blob["model"], path)
    decode_priors = blob.get("decode_priors")
    if not isinstance(decode_priors, Tensor) or decode_priors.shape != model.priors.shape:
        decode_priors = model.priors
    return MultiBoxProposer(model, decode_priors, cfg, device)
