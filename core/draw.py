"""Pictures drawn for a person: boxes with labels, titles and contact sheets.

Every picture the project writes (detections, ground truth, proposals, error galleries) is drawn
here, so they share one look, as detectron2's ``Visualizer`` gives its pictures one look: a fixed
colour per class index; labels in DejaVu Sans (the font matplotlib ships, so nothing is
downloaded) on a filled box of the class colour, black or white text by the colour's luminance,
kept inside the image; font size and line width grow with the image.

Images are uint8 ``[H, W, 3]`` RGB numpy arrays. Boxes are ``[N, 4]`` xyxy in that image's
pixels, continuous (a box covers ``x1 <= x < x2``). Drawing functions return a new array and
leave their input unchanged.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from functools import lru_cache

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from core.errors import InputError
from core.io import atomic_path

Color = tuple[int, int, int]

# Sasha Trubetskoy's 20 distinct colours (without white and black), in his order of distinctness:
# the first classes get the colours easiest to tell apart.
PALETTE: tuple[Color, ...] = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
    (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128),
)
MIN_FONT = 12  # pixels; smaller text is hard to read on a photograph
BLACK, WHITE = (0, 0, 0), (255, 255, 255)


def class_color(label: int) -> Color:
    """The fixed RGB colour of class index ``label`` (the palette repeats after 20 classes)."""
    return PALETTE[int(label) % len(PALETTE)]


def text_color(background: Color) -> Color:
    """Black or white, whichever reads better on ``background`` (ITU-R BT.601 luma)."""
    r, g, b = background
    return BLACK if 0.299 * r + 0.587 * g + 0.114 * b >= 128 else WHITE


def font_size(shape: Sequence[int]) -> int:
    """Label font size in pixels for an image of ``shape`` ``(H, W, ...)``: 1/40 of the short side, >= 12."""
    return max(MIN_FONT, round(min(shape[0], shape[1]) / 40))


def line_width(shape: Sequence[int]) -> int:
    """Box outline width in pixels for an image of ``shape``: an eighth of the font size, >= 2."""
    return max(2, round(font_size(shape) / 8))


@lru_cache(maxsize=None)
def font(size: int) -> ImageFont.FreeTypeFont:
    """DejaVu Sans at ``size`` pixels, from matplotlib's package data."""
    import matplotlib  # only for the path of its bundled font

    return ImageFont.truetype(os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans.ttf"), size)


def _to_pil(image: np.ndarray) -> Image.Image:
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected a uint8 [H, W, 3] RGB image, got {array.dtype} {array.shape}")
    return Image.fromarray(np.array(array, copy=True))


def _pixel_rect(box, width: int, height: int) -> tuple[int, int, int, int] | None:
    """The inclusive pixel rectangle of a continuous xyxy box clipped to the image; None if empty."""
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        return None
    x1, x2 = (min(max(round(v), 0), width) for v in (x1, x2))
    y1, y2 = (min(max(round(v), 0), height) for v in (y1, y2))
    if x2 <= x1 or y2 <= y1:
        return None
    return x1, y1, x2 - 1, y2 - 1


def _colors(colors, count: int, labels=None) -> list[Color]:
    """One colour per box: ``colors`` may be one colour, one per box, or None (by class of ``labels``)."""
    if colors is None:
        return [class_color(k) for k in labels] if labels is not None else [PALETTE[0]] * count
    if len(colors) == 3 and all(isinstance(c, (int, np.integer)) for c in colors):
        return [tuple(int(c) for c in colors)] * count
    if len(colors) != count:
        raise ValueError(f"{len(colors)} colours for {count} boxes")
    return [tuple(int(c) for c in colour) for colour in colors]


def _outline(pen: ImageDraw.ImageDraw, boxes: np.ndarray, colors: list[Color], width: int) -> list:
    """Draw the boxes' outlines, inside each box; returns their pixel rectangles (None if not drawn)."""
    w, h = pen.im.size
    rects = [_pixel_rect(box, w, h) for box in boxes]
    for rect, colour in zip(rects, colors):
        if rect is not None:
            pen.rectangle(rect, outline=colour, width=width)
    return rects


def _label_size(text: str, size: int) -> tuple[int, int, int]:
    """Width and height in pixels of ``text``'s filled box at font ``size``, and its padding."""
    face = font(size)
    pad = max(1, size // 6)
    return math.ceil(face.getlength(text)) + 2 * pad, sum(face.getmetrics()) + 2 * pad, pad


def _place(rect, label: tuple[int, int], image: tuple[int, int], taken: list) -> tuple[int, int]:
    """Top-left of a ``label`` (w, h) for the pixel rectangle ``rect`` inside an ``image`` (w, h).

    Tries above the box's top-left corner, then just inside it, then under the box; the first
    spot that overlaps no label in ``taken`` wins (else the first spot), moved as little as
    needed to stay inside the image, and is added to ``taken``.
    """
    (tw, th), (w, h) = label, image
    x1, y1, _, y2 = rect
    spots = [(x1, y1 - th), (x1, y1), (x1, y2 + 1)] if y1 >= th else [(x1, y1), (x1, y2 + 1)]
    spots = [(max(0, min(x, w - tw)), max(0, min(y, h - th))) for x, y in spots]
    free = [(x, y) for x, y in spots
            if not any(x < ox + ow and ox < x + tw and y < oy + oh and oy < y + th for ox, oy, ow, oh in taken)]
    x, y = (free or spots)[0]
    taken.append((x, y, tw, th))
    return x, y


def _paint_label(pen: ImageDraw.ImageDraw, text: str, at: tuple[int, int], colour: Color, size: int) -> None:
    """``text`` on a filled box of ``colour`` with its top-left at ``at``."""
    tw, th, pad = _label_size(text, size)
    pen.rectangle((at[0], at[1], at[0] + tw - 1, at[1] + th - 1), fill=colour)
    pen.text((at[0] + pad, at[1] + pad), text, fill=text_color(colour), font=font(size))


def draw_boxes(image: np.ndarray, boxes, colors=None, width: int | None = None) -> np.ndarray:
    """The image with box outlines, drawn in order (later boxes on top), without labels.

    Args:
        image: uint8 ``[H, W, 3]`` RGB.
        boxes: ``[N, 4]`` xyxy pixels; parts outside the image are clipped.
        colors: one RGB colour for all, one per box, or None (the first palette colour).
        width: outline width in pixels (default :func:`line_width`).

    Returns:
        uint8 ``[H, W, 3]`` RGB (a copy).
    """
    canvas = _to_pil(image)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    pen = ImageDraw.Draw(canvas)
    _outline(pen, boxes, _colors(colors, len(boxes)), width or line_width(np.shape(image)))
    return np.asarray(canvas)


def _label_texts(labels, scores, class_names, extra_text) -> list[str]:
    texts = [class_names[int(k)] if class_names is not None else str(int(k)) for k in labels]
    if scores is not None:
        texts = [f"{t} {float(s):.2f}" for t, s in zip(texts, scores)]
    if extra_text is not None:
        texts = [f"{t} {e}" if e else t for t, e in zip(texts, extra_text)]
    return texts


def draw_detections(image: np.ndarray, boxes, labels, scores=None,
                    class_names: Sequence[str] | Mapping[int, str] | None = None,
                    colors=None, extra_text: Sequence[str] | None = None, size: int | None = None,
                    width: int | None = None) -> np.ndarray:
    """The image with labelled boxes: "<class> <score> <extra>" on a filled box above each box.

    Higher scores are drawn last, so on top; all outlines are drawn before any label, so no
    outline crosses a label. A label goes above its box, or just inside it, or under it,
    whichever first overlaps no label of a higher-scoring box, and always inside the image.

    Args:
        image: uint8 ``[H, W, 3]`` RGB.
        boxes: ``[N, 4]`` xyxy pixels; parts outside the image are clipped.
        labels: ``[N]`` class indices (into ``class_names``; they also pick the colours).
        scores: ``[N]`` or None (then no score is written and boxes are drawn in order).
        class_names: names by class index (a list, or a dict of the labels present); None writes the index.
        colors: one RGB colour for all, one per box, or None (:func:`class_color` of each label).
        extra_text: ``[N]`` strings appended to the labels (e.g. "IoU 0.43"), or None.
        size, width: font size and outline width in pixels (default :func:`font_size`, :func:`line_width`).

    Returns:
        uint8 ``[H, W, 3]`` RGB (a copy).
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    labels = np.asarray(labels).reshape(-1)
    if len(labels) != len(boxes) or (scores is not None and len(scores) != len(boxes)):
        raise ValueError(f"{len(boxes)} boxes, {len(labels)} labels, {None if scores is None else len(scores)} scores")
    canvas = _to_pil(image)
    pen = ImageDraw.Draw(canvas)
    colours = _colors(colors, len(boxes), labels)
    texts = _label_texts(labels, scores, class_names, extra_text)
    order = np.argsort(np.asarray(scores, np.float64), kind="stable") if scores is not None else np.arange(len(boxes))
    size = size or font_size(np.shape(image))
    rects = _outline(pen, boxes[order], [colours[i] for i in order], width or line_width(np.shape(image)))
    drawn = [(i, rect) for i, rect in zip(order, rects) if rect is not None]
    taken, spots = [], {}
    for i, rect in drawn[::-1]:  # the best box picks its label's spot first
        spots[i] = _place(rect, _label_size(texts[i], size)[:2], canvas.size, taken)
    for i, _ in drawn:  # and its label is painted last, on top
        _paint_label(pen, texts[i], spots[i], colours[i], size)
    return np.asarray(canvas)


def draw_title(image: np.ndarray, text: str, size: int | None = None) -> np.ndarray:
    """The image with ``text`` in white on a black box at its top-left corner (a copy)."""
    canvas = _to_pil(image)
    _paint_label(ImageDraw.Draw(canvas), text, (0, 0), BLACK, size or font_size(np.shape(image)))
    return np.asarray(canvas)


def fit_within(image: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    """``image`` scaled so its longer side is ``size`` pixels, and the scale (multiply boxes by it)."""
    scale = size / max(image.shape[:2])
    shape = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, shape, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR), scale


def _fit_text(text: str, face: ImageFont.FreeTypeFont, room: float) -> str:
    """``text``, cut with an ellipsis if wider than ``room`` pixels."""
    if face.getlength(text) <= room:
        return text
    while text and face.getlength(text + "…") > room:
        text = text[:-1]
    return text + "…"


def contact_sheet(images: Sequence[np.ndarray], titles: Sequence[str] | None = None, cols: int = 4,
                  cell: int = 320, gap: int = 4) -> np.ndarray:
    """Images in a grid on white, each fitted into a ``cell`` x ``cell`` square, a title line under each.

    Draw labels on images already fitted to the cell (:func:`fit_within`) so they stay readable;
    images of another size are scaled here.

    Args:
        images: uint8 ``[H, W, 3]`` RGB, any sizes; at least one.
        titles: one line per image, or None for no title lines.
        cols: images per row (fewer if there are fewer images).

    Returns:
        uint8 ``[rows * (cell + title + gap) + gap, cols * (cell + gap) + gap, 3]`` RGB.
    """
    if not len(images):
        raise ValueError("contact_sheet: no images")
    cols = max(1, min(cols, len(images)))
    size = font_size((cell, cell))
    face = font(size)
    band = 0 if titles is None else sum(face.getmetrics()) + size // 2
    step_x, step_y = cell + gap, cell + band + gap
    sheet = Image.new("RGB", (cols * step_x + gap, math.ceil(len(images) / cols) * step_y + gap), WHITE)
    pen = ImageDraw.Draw(sheet)
    for i, image in enumerate(images):
        x, y = gap + (i % cols) * step_x, gap + (i // cols) * step_y
        tile = image if max(image.shape[:2]) == cell else fit_within(image, cell)[0]
        sheet.paste(_to_pil(tile), (x, y))
        if titles is not None:
            # under the image itself, not the cell's bottom: a wide image leaves the cell's foot empty
            pen.text((x, y + tile.shape[0] + size // 4), _fit_text(titles[i], face, cell), fill=BLACK, font=face)
    return np.asarray(sheet)


def save_image(path, image: np.ndarray, colors: int | None = None) -> None:
    """Write uint8 RGB ``[H, W, 3]`` atomically, in the format its extension names (.png, .jpg, ...).

    ``colors`` quantises a PNG to that many colours (median cut) for a small file, e.g. a picture
    in the README. An extension PIL does not know raises :class:`core.errors.InputError`.
    """
    picture = _to_pil(image)
    extension = os.path.splitext(os.fspath(path))[1].lower()
    if extension not in Image.registered_extensions():
        raise InputError(f"{path}: unknown image file extension {extension!r} (use .png)")
    png = extension == ".png"
    if colors and png:
        picture = picture.quantize(colors, method=Image.Quantize.MEDIANCUT)
    with atomic_path(path) as tmp:  # the temporary file keeps the extension, which names the format
        picture.save(tmp, optimize=bool(colors and png))
