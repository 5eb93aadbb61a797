"""R-CNN's foreground/background minibatch sampler (docs/method.md §2.3).

Shape letters: P proposals, G ground-truth boxes, N = G + P candidate windows of an image.
Every window (the GT boxes themselves plus the cached proposals) is labelled once by its
best-overlapping GT box:

* foreground, label ``k + 1``: IoU >= ``fg_iou`` (0.5) with a GT box of class ``k``;
* background, label 0: ``bg_iou_lo <= IoU < bg_iou_hi`` (R-CNN: ``0 <= IoU < 0.5``);
* ignored, label -1: anything else (only when ``bg_iou_lo > 0`` or ``bg_iou_hi < fg_iou``).

A minibatch of 128 regions takes 32 foreground windows (uniformly over the foreground windows
of its images; fewer if there are fewer) and fills the rest with background windows, from a
group of ``images_per_batch`` consecutive images of the epoch's shuffled order. With mined hard
negatives (:mod:`detector.hard_negatives`) and ``hard_fraction`` > 0, that share of the
background slots is drawn from the images' hard windows that are background (if they have any).
The seed fixes that order, so ensemble members with different seeds see the images in different
orders.
Boxes are xyxy float32 in image pixels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch import Tensor
from core.box_ops import box_iou

from core.boxes import flip_boxes
from core.structures import DetectionDataset, ImageAnnotations
from detector.config import SamplerConfig


@dataclass
class LabelledWindows:
    """All candidate windows of one image: ``boxes [N, 4]``, ``labels [N]`` (-1/0/k+1), ``ious [N]``,
    ``hard [N]`` (True for mined hard negatives)."""

    boxes: Tensor
    labels: Tensor
    ious: Tensor
    hard: Tensor


@dataclass
class ImageSample:
    """The regions one image contributes to a minibatch (``boxes`` already flipped if ``flip``)."""

    index: int  # position in dataset.images
    flip: bool
    boxes: Tensor  # [n, 4] xyxy in the (flipped) image's pixels
    labels: Tensor  # [n] int64, 0 = background


def label_windows(proposals: np.ndarray, ann: ImageAnnotations, cfg: SamplerConfig,
                  hard: np.ndarray | None = None) -> LabelledWindows:
    """Label the GT boxes plus ``proposals`` (``[P, 4]`` xyxy) of one image (see module doc), and
    the mined hard negatives ``hard`` (``[H, 4]``) after them, marked in ``hard``."""
    keep_gt = ~np.asarray(ann.iscrowd, bool)  # COCO crowd regions are neither fg nor GT
    gt = torch.as_tensor(ann.boxes[keep_gt], dtype=torch.float32).reshape(-1, 4)
    gt_labels = torch.as_tensor(ann.labels[keep_gt], dtype=torch.int64)
    props = torch.as_tensor(np.asarray(proposals, np.float32)).reshape(-1, 4)
    if cfg.max_proposals > 0:
        props = props[:cfg.max_proposals]
    mined = torch.as_tensor(np.asarray(np.zeros((0, 4)) if hard is None else hard, np.float32)).reshape(-1, 4)
    boxes = torch.cat([gt, props, mined])
    is_hard = torch.arange(len(boxes)) >= len(gt) + len(props)
    wh = boxes[:, 2:] - boxes[:, :2]
    valid = (wh > 0).all(dim=1)  # degenerate boxes have no IoU and no pixels to warp
    boxes, is_hard = boxes[valid], is_hard[valid]
    if len(gt):
        ious, best = box_iou(boxes, gt).max(dim=1)
        fg_labels = gt_labels[best] + 1
    else:
        ious = torch.zeros(len(boxes))
        fg_labels = torch.zeros(len(boxes), dtype=torch.int64)
    labels = torch.full((len(boxes),), -1, dtype=torch.int64)
    labels[(ious >= cfg.bg_iou_lo) & (ious < cfg.bg_iou_hi)] = 0
    fg = ious >= cfg.fg_iou
    labels[fg] = fg_labels[fg]
    labels[is_hard & (labels != 0)] = -1  # a mined window serves only as a hard negative
    return LabelledWindows(boxes, labels, ious, is_hard)


def _choose(n_pool: int, n: int, gen: torch.Generator, replace: bool) -> Tensor:
    if n <= 0 or n_pool == 0:
        return torch.zeros(0, dtype=torch.int64)
    if replace and n > n_pool:
        return torch.randint(n_pool, (n,), generator=gen)
    return torch.randperm(n_pool, generator=gen)[:n]


class RegionSampler:
    """Minibatches of fg/bg windows over a training split.

    Args:
        dataset: the split (GT boxes and labels, widths for flipping).
        proposals: ``image_id -> [P, 4]`` xyxy proposals (e.g. the proposal cache's boxes).
        cfg: batch size, fg fraction, IoU thresholds, images per batch, flips.
        seed: fixes the image order, the windows drawn and the flips.
        hard: ``file_name -> [H, 4]`` mined hard negatives (:func:`detector.hard_negatives.load_negatives`).
    """

    def __init__(self, dataset: DetectionDataset, proposals: dict[int, np.ndarray],
                 cfg: SamplerConfig, seed: int = 0, hard: dict[str, np.ndarray] | None = None) -> None:
        self.dataset, self.cfg, self.seed = dataset, cfg, seed
        empty = np.zeros((0, 4), np.float32)
        hard = hard or {}
        self.windows = [label_windows(proposals.get(ann.image_id, empty), ann, cfg, hard.get(ann.file_name))
                        for ann in dataset.images]

    def __len__(self) -> int:
        """Minibatches per epoch."""
        return -(-len(self.windows) // self.cfg.images_per_batch)

    def epoch(self, epoch: int) -> Iterator[list[ImageSample]]:
        """The minibatches of one epoch (deterministic in ``seed`` and ``epoch``)."""
        gen = torch.Generator().manual_seed(self.seed * 100003 + epoch)
        order = torch.randperm(len(self.windows), generator=gen).tolist()
        step = self.cfg.images_per_batch
        for start in range(0, len(order), step):
            batch = self.sample(order[start:start + step], gen)
            if batch:
                yield batch

    def sample(self, indices: list[int], gen: torch.Generator) -> list[ImageSample]:
        """One minibatch from the images at ``indices``: fg first, then bg to ``batch_size``."""
        cfg = self.cfg
        if not indices:
            return []
        sizes = [len(self.windows[i].labels) for i in indices]
        owner = torch.repeat_interleave(torch.arange(len(indices)), torch.tensor(sizes))
        window = torch.cat([torch.arange(n) for n in sizes])
        labels = torch.cat([self.windows[i].labels for i in indices])
        hard = torch.cat([self.windows[i].hard for i in indices])
        fg = torch.nonzero(labels > 0).flatten()
        # the mined windows stay out of the ordinary pool: at hard_fraction 0 the draws are the
        # sampler's without them, and at F their share of the background is F, not more
        bg = torch.nonzero((labels == 0) & ~hard).flatten()
        fg = fg[_choose(len(fg), int(round(cfg.batch_size * cfg.fg_fraction)), gen, replace=False)]
        n_bg = cfg.batch_size - len(fg)
        hard_bg = torch.nonzero((labels == 0) & hard).flatten()
        n_hard = int(round(n_bg * cfg.hard_fraction)) if len(hard_bg) else 0
        hard_bg = hard_bg[_choose(len(hard_bg), n_hard, gen, replace=True)]
        bg = bg[_choose(len(bg), n_bg - len(hard_bg), gen, replace=True)]
        chosen = torch.cat([fg, hard_bg, bg])
        flips = (torch.rand(len(indices), generator=gen) < 0.5) & cfg.flip
        out = []
        for j, i in enumerate(indices):
            mine = chosen[owner[chosen] == j]
            if len(mine) == 0:
                continue
            w = self.windows[i]
            boxes, flip = w.boxes[window[mine]], bool(flips[j])
            if flip:
                boxes = flip_boxes(boxes, self.dataset.images[i].width)
            out.append(ImageSample(i, flip, boxes, w.labels[window[mine]]))
        return out


def take_regions(samples: list[ImageSample], share: slice) -> list[ImageSample]:
    """The regions at positions ``share`` (a step-1 slice) of a minibatch, its images' regions
    laid end to end in order; images left with no region are dropped. Under torchrun each rank
    warps one such share of every minibatch (:func:`core.distributed.block`)."""
    start, stop, _ = share.indices(sum(len(s.labels) for s in samples))
    out, offset = [], 0
    for s in samples:
        lo, hi = max(start - offset, 0), min(stop - offset, len(s.labels))
        if lo < hi:
            out.append(ImageSample(s.index, s.flip, s.boxes[lo:hi], s.labels[lo:hi]))
        offset += len(s.labels)
    return out
