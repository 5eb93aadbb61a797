"""Per-class galleries of the worst errors: the highest-scoring false positives and the missed
objects, each a crop of its image with the boxes, classes, scores and error type drawn.

Drawn with :mod:`core.draw` (the project's one look for boxes and labels). A crop is the box
with context around it (half its longer side, at least 16 px), scaled to fit a square cell
before drawing, so labels are legible whatever the object's size.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from tqdm import tqdm

from core.config import ConfigError
from core.draw import contact_sheet, draw_detections, draw_title, fit_within, save_image
from core.image import load_image
from core.structures import DetectionDataset
from eval.errors import MAIN_ERRORS, Matching
from eval.error_plots import safe_name

__all__ = ["GalleryConfig", "Crop", "false_positive_crops", "missed_crops", "render_crop", "write_galleries",
           "images_available"]

log = logging.getLogger(__name__)

GT_COLOUR = (0, 170, 0)  # the object a false positive points at, and missed objects
DET_COLOUR = (220, 20, 60)


@dataclass(frozen=True)
class GalleryConfig:
    """``gallery:`` in ``configs/analysis.yaml``."""

    per_class: int = 8  # false positives and missed objects shown per class (each)
    cell: int = 256  # crop size in the picture, pixels
    cols: int = 4

    def __post_init__(self):
        if self.per_class < 1 or self.cell < 64 or self.cols < 1:
            raise ConfigError("per_class, cell, cols: need per_class >= 1, cell >= 64, cols >= 1")


@dataclass
class Crop:
    """What one gallery cell shows: an image, up to two boxes (xyxy, image pixels) and a title."""

    image: int  # position in dataset.images
    boxes: np.ndarray  # [N, 4]
    labels: list[int]
    scores: list[float | None]
    texts: list[str]
    colours: list[tuple[int, int, int]]
    title: str


def false_positive_crops(m: Matching, gt_boxes: np.ndarray, gt_label: np.ndarray, classes: list[str],
                         c: int, n: int) -> list[Crop]:
    """The ``n`` highest-scoring false positives of class ``c``, with the object a loc/cls/dupe
    error points at (its best-overlapping object otherwise, if any)."""
    rows = np.flatnonzero((m.label == c) & (m.error >= 0) & ~m.ignored)
    rows = rows[np.lexsort((rows, -m.score[rows]))][:n]
    crops = []
    for r in rows:
        kind = MAIN_ERRORS[m.error[r]]
        boxes, labels, scores, texts, colours = [m.boxes[r]], [c], [float(m.score[r])], [kind], [DET_COLOUR]
        near = _nearest_object(m, r)
        if near >= 0:
            boxes.insert(0, gt_boxes[near])
            labels.insert(0, int(gt_label[near]))
            scores.insert(0, None)
            texts.insert(0, "truth")
            colours.insert(0, GT_COLOUR)
        title = f"{kind}: {classes[c]} {m.score[r]:.2f}"
        if kind == "cls" and near >= 0:
            title += f" on a {classes[int(gt_label[near])]}"
        crops.append(Crop(int(m.image[r]), np.array(boxes), labels, scores, texts, colours, title))
    return crops


def _nearest_object(m: Matching, row: int) -> int:
    """The object a loc/cls error points at, else the object overlapping detection ``row`` most."""
    if m.target[row] >= 0:
        return int(m.target[row])
    lo, hi = np.searchsorted(m.pairs.det, [row, row + 1])
    if hi == lo or m.pairs.iou[lo:hi].max() <= 0:
        return -1
    return int(m.pairs.gt[lo + int(np.argmax(m.pairs.iou[lo:hi]))])


def missed_crops(m: Matching, gt_image: np.ndarray, gt_boxes: np.ndarray, gt_label: np.ndarray,
                 classes: list[str], c: int, n: int) -> list[Crop]:
    """Up to ``n`` objects of class ``c`` that no detection found: TIDE's misses first, then those a
    loc/cls fix would reach; larger objects first within each."""
    unmatched = m.gt_real & ~m.gt_used & (gt_label == c)
    rows = np.flatnonzero(unmatched)
    area = (gt_boxes[rows, 2] - gt_boxes[rows, 0]) * (gt_boxes[rows, 3] - gt_boxes[rows, 1])
    rows = rows[np.lexsort((rows, -area, ~m.gt_miss[rows]))][:n]
    out = []
    for g in rows:
        kind = "miss" if m.gt_miss[g] else "missed (a loc/cls error is near)"
        out.append(Crop(int(gt_image[g]), gt_boxes[g:g + 1], [c], [None], ["missed"], [GT_COLOUR],
                        f"{kind}: {classes[c]}"))
    return out


def _context(box: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    pad = max(16.0, 0.5 * float(max(box[2] - box[0], box[3] - box[1])))
    x1, y1 = max(0, int(box[0] - pad)), max(0, int(box[1] - pad))
    x2, y2 = min(width, int(np.ceil(box[2] + pad))), min(height, int(np.ceil(box[3] + pad)))
    return x1, y1, max(x2, x1 + 1), max(y2, y1 + 1)


def render_crop(pixels: np.ndarray, crop: Crop, classes: list[str], cell: int) -> np.ndarray:
    """The crop's region of ``pixels`` (uint8 RGB), fitted into ``cell``, boxes drawn."""
    union = np.concatenate([crop.boxes[:, :2].min(axis=0), crop.boxes[:, 2:].max(axis=0)])
    x1, y1, x2, y2 = _context(union, pixels.shape[1], pixels.shape[0])
    tile, scale = fit_within(pixels[y1:y2, x1:x2], cell)
    boxes = (crop.boxes - np.array([x1, y1, x1, y1])) * scale
    extra = [t if s is None else f"{s:.2f} {t}" for s, t in zip(crop.scores, crop.texts)]
    return draw_detections(tile, boxes, crop.labels, None, class_names=classes, colors=crop.colours,
                           extra_text=extra)


def _sheet(crops: list[Crop], dataset: DetectionDataset, cfg: GalleryConfig, heading: str, load) -> np.ndarray:
    if not crops:
        blank = np.full((48, cfg.cols * (cfg.cell + 4) + 4, 3), 255, np.uint8)
        return draw_title(blank, f"{heading}: none")
    tiles = [render_crop(load(c.image), c, dataset.classes, cfg.cell) for c in crops]
    sheet = contact_sheet(tiles, [c.title for c in crops], cols=cfg.cols, cell=cfg.cell)
    band = draw_title(np.full((40, sheet.shape[1], 3), 255, np.uint8), heading)
    return np.concatenate([band, sheet], axis=0)


def _pad_width(a: np.ndarray, width: int) -> np.ndarray:
    if a.shape[1] >= width:
        return a
    return np.concatenate([a, np.full((a.shape[0], width - a.shape[1], 3), 255, np.uint8)], axis=1)


def write_galleries(m: Matching, dataset: DetectionDataset, gt_image, gt_boxes, gt_label,
                    out_dir: str, cfg: GalleryConfig = GalleryConfig()) -> dict[str, str]:
    """``gallery_<k>_<class>.png`` per class with false positives or missed objects.

    Returns ``{class name: file name}``. An image that cannot be read stops with ImageError.
    """
    @lru_cache(maxsize=32)
    def load(pos: int) -> np.ndarray:
        return load_image(os.path.join(dataset.image_root, dataset.images[pos].file_name)).pixels

    written = {}
    for c, name in enumerate(tqdm(dataset.classes, desc="galleries", unit="class")):
        fps = false_positive_crops(m, gt_boxes, gt_label, dataset.classes, c, cfg.per_class)
        missed = missed_crops(m, gt_image, gt_boxes, gt_label, dataset.classes, c, cfg.per_class)
        if not fps and not missed:
            continue
        parts = [_sheet(fps, dataset, cfg, f"{name}: highest-scoring false positives", load),
                 _sheet(missed, dataset, cfg, f"{name}: missed objects", load)]
        width = max(p.shape[1] for p in parts)
        file = f"gallery_{c:03d}_{safe_name(name)}.png"
        save_image(os.path.join(out_dir, file), np.concatenate([_pad_width(p, width) for p in parts], axis=0))
        written[name] = file
    return written


def images_available(dataset: DetectionDataset) -> bool:
    """Whether the first image of the dataset can be found under its ``image_root``."""
    if not dataset.images:
        return False
    return os.path.isfile(os.path.join(dataset.image_root, dataset.images[0].file_name))
