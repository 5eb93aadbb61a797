"""Selective search (Uijlings et al., IJCV 2013) as R-CNN ran it, deterministic and fast.

Contract: :class:`SelectiveSearch` maps an image, uint8 ``[H, W, 3]`` RGB (``[H, W]`` grey and
``[H, W, 4]`` RGBA are accepted too), to :class:`proposals.base.Proposals`: ``R`` boxes, xyxy
float32 in the original image's pixels, best-ranked first, all tagged ``SOURCE_SS``.

Pipeline per image (docs/method.md §3.1-3.8):

1. cap the image size (``max_side``; boxes are mapped back to the original pixels at the end);
2. for every colour space × k: Felzenszwalb-Huttenlocher regions (σ, k, min_size = k);
3. for every similarity set: hierarchical grouping of those regions (Algorithm 1 of SS);
4. every region of every hierarchy gets ``priority × U[0, 1)`` from ``np.random.default_rng(seed)``;
   all regions sorted ascending; boxes narrower or shorter than ``min_box_size`` dropped;
   exact duplicates removed keeping the best-ranked copy.

Why not OpenCV's ``SelectiveSearchSegmentation`` (investigated, opencv-contrib 5.1, docs/method.md §3.9):

* ``process()`` returns only rectangles already sorted by ``rand() × level``; ``rand()`` is the C
  library's, so ``cv2.setRNGSeed`` does not fix it (measured: two runs after ``setRNGSeed(0)``
  give different orders), and levels are not exposed, so the order cannot be rebuilt even when
  calling it once per hierarchy.
* It fixes the FH ``min_size`` at 100 unless one passes in own graph segmentations, and it sorts
  the whole similarity list after every merge and builds colour histograms with one pass over the
  image per region, which is why it takes 0.6-1.2 s on a 500 px image.

So we use OpenCV only for the FH segmentation (``createGraphSegmentation(sigma, k, min_size)``, C++),
and do the grouping here: initial features with ``np.bincount`` and the merge loop with a heap
(lazy deletion), similarities to all neighbours of a merged region in one vectorised call. This is
faster than OpenCV's fast mode on the same image (see ``bench/proposals.py``).

Choices where the sources differ (written down per the issue):

* Ranking (``ranking="hierarchy"``, the SS code that R-CNN ran, docs/method.md §3.7): the merges of a
  hierarchy get priorities M, M-1, ..., 1 in creation order (the whole image gets 1), the initial
  regions M + 1. ``ranking="level"`` is OpenCV's rule (1 for initial regions, max(children) + 1).
* Texture: OpenCV's variant (Scharr derivatives, 4 orientations × positive/negative part = 8 maps per
  channel, each scaled to its own maximum, 10 bins: 240-d for 3 channels), but the 45°/135°
  derivatives are taken as ``(gx ± gy)/√2`` instead of rotating the image: same directions, no
  warp, and no failure on elongated images (OpenCV's rotate/crop is what breaks there).
* HSV uses OpenCV's ``COLOR_RGB2HSV_FULL`` so hue spans 0..255 like S and V (the paper scales all
  three to [0, 1]); Lab is OpenCV's 8-bit Lab.
* The 20 px filter is applied in the processed (possibly downscaled) image, as R-CNN's wrapper did
  after resizing to width 500; since we only downscale, every kept box is >= 20 px in the original.
"""
from __future__ import annotations

import heapq
import logging
from dataclasses import dataclass, replace
from typing import Literal

import cv2
import numpy as np

from core.config import AT_LEAST_ONE, COUNT, ConfigError, check_ranges
from proposals.base import SOURCE_SS, Proposals

log = logging.getLogger(__name__)

COLOUR_BINS = 25  # per channel, SS paper and OpenCV
TEXTURE_BINS = 10  # per orientation map per channel
TEXTURE_MAPS = 8  # 4 orientations × (positive, negative)
COLOUR_SPACES = ("hsv", "lab", "rgb", "rgi", "i")
SIMILARITY_LETTERS = "ctsf"  # colour, texture, size, fill


@dataclass(frozen=True)
class SelectiveSearchConfig:
    """Every parameter that shapes selective search's output. Defaults = R-CNN's fast mode (``ss``)."""

    color_spaces: tuple[str, ...] = ("hsv", "lab")  # SS fast mode / R-CNN fast_mode
    similarities: tuple[str, ...] = ("ctsf", "tsf")  # letters from "ctsf"; C+T+S+F and T+S+F
    ks: tuple[int, ...] = (50, 100)  # FH thresholds k; ss2x doubles them (docs/method.md §3.10)
    min_size: int | None = None  # FH minimum region size; None ties it to k (SS code: minSize = k)
    sigma: float = 0.8  # FH Gaussian smoothing
    min_box_size: int = 20  # drop boxes narrower or shorter than this (R-CNN minBoxWidth)
    max_side: int = 500  # downscale so the longer side is at most this; 0 = never (R-CNN: width 500)
    ranking: Literal["hierarchy", "level"] = "hierarchy"  # SS code's priority or OpenCV's level
    seed: int = 0  # seeds the random part of the ranking

    def __post_init__(self):
        for space in self.color_spaces:
            if space not in COLOUR_SPACES:
                raise ConfigError(f"color_spaces: unknown {space!r} (known: {', '.join(COLOUR_SPACES)})")
        for sim in self.similarities:
            if not sim or set(sim) - set(SIMILARITY_LETTERS):
                raise ConfigError(f"similarities: {sim!r} must be letters from {SIMILARITY_LETTERS!r}")
        if not self.ks or min(self.ks) <= 0:
            raise ConfigError(f"ks: need positive thresholds, got {list(self.ks)}")
        if not self.color_spaces or not self.similarities:
            raise ConfigError("color_spaces, similarities: need at least one each (no hierarchy to run)")
        check_ranges(self, min_size=AT_LEAST_ONE, sigma=COUNT, min_box_size=COUNT, max_side=COUNT, seed=COUNT)


PRESETS = {
    "ss": SelectiveSearchConfig(),
    # "superpixel size increased by 2×": k and with it min_size doubled (docs/method.md §3.10)
    "ss2x": SelectiveSearchConfig(ks=(100, 200)),
}


def preset(name: str, **changes) -> SelectiveSearchConfig:
    """The named preset (``"ss"`` or ``"ss2x"``) with optional field changes."""
    if name not in PRESETS:
        raise ValueError(f"unknown selective search preset {name!r} (known: {', '.join(PRESETS)})")
    return replace(PRESETS[name], **changes)


# ---------------------------------------------------------------- image preparation

def as_rgb(image: np.ndarray) -> np.ndarray:
    """``[H, W]``, ``[H, W, 1]``, ``[H, W, 3]`` or ``[H, W, 4]`` uint8 → contiguous ``[H, W, 3]`` RGB."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"selective search needs a uint8 image, got {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4) or 0 in image.shape:
        raise ValueError(f"selective search needs an H×W×3 image, got shape {image.shape}")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


def working_scale(height: int, width: int, max_side: int, min_box_size: int) -> float:
    """The downscale factor (<= 1) that caps the longer side at ``max_side``.

    Extremely elongated images would lose their short side (4000×60 at 500 px → 7 px, too short
    for any box), so the short side is never shrunk below ``2 × min_box_size``.
    """
    if max_side <= 0 or max(height, width) <= max_side:
        return 1.0
    scale = max_side / max(height, width)
    floor = 2 * min_box_size
    if min(height, width) * scale < floor:
        scale = min(1.0, floor / min(height, width))
    return scale


def to_colour_space(rgb: np.ndarray, space: str) -> np.ndarray:
    """RGB uint8 ``[H, W, 3]`` → the colour space as uint8 ``[H, W, C]`` (C = 3, or 1 for ``"i"``)."""
    if space == "hsv":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV_FULL)
    if space == "lab":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if space == "i":
        return grey[:, :, None]
    if space == "rgi":  # normalised r, g plus intensity (the paper's rgI)
        total = rgb.astype(np.float32).sum(axis=2) + 1e-6
        rg = np.clip(rgb[:, :, :2] / total[:, :, None] * 255.0, 0, 255).astype(np.uint8)
        return np.dstack([rg, grey])
    return rgb


def texture_bins(image: np.ndarray) -> np.ndarray:
    """Per-pixel texture bin of each of the 8 orientation maps per channel.

    Args:
        image: uint8 ``[H, W, C]`` in the working colour space.

    Returns:
        uint8 ``[8C, H*W]`` bins in ``0..TEXTURE_BINS-1`` (map-major, so each map is contiguous).
    """
    h, w, channels = image.shape
    out = np.empty((TEXTURE_MAPS * channels, h * w), np.uint8)
    diag = np.float32(0.5 ** 0.5)
    i = 0
    for c in range(channels):
        plane = np.ascontiguousarray(image[:, :, c])
        gx = cv2.Scharr(plane, cv2.CV_32F, 1, 0)
        gy = cv2.Scharr(plane, cv2.CV_32F, 0, 1)
        for g in (gx, gy, (gx + gy) * diag, (gx - gy) * diag):
            g = g.ravel()
            # The positive and the negative part, each scaled to its own maximum as OpenCV does,
            # then 10 equal bins: clipping g x (±10 / peak) to [0, 9] bins max(±g, 0) x 10 / peak.
            for sign, peak in ((1, float(g.max())), (-1, -float(g.min()))):
                scale = np.float32(sign * TEXTURE_BINS / peak) if peak > 0 else np.float32(0)
                out[i] = np.clip(g * scale, 0, TEXTURE_BINS - 1)
                i += 1
    return out


def colour_bins(image: np.ndarray) -> np.ndarray:
    """uint8 ``[H, W, C]`` → per-pixel colour bins ``[C, H*W]`` uint8 in ``0..24`` (25 bins over 0..255)."""
    flat = image.reshape(-1, image.shape[2]).T
    return ((flat.astype(np.uint16) * COLOUR_BINS) >> 8).astype(np.uint8)


# ---------------------------------------------------------------- initial regions

@dataclass
class Regions:
    """The FH regions of one (colour space, k), with everything the grouping needs.

    Shapes: N regions, M adjacent pairs, C channels.
    """

    sizes: np.ndarray  # [N] float64 pixel counts
    boxes: np.ndarray  # [N, 4] float64 xyxy (integer pixel edges)
    pairs: np.ndarray  # [M, 2] int64 adjacent region ids, i < j (8-neighbourhood)
    colour: np.ndarray  # [N, 25C] float32 L1-normalised colour histograms
    texture: np.ndarray  # [N, 80C] float32 L1-normalised texture histograms


def fh_labels(image: np.ndarray, k: int, min_size: int, sigma: float) -> np.ndarray:
    """Felzenszwalb-Huttenlocher segmentation: uint8 ``[H, W, C]`` → int32 labels ``[H, W]`` 0..N-1."""
    seg = cv2.ximgproc.segmentation.createGraphSegmentation(sigma=sigma, k=float(k), min_size=int(min_size))
    return seg.processImage(np.ascontiguousarray(image))


def region_boxes(labels: np.ndarray, n: int) -> np.ndarray:
    """Tight xyxy box of every label ``0..n-1``, ``[n, 4]`` float64 (every label occurs)."""
    h, w = labels.shape
    # Which rows and which columns each label occurs in; its box runs from the first to the last.
    rows, cols = np.zeros((n, h), bool), np.zeros((n, w), bool)
    rows[labels, np.arange(h)[:, None]] = True
    cols[labels, np.arange(w)] = True
    y1, y2 = rows.argmax(axis=1), h - rows[:, ::-1].argmax(axis=1)
    x1, x2 = cols.argmax(axis=1), w - cols[:, ::-1].argmax(axis=1)
    return np.stack([x1, y1, x2, y2], axis=1).astype(np.float64)


def adjacent_pairs(labels: np.ndarray) -> np.ndarray:
    """Pairs of labels touching in the 8-neighbourhood, ``[M, 2]`` int64 with i < j, sorted."""
    n = int(labels.max()) + 1
    shifts = [(labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :]),
              (labels[:-1, :-1], labels[1:, 1:]), (labels[:-1, 1:], labels[1:, :-1])]
    differ = [x != y for x, y in shifts]  # most neighbours share a region: keep only the rest
    a = np.concatenate([x[d] for (x, _), d in zip(shifts, differ)]).astype(np.int64)
    b = np.concatenate([y[d] for (_, y), d in zip(shifts, differ)]).astype(np.int64)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    codes = np.unique(lo * n + hi)
    return np.stack([codes // n, codes % n], axis=1)


def histograms(labels: np.ndarray, bins: np.ndarray, n: int, per_map: int) -> np.ndarray:
    """L1-normalised per-region histograms of per-pixel bin maps.

    Args:
        labels: int ``[H, W]`` region ids ``0..n-1``.
        bins: uint8 ``[D, H*W]``, pixel bins ``0..per_map-1`` of D maps.

    Returns:
        float32 ``[n, D * per_map]``.
    """
    d = bins.shape[0]
    base = labels.ravel().astype(np.intp) * per_map
    hist = np.empty((d, n * per_map), np.float32)
    for m in range(d):  # one map at a time: the counts stay in the cache (x1.6 over one bincount)
        hist[m] = np.bincount(base + bins[m], minlength=n * per_map)
    hist = hist.reshape(d, n, per_map).transpose(1, 0, 2).reshape(n, d * per_map)
    return hist / np.maximum(hist.sum(axis=1, keepdims=True), 1.0)


def initial_regions(image: np.ndarray, tex_bins: np.ndarray, k: int, min_size: int, sigma: float) -> tuple[np.ndarray, Regions]:
    """FH labels of ``image`` (uint8 ``[H, W, C]``) and their :class:`Regions`."""
    labels = fh_labels(image, k, min_size, sigma)
    n = int(labels.max()) + 1
    regions = Regions(
        sizes=np.bincount(labels.ravel(), minlength=n).astype(np.float64),
        boxes=region_boxes(labels, n),
        pairs=adjacent_pairs(labels),
        colour=histograms(labels, colour_bins(image), n, COLOUR_BINS),
        texture=histograms(labels, tex_bins, n, TEXTURE_BINS),
    )
    return labels, regions


# ---------------------------------------------------------------- hierarchical grouping

class _Grouping:
    """Algorithm 1 of SS on one :class:`Regions` with one similarity set (letters of ``"ctsf"``).

    Region ids ``0..N-1`` are the initial regions; merge number m creates id ``N + m``.
    Similarities are averaged over the selected measures, as OpenCV does (same order as a sum).
    """

    def __init__(self, regions: Regions, similarity: str, image_area: float):
        n = len(regions.sizes)
        cap = 2 * n - 1
        parts = [h for letter, h in (("c", regions.colour), ("t", regions.texture)) if letter in similarity]
        # Colour and texture are both histogram intersections: one intersection over the
        # concatenation is their sum.
        self.hist = np.zeros((cap, sum(p.shape[1] for p in parts)), np.float32) if parts else None
        if parts:
            self.hist[:n] = np.concatenate(parts, axis=1)
        self.sizes = np.zeros(cap)
        self.sizes[:n] = regions.sizes
        self.boxes = np.zeros((cap, 4))
        self.boxes[:n] = regions.boxes
        self.levels = np.zeros(cap, np.int64)
        self.levels[:n] = 1
        self.use_size, self.use_fill = "s" in similarity, "f" in similarity
        self.weight = 1.0 / len(similarity)
        self.area = float(image_area)
        self.n, self.count = n, n

    def similarity(self, a: np.ndarray, b: int | np.ndarray) -> np.ndarray:
        """Similarity of regions ``a`` (``[P]`` ids) to ``b`` (one id or ``[P]`` ids), ``[P]`` float64."""
        s = np.zeros(len(a))
        if self.hist is not None:
            s += np.minimum(self.hist[a], self.hist[b]).sum(axis=1)
        both = self.sizes[a] + self.sizes[b]
        # No clipping to [0, 1] needed: two disjoint regions cover at most the image, and the
        # box around both covers at least their pixels and at most the image.
        if self.use_size:
            s += 1.0 - both / self.area
        if self.use_fill:
            ba, bb = self.boxes[a], self.boxes[b]
            wh = np.maximum(ba[:, 2:], bb[..., 2:]) - np.minimum(ba[:, :2], bb[..., :2])
            s += 1.0 - (wh[:, 0] * wh[:, 1] - both) / self.area
        return s * self.weight

    def merge(self, i: int, j: int) -> int:
        """Create region ``t = i ∪ j``; return ``t``."""
        t = self.count
        self.count += 1
        si, sj = self.sizes[i], self.sizes[j]
        self.sizes[t] = si + sj
        if self.hist is not None:
            self.hist[t] = (self.hist[i] * si + self.hist[j] * sj) / (si + sj)
        self.boxes[t, :2] = np.minimum(self.boxes[i, :2], self.boxes[j, :2])
        self.boxes[t, 2:] = np.maximum(self.boxes[i, 2:], self.boxes[j, 2:])
        self.levels[t] = max(self.levels[i], self.levels[j]) + 1
        return t

    def run(self, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Merge until no adjacent pair is left.

        Returns:
            boxes ``[T, 4]`` float64 xyxy of all regions (initial, then merges in creation order),
            and their OpenCV levels ``[T]``.
        """
        neighbours: list[set[int]] = [set() for _ in range(len(self.sizes))]
        for a, b in pairs.tolist():
            neighbours[a].add(b)
            neighbours[b].add(a)
        sims = self.similarity(pairs[:, 0], pairs[:, 1]) if len(pairs) else np.zeros(0)
        # Max-heap by similarity; ties broken by ids so the order is fully deterministic.
        heap = [(-s, a, b) for s, (a, b) in zip(sims.tolist(), pairs.tolist())]
        heapq.heapify(heap)
        alive = np.ones(len(self.sizes), bool)
        while heap:
            _, i, j = heapq.heappop(heap)
            if not (alive[i] and alive[j]):
                continue  # a stale entry: one side was merged already
            t = self.merge(i, j)
            alive[i] = alive[j] = False
            around = (neighbours[i] | neighbours[j]) - {i, j}
            neighbours[t] = around
            for r in around:
                nb = neighbours[r]
                nb.discard(i)
                nb.discard(j)
                nb.add(t)
            if around:
                ids = np.fromiter(around, np.int64, len(around))
                for s, r in zip(self.similarity(ids, t).tolist(), ids.tolist()):
                    heapq.heappush(heap, (-s, r, t))
        return self.boxes[: self.count].copy(), self.levels[: self.count].copy()


def priorities(levels: np.ndarray, n_initial: int, ranking: str) -> np.ndarray:
    """The ranking priority of every region of one hierarchy (lower = better after × random).

    ``"hierarchy"`` (SS code): merges get M, M-1, ..., 1 in creation order, initial regions M + 1.
    ``"level"`` (OpenCV): the region's level.
    """
    if ranking == "level":
        return levels.astype(np.float64)
    merges = len(levels) - n_initial
    return np.concatenate([np.full(n_initial, merges + 1.0), np.arange(merges, 0, -1, dtype=np.float64)])


# ---------------------------------------------------------------- the proposer

def rank_and_filter(boxes: np.ndarray, prio: np.ndarray, rng: np.random.Generator, min_box_size: int) -> np.ndarray:
    """Sort by ``priority × U[0,1)`` ascending, drop small boxes, drop exact duplicates (keep first).

    Args:
        boxes: ``[T, 4]`` xyxy of all regions of all hierarchies (integer pixel edges).
        prio: ``[T]`` priorities.

    Returns:
        ``[R, 4]`` float64 xyxy in rank order.
    """
    order = np.argsort(prio * rng.random(len(prio)), kind="stable")
    boxes = boxes[order]
    wh = boxes[:, 2:] - boxes[:, :2]
    boxes = boxes[(wh >= min_box_size).all(axis=1)]
    _, first = np.unique(boxes, axis=0, return_index=True)
    return boxes[np.sort(first)]


class SelectiveSearch:
    """The selective search :class:`proposals.base.Proposer`.

    Args:
        cfg: the parameters (a preset from :data:`PRESETS` or any :class:`SelectiveSearchConfig`).
        seed: overrides ``cfg.seed`` when given.
    """

    def __init__(self, cfg: SelectiveSearchConfig | None = None, seed: int | None = None):
        cfg = cfg or SelectiveSearchConfig()
        self.cfg = cfg if seed is None else replace(cfg, seed=int(seed))

    def __call__(self, image: np.ndarray) -> Proposals:
        """uint8 ``[H, W, 3]`` RGB → ranked :class:`Proposals` in the original pixels."""
        rgb = as_rgb(image)
        h, w = rgb.shape[:2]
        scale = working_scale(h, w, self.cfg.max_side, self.cfg.min_box_size)
        if scale < 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        boxes = self.boxes(rgb)
        # Map back by the exact per-axis factors, then clip (rounding may overshoot by < 1 px).
        boxes = boxes * np.array([w / rgb.shape[1], h / rgb.shape[0]] * 2)
        boxes = np.clip(boxes, 0, [w, h, w, h]).astype(np.float32)
        return Proposals(boxes=boxes, sources=np.full(len(boxes), SOURCE_SS, np.uint8))

    def boxes(self, rgb: np.ndarray) -> np.ndarray:
        """Ranked boxes ``[R, 4]`` float64 xyxy in the pixels of ``rgb`` (uint8 ``[h, w, 3]``)."""
        cfg = self.cfg
        if min(rgb.shape[:2]) < cfg.min_box_size:
            return np.zeros((0, 4))  # no box could pass the size filter
        all_boxes, all_prio = [], []
        for space in cfg.color_spaces:
            image = to_colour_space(rgb, space)
            tex = texture_bins(image)
            for k in cfg.ks:
                min_size = k if cfg.min_size is None else cfg.min_size
                _, regions = initial_regions(image, tex, k, min_size, cfg.sigma)
                for sim in cfg.similarities:
                    boxes, levels = _Grouping(regions, sim, rgb.shape[0] * rgb.shape[1]).run(regions.pairs)
                    all_boxes.append(boxes)
                    all_prio.append(priorities(levels, len(regions.sizes), cfg.ranking))
        rng = np.random.default_rng(cfg.seed)
        return rank_and_filter(np.concatenate(all_boxes), np.concatenate(all_prio), rng, cfg.min_box_size)
