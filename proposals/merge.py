"""``merged`` proposals: selective search (``ss2x``) plus the top MultiBox boxes, one ranked list.

GLN §8: the superpixel size was doubled, halving selective search's proposals, and 200 MultiBox
proposals were added. The sources do not say how the two lists were ordered or deduplicated, so
both are configurable (:class:`MergeConfig`):

* ``rule="multibox_first"`` (default): the MultiBox boxes, ranked by learned objectness, then the
  selective search boxes, whose rank is only hierarchy level × random;
* ``"ss_first"``; ``"interleave"`` (alternate one of each while both last);
* ``"by_rank"``: merge by relative rank, position ``i`` of ``n`` sorts at ``(i + 0.5) / n``
  (MultiBox first on ties), so the two lists are spread evenly over the result.

Deduplication walks the merged list in rank order and drops a box whose IoU with a better-ranked
kept box is at least ``dedupe_iou``; ``dedupe_iou = 1.0`` drops exact duplicates only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from core.config import COUNT, IOU, check_ranges
from proposals.base import Proposals, Proposer

Rule = Literal["multibox_first", "ss_first", "interleave", "by_rank"]


@dataclass(frozen=True)
class MergeConfig:
    """How ``merged`` combines the two proposers."""

    rule: Rule = "multibox_first"  # order of the merged list (see the module docstring)
    multibox_top_k: int = 200  # MultiBox boxes kept (GLN: 200)
    dedupe_iou: float = 1.0  # drop a box with IoU >= this to a better-ranked one; 1.0 = exact only

    def __post_init__(self):
        check_ranges(self, multibox_top_k=COUNT, dedupe_iou=IOU)


def merge_order(n_ss: int, n_mb: int, rule: str) -> np.ndarray:
    """The merged order as a permutation ``[n_ss + n_mb]`` of the concatenation [ss list, MultiBox list]."""
    from_mb = np.concatenate([np.zeros(n_ss, bool), np.ones(n_mb, bool)])
    idx = np.concatenate([np.arange(n_ss), np.arange(n_mb)])  # position within its own list
    if rule == "multibox_first":
        key = np.where(from_mb, 0.0, 1.0)
    elif rule == "ss_first":
        key = np.where(from_mb, 1.0, 0.0)
    elif rule == "interleave":
        key = idx * 2.0 + np.where(from_mb, 0.0, 1.0)
    elif rule == "by_rank":
        key = (idx + 0.5) / np.where(from_mb, max(n_mb, 1), max(n_ss, 1))
    else:
        raise ValueError(f"unknown merge rule {rule!r}")
    # Sorted by key, then MultiBox before selective search, then by position within the list.
    return np.lexsort((idx, ~from_mb, key))


def dedupe(boxes: np.ndarray, iou: float) -> np.ndarray:
    """Indices of ``boxes`` (``[N, 4]`` xyxy, rank order) kept after deduplication, ascending."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    if iou >= 1.0:
        _, first = np.unique(boxes, axis=0, return_index=True)
        return np.sort(first)
    import torch  # only the IoU mode needs torch; keeps selective-search-only workers light
    from core.box_ops import nms

    # Greedy suppression in rank order is NMS with scores that fall with rank; nms drops IoU > t,
    # so nudge the threshold down to drop IoU >= t as documented.
    scores = torch.linspace(1.0, 0.0, len(boxes), dtype=torch.float64).float()
    keep = nms(torch.as_tensor(boxes, dtype=torch.float32), scores, float(np.nextafter(iou, -1)))
    return np.sort(keep.numpy())


def merge_proposals(ss: Proposals, mb: Proposals, cfg: MergeConfig) -> Proposals:
    """One ranked, deduplicated list from selective search and MultiBox proposals (same image)."""
    mb = mb.top(cfg.multibox_top_k)
    order = merge_order(len(ss), len(mb), cfg.rule)
    boxes = np.concatenate([ss.boxes, mb.boxes])[order]
    sources = np.concatenate([ss.sources, mb.sources])[order]
    keep = dedupe(boxes, cfg.dedupe_iou)
    return Proposals(boxes=boxes[keep], sources=sources[keep])


class MergedProposer:
    """The ``merged`` :class:`proposals.base.Proposer`: ``ss`` (usually ``ss2x``) + ``multibox``.

    Args:
        ss: the selective search proposer.
        multibox: the MultiBox proposer (any :class:`Proposer`; its list is cut to ``multibox_top_k``).
        cfg: the merge rule.
    """

    def __init__(self, ss: Proposer, multibox: Proposer, cfg: MergeConfig | None = None):
        self.ss, self.multibox, self.cfg = ss, multibox, cfg or MergeConfig()

    def __call__(self, image: np.ndarray) -> Proposals:
        """uint8 ``[H, W, 3]`` RGB → merged :class:`Proposals` in the image's pixels."""
        return merge_proposals(self.ss(image), self.multibox(image), self.cfg)
