"""Pictures of proposals: boxes coloured by source, ground truth marked covered or missed.

Images are uint8 ``[H, W, 3]`` RGB; boxes xyxy float in that image's pixels. A ground-truth box is
*covered* when some drawn proposal has IoU >= ``iou`` with it (the "coverage" of GLN §8).
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from core.boxes import box_iou, as_boxes
from core.io import atomic_path
from proposals.base import SOURCE_MULTIBOX, SOURCE_SS, Proposals

# RGB colours
SOURCE_COLOURS = {SOURCE_SS: (40, 120, 255), SOURCE_MULTIBOX: (255, 150, 0)}
COVERED, MISSED = (0, 220, 0), (255, 0, 0)


def covered(gt: np.ndarray, boxes: np.ndarray, iou: float = 0.5) -> np.ndarray:
    """Which ground-truth boxes ``[G, 4]`` have a proposal in ``boxes [R, 4]`` with IoU >= ``iou``; ``[G]`` bool."""
    if len(gt) == 0 or len(boxes) == 0:
        return np.zeros(len(gt), bool)
    return (box_iou(as_boxes(gt), as_boxes(boxes)).max(dim=1).values >= iou).numpy()


def _rect(canvas: np.ndarray, box, colour, thickness: int) -> None:
    x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    cv2.rectangle(canvas, (x1, y1), (max(x1, x2 - 1), max(y1, y2 - 1)), colour, thickness, cv2.LINE_AA)


def draw_proposals(image: np.ndarray, proposals: Proposals, top: int | None = 100,
                   gt: np.ndarray | None = None, iou: float = 0.5, title: str = "") -> np.ndarray:
    """The image with its ``top`` best proposals and the ground truth drawn on it.

    Proposals are thin lines coloured by source (blue: selective search, orange: MultiBox), the
    best-ranked drawn last so they stay visible; ground truth is thick, green when covered by the
    drawn proposals, red when missed.

    Returns:
        uint8 ``[H, W, 3]`` RGB (a copy).
    """
    canvas = np.ascontiguousarray(image.copy())
    shown = proposals.top(top)
    for box, source in zip(shown.boxes[::-1], shown.sources[::-1]):
        _rect(canvas, box, SOURCE_COLOURS.get(int(source), (255, 255, 255)), 1)
    if gt is not None and len(gt):
        hit = covered(np.asarray(gt, np.float32), shown.boxes, iou)
        for box, ok in zip(np.asarray(gt, np.float32), hit):
            _rect(canvas, box, COVERED if ok else MISSED, 2)
        title = f"{title}  covered {int(hit.sum())}/{len(hit)}".strip()
    if title:
        cv2.putText(canvas, title, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(canvas, title, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return canvas


def contact_sheet(tiles: list[np.ndarray], cols: int = 4, tile: int = 320) -> np.ndarray:
    """Tiles (uint8 RGB, any sizes) fitted into ``tile × tile`` cells of a grid, ``cols`` per row."""
    if not tiles:
        return np.full((tile, tile, 3), 255, np.uint8)
    cols = max(1, min(cols, len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    sheet = np.full((rows * tile, cols * tile, 3), 255, np.uint8)
    for i, img in enumerate(tiles):
        scale = tile / max(img.shape[:2])
        size = (max(1, int(img.shape[1] * scale)), max(1, int(img.shape[0] * scale)))
        small = cv2.resize(img, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        r, c = divmod(i, cols)
        sheet[r * tile: r * tile + size[1], c * tile: c * tile + size[0]] = small
    return sheet


def save_png(path, image: np.ndarray) -> None:
    """Write uint8 RGB ``[H, W, 3]`` as PNG, atomically."""
    ok, data = cv2.imencode(".png", np.ascontiguousarray(image[:, :, ::-1]))
    if not ok:
        raise ValueError(f"{path}: could not encode PNG")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data.tobytes())
