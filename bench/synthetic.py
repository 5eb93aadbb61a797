"""A synthetic detection benchmark the project generates , since nothing can be downloaded.

Each image (long side 256..512 px, short/long 0.6..1) is a background plus 0..10 objects of the
classes in :data:`CLASSES`:

* backgrounds: random crops (resized, flipped, tinted) of the photographs scikit-image ships
  offline (:data:`BACKGROUNDS`; ``coffee`` and ``chelsea`` are left out because their cup and cat
  are object classes here), or a procedural gradient; then clutter (lines, soft blobs, noise) and
  distractor shapes of no class (irregular polygons, thin ellipses, strokes, other glyphs);
* objects: geometric shapes, glyphs (``cv2.putText``) and cut-outs of real objects from
  scikit-image's data (the coffee cup, Chelsea's face, the horse silhouette), filled, outlined or
  textured (stripes, checker, noise, gradient), random colour, rotation, aspect ratio and size
  (geometric mean of the sides from 12 px to 0.85 of the short side); later objects (and a few
  late distractors) are painted over earlier ones.

Ground truth is each object's full extent (the box of its painted pixels, integer-valued xyxy,
so the ILSVRC devkit's inclusive pixels round-trip exactly); objects more than 70% occluded are
dropped. Image ``i`` of a split is drawn from its own generator seeded by ``(seed, split, i)``,
so it does not depend on how many images are generated or by how many workers.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import re
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

import cv2
import numpy as np
import skimage.data
from tqdm import tqdm

from core.config import ConfigError
from core.draw import contact_sheet, draw_detections, fit_within, save_image
from core.formats.coco import write_coco
from core.formats.ilsvrc import write_ilsvrc_devkit
from core.image import load_image
from core.io import atomic_path
from core.structures import DetectionDataset, ImageAnnotations

log = logging.getLogger(__name__)

CLASSES: tuple[str, ...] = (
    "circle", "square", "triangle", "star", "cross", "ring", "hexagon", "heart", "arrow",
    "crescent", "letter_A", "digit_7", "coffee_cup", "cat_face", "horse",
)
# Offline skimage.data photographs (no pooch download) used for backgrounds.
BACKGROUNDS: tuple[str, ...] = (
    "astronaut", "rocket", "camera", "brick", "grass", "gravel", "coins", "page", "moon",
    "hubble_deep_field", "immunohistochemistry", "retina", "text", "clock", "cell",
)
CANON = 256  # side of the canonical mask every object is drawn in before its affine warp
_GLYPHS = {"letter_A": "A", "digit_7": "7"}
_DISTRACTOR_CHARS = "x%&?#@bdkqZ"  # glyphs that are no class
_FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_TRIPLEX,
          cv2.FONT_HERSHEY_COMPLEX)
# Cut-outs: (skimage.data name, crop x0, y0, x1, y1); an inscribed ellipse is the mask.
_CUTOUTS = {"coffee_cup": ("coffee", 75, 60, 480, 392), "cat_face": ("chelsea", 30, 0, 400, 300)}
_UPRIGHT = {"letter_A", "digit_7", "coffee_cup", "cat_face", "horse"}  # small rotations only


@dataclass(frozen=True)
class SyntheticConfig:
    """Knobs of the generator (the defaults make the benchmark the README describes)."""

    min_long_side: int = 256  # image long side range, pixels
    max_long_side: int = 512
    min_aspect: float = 0.6  # smallest short/long side ratio of an image
    max_instances: int = 10  # objects per image are drawn from 0..max_instances
    min_object_size: int = 12  # smallest sqrt(w*h) of an object, pixels
    max_object_fraction: float = 0.85  # largest sqrt(w*h) as a fraction of the image's short side
    max_occluded: float = 0.7  # objects with a larger hidden fraction are dropped from the GT
    image_format: Literal["jpg", "png"] = "jpg"
    jpeg_quality: int = 95

    def __post_init__(self):
        """Range checks: ``ConfigError("key: reason")`` (core.config adds the stage name)."""
        checks = (
            ("min_long_side", self.min_long_side >= 1, ">= 1"),
            ("max_long_side", self.max_long_side >= self.min_long_side,
             f">= min_long_side ({self.min_long_side})"),
            ("min_aspect", 0 < self.min_aspect <= 1, "in (0, 1]"),
            ("min_aspect", self.min_long_side * self.min_aspect >= 1,
             f"large enough for a short side >= 1 px at min_long_side {self.min_long_side}"),
            ("max_instances", self.max_instances >= 0, ">= 0"),
            ("min_object_size", self.min_object_size >= 1, ">= 1"),
            ("max_object_fraction", 0 < self.max_object_fraction <= 1, "in (0, 1]"),
            ("max_occluded", 0 <= self.max_occluded <= 1, "in [0, 1]"),
            ("jpeg_quality", 0 <= self.jpeg_quality <= 100, "in [0, 100]"),
        )
        for key, ok, expected in checks:
            if not ok:
                raise ConfigError(f"{key}: must be {expected}, got {getattr(self, key)!r}")


@dataclass
class SyntheticImage:
    """One rendered image: ``pixels`` RGB uint8 ``[H, W, 3]``, ``boxes [N, 4]`` xyxy float32
    (integer-valued), ``labels [N]`` int64 indices into :data:`CLASSES`."""

    pixels: np.ndarray
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


# ----------------------------------------------------------------------------- canonical masks


def _fill(polys, size: int = CANON) -> np.ndarray:
    """Polygons with vertices in the unit square → anti-aliased float32 mask ``[size, size]``."""
    m = np.zeros((size, size), np.uint8)
    pts = [np.round(np.asarray(p, np.float64) * (size - 1) * 16).astype(np.int32) for p in polys]
    cv2.fillPoly(m, pts, 255, cv2.LINE_AA, shift=4)
    return m.astype(np.float32) / 255.0


def _unit(points) -> np.ndarray:
    """Scale points ``[P, 2]`` to touch every side of the unit square."""
    p = np.asarray(points, np.float64)
    lo, hi = p.min(0), p.max(0)
    return (p - lo) / np.maximum(hi - lo, 1e-9)


def _radial(radii, phase: float = -np.pi / 2) -> np.ndarray:
    t = phase + np.arange(len(radii)) * 2 * np.pi / len(radii)
    return np.stack([np.cos(t) * radii, np.sin(t) * radii], 1)


def _disc(cx: float = 0.5, cy: float = 0.5, r: float = 0.5, n: int = 96) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1)


def _shape_polys(name: str, rng: np.random.Generator) -> list:
    """Unit-square polygons of a geometric class, with its random variant parameters."""
    if name == "square":
        return [[(0, 0), (1, 0), (1, 1), (0, 1)]]
    if name == "triangle":
        return [[(rng.uniform(0.3, 0.7), 0), (1, 1), (0, 1)]]
    if name == "star":
        return [_unit(_radial(np.tile([1.0, rng.uniform(0.38, 0.5)], 5)))]
    if name == "hexagon":
        return [_unit(_radial(np.ones(6), 0.0))]
    if name == "cross":
        a, b = 0.5 - rng.uniform(0.14, 0.2), 0.5 + rng.uniform(0.14, 0.2)
        return [[(a, 0), (b, 0), (b, a), (1, a), (1, b), (b, b), (b, 1), (a, 1), (a, b), (0, b),
                 (0, a), (a, a)]]
    if name == "heart":
        t = np.linspace(0, 2 * np.pi, 120, endpoint=False)
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        return [_unit(np.stack([x, y], 1))]
    if name == "arrow":
        s, h = rng.uniform(0.25, 0.4) / 2, 1 - rng.uniform(0.35, 0.5)
        return [[(0, 0.5 - s), (h, 0.5 - s), (h, 0), (1, 0.5), (h, 1), (h, 0.5 + s), (0, 0.5 + s)]]
    raise KeyError(name)


def _shape_mask(name: str, rng: np.random.Generator) -> np.ndarray:
    """Canonical float32 mask ``[CANON, CANON]`` of a geometric class."""
    if name == "circle":
        return _fill([_disc()])
    if name == "ring":
        return np.clip(_fill([_disc()]) - _fill([_disc(r=0.5 * rng.uniform(0.45, 0.7))]), 0, 1)
    if name == "crescent":
        shift = rng.uniform(0.25, 0.45)
        return np.clip(_fill([_disc()]) - _fill([_disc(cx=0.5 + shift, r=0.5)]), 0, 1)
    return _fill(_shape_polys(name, rng))


def _resize_mask(mask: np.ndarray) -> tuple[np.ndarray, float]:
    """Crop a mask to its content, resize to ``CANON``²; return it and its natural w/h aspect."""
    ys, xs = np.nonzero(mask > 0.5)
    crop = mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    aspect = crop.shape[1] / crop.shape[0]
    return cv2.resize(crop, (CANON, CANON), interpolation=cv2.INTER_AREA), aspect


@lru_cache(maxsize=None)
def _glyph(char: str, font: int, thick: int) -> tuple[np.ndarray, float]:
    """Canonical mask of a Hershey glyph and its natural aspect (cached: fonts are few)."""
    m = np.zeros((200, 200), np.uint8)
    cv2.putText(m, char, (30, 160), font, 4.0, 255, thick, cv2.LINE_AA)
    return _resize_mask(m.astype(np.float32) / 255.0)


@lru_cache(maxsize=None)
def _horse() -> tuple[np.ndarray, float]:
    return _resize_mask((~skimage.data.horse()).astype(np.float32))  # the horse is False


@lru_cache(maxsize=None)
def _cutout(name: str) -> tuple[np.ndarray, np.ndarray, float]:
    """(mask, RGB patch, aspect) of a real object cut from a scikit-image photograph."""
    source, x0, y0, x1, y1 = _CUTOUTS[name]
    patch = getattr(skimage.data, source)()[y0:y1, x0:x1]
    rgb = cv2.resize(patch, (CANON, CANON), interpolation=cv2.INTER_AREA)
    return _fill([_disc()]), rgb, (x1 - x0) / (y1 - y0)


# ----------------------------------------------------------------------------- appearance


def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, 3).astype(np.float32)


def _grid(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Pixel coordinates projected on a random direction, ``[h, w]`` float32."""
    t = rng.uniform(0, np.pi)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return x * np.float32(np.cos(t)) + y * np.float32(np.sin(t))


def _ramp(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A linear 0..1 ramp in a random direction, ``[h, w, 1]`` float32."""
    g = _grid(h, w, rng)
    return ((g - g.min()) / max(float(g.max() - g.min()), 1.0))[..., None]


def _texture(rng: np.random.Generator, h: int, w: int, base: np.ndarray) -> np.ndarray:
    """A float32 ``[h, w, 3]`` fill: solid, stripes, checker, noise or gradient around ``base``."""
    kind = rng.choice(["solid", "solid", "stripes", "checker", "noise", "gradient"])
    other = _colour(rng)
    if kind == "solid":
        return np.broadcast_to(base, (h, w, 3))
    if kind == "stripes":
        period = rng.uniform(3, 12)
        on = (_grid(h, w, rng) / period) % 1.0 < rng.uniform(0.3, 0.7)
        return np.where(on[..., None], base, other)
    if kind == "checker":
        p = rng.uniform(3, 12)
        y, x = np.mgrid[0:h, 0:w]
        on = ((x // p + y // p) % 2).astype(bool)
        return np.where(on[..., None], base, other)
    if kind == "noise":
        small = rng.uniform(-80, 80, (max(2, h // 6), max(2, w // 6), 3)).astype(np.float32)
        return np.clip(base + cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR), 0, 255)
    g = _ramp(h, w, rng)
    return base * (1 - g) + other * g


def _contrasting(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
    """A random colour, pushed away from the mean colour ``under`` it so the object shows."""
    c = _colour(rng)
    mean = under.reshape(-1, 3).mean(0)
    if np.abs(c - mean).sum() < 120:
        c = np.where(mean > 127, mean - rng.uniform(90, 127), mean + rng.uniform(90, 127))
    return np.clip(c, 0, 255).astype(np.float32)


# ----------------------------------------------------------------------------- placement


@dataclass
class _Layer:
    """One painted thing, ready to composite: ``alpha [h, w]`` and ``rgb [h, w, 3]`` float32 at
    image offset ``(x0, y0)``."""

    alpha: np.ndarray
    rgb: np.ndarray | None
    x0: int
    y0: int


def _affine(rng, img_w: int, img_h: int, size: float, aspect: float, max_rot: float) -> np.ndarray:
    """A 2x3 map from the canonical square to a random pose fully inside the image.

    ``size`` is sqrt(w*h) of the object before rotation, ``aspect`` its w/h.
    """
    w, h = size * np.sqrt(aspect), size / np.sqrt(aspect)
    t = np.deg2rad(rng.uniform(-max_rot, max_rot))
    c, s = np.cos(t), np.sin(t)
    ext_w, ext_h = abs(c) * w + abs(s) * h, abs(s) * w + abs(c) * h
    shrink = min(1.0, 0.95 * img_w / ext_w, 0.95 * img_h / ext_h)
    w, h, ext_w, ext_h = w * shrink, h * shrink, ext_w * shrink, ext_h * shrink
    cx, cy = rng.uniform(ext_w / 2, img_w - ext_w / 2), rng.uniform(ext_h / 2, img_h - ext_h / 2)
    a = np.array([[c * w / CANON, -s * h / CANON], [s * w / CANON, c * h / CANON]])
    shift = np.array([cx, cy]) - a @ np.array([CANON / 2, CANON / 2])
    return np.concatenate([a, shift[:, None]], 1)


def _warp(canon: np.ndarray, m: np.ndarray, img_w: int, img_h: int) -> tuple[np.ndarray, int, int]:
    """Warp a canonical array by ``m`` into the image-clipped box it covers; return it and its offset."""
    corners = m[:, :2] @ np.array([[0, CANON, 0, CANON], [0, 0, CANON, CANON]]) + m[:, 2:]
    x0, y0 = (max(0, int(np.floor(v))) for v in corners.min(1))
    x1, y1 = min(img_w, int(np.ceil(corners[0].max()))), min(img_h, int(np.ceil(corners[1].max())))
    local = m.copy()
    local[:, 2] -= (x0, y0)
    out = cv2.warpAffine(canon, local, (max(1, x1 - x0), max(1, y1 - y0)), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out, x0, y0


def _object_size(rng, cfg: SyntheticConfig, img_w: int, img_h: int) -> float:
    """Log-uniform sqrt(w*h): small objects are as common as in real detection sets."""
    hi = max(cfg.min_object_size + 1.0, cfg.max_object_fraction * min(img_w, img_h))
    return float(np.exp(rng.uniform(np.log(cfg.min_object_size), np.log(hi))))


def _canonical(name: str, rng) -> tuple[np.ndarray, np.ndarray | None, float]:
    """(mask, own RGB patch or None, natural aspect) of an object of class ``name``."""
    if name in _GLYPHS:
        mask, aspect = _glyph(_GLYPHS[name], _FONTS[rng.integers(len(_FONTS))], int(rng.integers(6, 20)))
        return mask, None, aspect
    if name == "horse":
        mask, aspect = _horse()
        return (mask[:, ::-1].copy(), None, aspect) if rng.random() < 0.5 else (mask, None, aspect)
    if name in _CUTOUTS:
        return _cutout(name)
    return _shape_mask(name, rng), None, 1.0


def _outline(rng, alpha: np.ndarray) -> np.ndarray:
    """Keep a band of ``alpha``'s border, 2 px to a sixth of its size wide."""
    k = int(rng.integers(2, max(3, min(alpha.shape) // 6)))
    return np.clip(alpha - cv2.erode(alpha, np.ones((k, k), np.uint8)), 0, 1)


def _object_layer(rng, name: str, img: np.ndarray, cfg: SyntheticConfig) -> _Layer:
    """Pose, warp and colour one object of class ``name`` for ``img`` ``[H, W, 3]``."""
    img_h, img_w = img.shape[:2]
    mask, patch, aspect = _canonical(name, rng)
    jitter = 0.15 if name in _UPRIGHT or name in ("circle", "square") else 0.45
    aspect *= float(np.exp(rng.uniform(-jitter, jitter)))
    m = _affine(rng, img_w, img_h, _object_size(rng, cfg, img_w, img_h), aspect,
                20.0 if name in _UPRIGHT else 180.0)
    alpha, x0, y0 = _warp(mask, m, img_w, img_h)
    h, w = alpha.shape
    if patch is not None:  # a real object keeps its own pixels, with a random gain
        rgb, _, _ = _warp(patch.astype(np.float32), m, img_w, img_h)
        return _Layer(alpha, np.clip(rgb * rng.uniform(0.7, 1.3), 0, 255), x0, y0)
    base = _contrasting(rng, img[y0:y0 + h, x0:x0 + w])
    if min(h, w) >= 24 and rng.random() < 0.25:
        alpha = _outline(rng, alpha)
    return _Layer(alpha, _texture(rng, h, w, base), x0, y0)


def _paint(img: np.ndarray, layer: _Layer) -> np.ndarray:
    """Alpha-composite ``layer`` onto ``img`` in place; return its painted (alpha > 0.5) mask."""
    h, w = layer.alpha.shape
    roi = img[layer.y0:layer.y0 + h, layer.x0:layer.x0 + w]
    a = layer.alpha[..., None]
    roi[...] = np.clip(roi * (1 - a) + layer.rgb * a + 0.5, 0, 255).astype(np.uint8)
    return layer.alpha > 0.5


# ----------------------------------------------------------------------------- backgrounds


@lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
    """A scikit-image photograph as RGB uint8 (grayscale ones stacked)."""
    a = np.asarray(getattr(skimage.data, name)())
    a = a if a.ndim == 3 else np.repeat(a[..., None], 3, axis=2)
    return np.ascontiguousarray(a[..., :3].astype(np.uint8))


def _photo_crop(rng, w: int, h: int) -> np.ndarray:
    """A random crop of a random photograph, resized to ``w x h``, maybe flipped and tinted."""
    src = _photo(BACKGROUNDS[rng.integers(len(BACKGROUNDS))])
    sh, sw = src.shape[:2]
    scale = rng.uniform(0.3, 1.0) * min(sw / w, sh / h)
    cw, ch = max(8, int(w * scale)), max(8, int(h * scale))
    x, y = int(rng.integers(0, sw - cw + 1)), int(rng.integers(0, sh - ch + 1))
    out = cv2.resize(src[y:y + ch, x:x + cw], (w, h), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    gain = rng.uniform(0.7, 1.3, 3).astype(np.float32)
    return np.clip(out * gain, 0, 255).astype(np.uint8)


def _procedural(rng, w: int, h: int) -> np.ndarray:
    """A two-colour gradient with smooth colour noise, ``[h, w, 3]`` uint8."""
    g = _ramp(h, w, rng)
    img = _colour(rng) * (1 - g) + _colour(rng) * g
    small = rng.uniform(-60, 60, (int(rng.integers(2, 24)), int(rng.integers(2, 24)), 3)).astype(np.float32)
    return np.clip(img + cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)


def _clutter(rng, img: np.ndarray) -> None:
    """Random lines and soft blobs painted in place (no class, no occlusion bookkeeping)."""
    h, w = img.shape[:2]
    for _ in range(int(rng.integers(0, 13))):
        p, q = rng.integers(0, [w, h], 2), rng.integers(0, [w, h], 2)
        cv2.line(img, tuple(map(int, p)), tuple(map(int, q)), _colour(rng).tolist(),
                 int(rng.integers(1, 5)), cv2.LINE_AA)
    for _ in range(int(rng.integers(0, 6))):
        blob = np.zeros((h, w), np.float32)
        c = tuple(map(int, rng.integers(0, [w, h], 2)))
        axes = tuple(int(v) for v in rng.integers(4, max(5, min(w, h) // 4), 2))
        cv2.ellipse(blob, c, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
        blob = cv2.GaussianBlur(blob, (0, 0), float(rng.uniform(2, 8)))[..., None] * rng.uniform(0.3, 0.8)
        img[...] = np.clip(img * (1 - blob) + _colour(rng) * blob, 0, 255).astype(np.uint8)


def _background(rng, w: int, h: int) -> np.ndarray:
    img = _photo_crop(rng, w, h) if rng.random() < 0.8 else _procedural(rng, w, h)
    img = np.ascontiguousarray(img)
    _clutter(rng, img)
    return img


# ----------------------------------------------------------------------------- distractors


def _distractor_mask(rng) -> np.ndarray:
    """Canonical mask of a shape of no class: jagged polygon, thin ellipse, stroke or glyph."""
    kind = rng.integers(4)
    if kind == 0:  # irregular: random radii at random angles
        n = int(rng.integers(5, 11))
        t = np.sort(rng.uniform(0, 2 * np.pi, n))
        r = rng.uniform(0.3, 1.0, n)
        return _fill([_unit(np.stack([np.cos(t) * r, np.sin(t) * r], 1))])
    if kind == 1:  # w/h >= 2.5 after the pose's jitter keeps it apart from circles (<= 1.25)
        pts = _disc(n=64)
        pts[:, 1] = 0.5 + (pts[:, 1] - 0.5) * rng.uniform(0.08, 0.2)  # w/h >= 5 before jitter
        return _fill([pts])
    if kind == 2:
        m = np.zeros((CANON, CANON), np.float32)
        pts = rng.integers(0, CANON, (int(rng.integers(3, 7)), 2)).astype(np.int32)
        cv2.polylines(m, [pts], False, 1.0, int(rng.integers(6, 25)), cv2.LINE_AA)
        return m
    char = _DISTRACTOR_CHARS[rng.integers(len(_DISTRACTOR_CHARS))]
    return _glyph(char, _FONTS[rng.integers(len(_FONTS))], int(rng.integers(6, 20)))[0]


def _distractor_layer(rng, img: np.ndarray, cfg: SyntheticConfig) -> _Layer:
    img_h, img_w = img.shape[:2]
    m = _affine(rng, img_w, img_h, _object_size(rng, cfg, img_w, img_h) * 0.7,
                float(np.exp(rng.uniform(-0.7, 0.7))), 180.0)
    alpha, x0, y0 = _warp(_distractor_mask(rng), m, img_w, img_h)
    h, w = alpha.shape
    return _Layer(alpha, _texture(rng, h, w, _colour(rng)), x0, y0)


# ----------------------------------------------------------------------------- one image


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of image ``index`` of ``split``: independent of how many images are made."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(split.encode()), int(index)]))


def _image_size(rng, cfg: SyntheticConfig) -> tuple[int, int]:
    long_side = int(rng.integers(cfg.min_long_side, cfg.max_long_side + 1))
    short_side = int(round(long_side * rng.uniform(cfg.min_aspect, 1.0)))
    return (long_side, short_side) if rng.random() < 0.6 else (short_side, long_side)


def _finish(rng, img: np.ndarray) -> np.ndarray:
    """Camera-like global effects that do not move any box: blur, noise."""
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.5, 1.2)))
    if rng.random() < 0.3:
        noise = rng.normal(0, rng.uniform(2, 8), img.shape).astype(np.float32)
        img = np.clip(img + noise, 0, 255).astype(np.uint8)
    return img


def _ground_truth(masks: list, owner: np.ndarray, labels: list, max_occluded: float):
    """Full-extent boxes of the objects whose visible fraction is large enough."""
    boxes, kept = [], []
    for k, (mask, x0, y0) in enumerate(masks):
        visible = np.count_nonzero(owner[y0:y0 + mask.shape[0], x0:x0 + mask.shape[1]][mask] == k)
        painted = np.count_nonzero(mask)
        if not painted or visible < (1.0 - max_occluded) * painted:  # a 1 px object may paint nothing
            continue
        ys, xs = np.nonzero(mask)
        boxes.append([x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1])
        kept.append(labels[k])
    return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(kept, np.int64)


def render_image(rng: np.random.Generator, cfg: SyntheticConfig = SyntheticConfig()) -> SyntheticImage:
    """Render one image and its ground truth from ``rng`` (see the module docstring)."""
    w, h = _image_size(rng, cfg)
    img = _background(rng, w, h)
    for _ in range(int(rng.integers(0, 5))):
        _paint(img, _distractor_layer(rng, img, cfg))
    owner = np.full((h, w), -1, np.int32)  # index of the object whose paint is on top
    labels = [int(k) for k in rng.integers(0, len(CLASSES), int(rng.integers(0, cfg.max_instances + 1)))]
    masks = []
    for k, label in enumerate(labels):
        layer = _object_layer(rng, CLASSES[label], img, cfg)
        painted = _paint(img, layer)
        owner[layer.y0:layer.y0 + painted.shape[0], layer.x0:layer.x0 + painted.shape[1]][painted] = k
        masks.append((painted, layer.x0, layer.y0))
    for _ in range(int(rng.integers(0, 3))):  # late distractors occlude objects too
        layer = _distractor_layer(rng, img, cfg)
        painted = _paint(img, layer)
        owner[layer.y0:layer.y0 + painted.shape[0], layer.x0:layer.x0 + painted.shape[1]][painted] = -2
    boxes, kept = _ground_truth(masks, owner, labels, cfg.max_occluded)
    return SyntheticImage(_finish(rng, img), boxes, kept)


def generate_image(seed: int, index: int, split: str = "train",
                   cfg: SyntheticConfig = SyntheticConfig()) -> SyntheticImage:
    """Image ``index`` of ``split`` for ``seed``; the same arguments give the same image."""
    return render_image(image_rng(seed, split, index), cfg)


# ----------------------------------------------------------------------------- a split on disk


def _file_name(split: str, index: int, cfg: SyntheticConfig) -> str:
    return f"{split}_{index:06d}.{cfg.image_format}"


def _write_one(job: tuple) -> ImageAnnotations:
    """Render image ``index`` and write it atomically under ``image_dir`` (a worker's task)."""
    image_dir, seed, split, index, cfg = job
    image = generate_image(seed, index, split, cfg)
    name = _file_name(split, index, cfg)
    params = [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality] if cfg.image_format == "jpg" else []
    with atomic_path(os.path.join(image_dir, name)) as tmp:
        if not cv2.imwrite(tmp, np.ascontiguousarray(image.pixels[..., ::-1]), params):
            raise OSError(f"{name}: OpenCV could not write the image")
    h, w = image.pixels.shape[:2]
    # image_id = 1-based position, the same index the ILSVRC image list gives it
    return ImageAnnotations(image_id=index + 1, file_name=name, width=w, height=h,
                            boxes=image.boxes, labels=image.labels)


def _remove_stale(out_dir: str, split: str, written: list[str]) -> int:
    """Delete the files of ``split`` an earlier run with more images (or the other image format)
    left in ``images/`` and ``ilsvrc/Annotations/``; ``written`` = this run's image file names.

    Returns:
        How many files were removed. Files of other splits and other names are kept.
    """
    pattern = re.compile(rf"^{re.escape(split)}_\d{{6,}}\.(jpg|png|xml)$")
    keep = set(written) | {os.path.splitext(name)[0] + ".xml" for name in written}
    removed = 0
    for folder in (os.path.join(out_dir, "images"), os.path.join(out_dir, "ilsvrc", "Annotations")):
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            if pattern.match(name) and name not in keep:
                os.remove(os.path.join(folder, name))
                removed += 1
    return removed


def generate_split(out_dir, images: int, seed: int, split: str = "train", workers: int = 1,
                   cfg: SyntheticConfig = SyntheticConfig()) -> DetectionDataset:
    """Write ``images`` synthetic images and their ground truth under ``out_dir``.

    Writes ``images/<split>_<index:06d>.<jpg|png>``, ``annotations.json`` (COCO, category ids
    ``1..K`` in :data:`CLASSES` order) and the ILSVRC devkit layout under ``ilsvrc/``
    (``Annotations/<split>_<index>.xml``, ``image_list.txt``, ``meta_det.mat``, ``meta_det.txt``).
    Images and XMLs of ``split`` left by an earlier run into the same folder are removed.

    Returns:
        The dataset (boxes xyxy, ``image_root`` = the images folder), identical for any ``workers``.
    """
    out_dir = os.fspath(out_dir)
    image_dir = os.path.join(out_dir, "images")
    os.makedirs(image_dir, exist_ok=True)
    jobs = [(image_dir, seed, split, i, cfg) for i in range(images)]
    bar = dict(total=images, desc=f"synthetic {split}", unit="img")
    if workers > 1:
        # spawn, not fork: a caller may already run torch or OpenCV threads
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            annotations = list(tqdm(pool.map(_write_one, jobs, chunksize=8), **bar))
    else:
        annotations = [_write_one(job) for job in tqdm(jobs, **bar)]
    dataset = DetectionDataset(classes=list(CLASSES), images=annotations,
                               class_ids=list(range(1, len(CLASSES) + 1)), image_root=image_dir)
    write_coco(dataset, os.path.join(out_dir, "annotations.json"))
    write_ilsvrc_devkit(dataset, os.path.join(out_dir, "ilsvrc"))
    stale = _remove_stale(out_dir, split, [a.file_name for a in annotations])
    if stale:
        log.info("%s: removed %d stale %s files of an earlier run", out_dir, stale, split)
    n = sum(len(a.labels) for a in annotations)
    log.info("%s: %d %s images, %d objects of %d classes", out_dir, images, split, n, len(CLASSES))
    return dataset


# ----------------------------------------------------------------------------- a picture of it


def write_preview(dataset: DetectionDataset, path, count: int = 8, columns: int = 4,
                  cell: int = 320) -> None:
    """Write a contact sheet of the first ``count`` images with their GT boxes (atomically).

    Each image is shrunk to fit a ``cell`` square first, so the labels stay readable. A ``.png``
    sheet is quantised to 256 colours so it stays small enough for the README.
    """
    tiles = []
    for a in dataset.images[:count]:
        small, scale = fit_within(load_image(os.path.join(dataset.image_root, a.file_name)).pixels, cell)
        tiles.append(draw_detections(small, a.boxes * scale, a.labels, class_names=dataset.classes))
    if not tiles:
        raise ValueError("write_preview: the dataset has no images")
    sheet = contact_sheet(tiles, [a.file_name for a in dataset.images[:count]], columns, cell)
    save_image(path, sheet, colors=256)
