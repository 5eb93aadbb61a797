"""Pictures of proposals: boxes coloured by source, ground truth marked covered or missed.

Images are uint8 ``[H, W, 3]`` RGB; boxes xyxy float in that image's pixels. A ground-truth box is
*covered* when some drawn proposal has IoU >= ``iou`` with it (the "coverage" of the GoogLeNet
paper's section 8). The drawing itself is :mod:`core.draw`'s.
"""
from __future__ import annotations

import numpy as np

from core.boxes import as_boxes, box_iou
from core.draw import draw_boxes, fit_within, line_width
from proposals.base import SOURCE_MULTIBOX, SOURCE_SS, Proposals

# RGB colours
SOURCE_COLOURS = {SOURCE_SS: (40, 120, 255), SOURCE_MULTIBOX: (255, 150, 0)}
COVERED, MISSED = (0, 220, 0), (255, 0, 0)


def covered(gt: np.ndarray, boxes: np.ndarray, iou: float = 0.5) -> np.ndarray:
    """Which ground-truth boxes ``[G, 4]`` have a proposal in ``boxes [R, 4]`` with IoU >= ``iou``; ``[G]`` bool."""
    if len(gt) == 0 or len(boxes) == 0:
        return np.zeros(len(gt), bool)
    return (box_iou(as_boxes(gt), as_boxes(boxes)).max(dim=1).values >= iou).numpy()


def draw_proposals(image: np.ndarray, proposals: Proposals, top: int | None = 100,
                   gt: np.ndarray | None = None, iou: float = 0.5,
                   size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The image with its ``top`` best proposals and the ground truth drawn on it.

    Proposals are thin lines coloured by source (blue: selective search, orange: MultiBox), the
    best-ranked drawn last so they stay visible; ground truth is thick, green when covered by the
    drawn proposals, red when missed.

    Args:
        size: if given, the image is first scaled so its longer side is ``size`` pixels (a
            contact-sheet cell), so the lines keep their width in the sheet.

    Returns:
        uint8 ``[h, w, 3]`` RGB (a copy), and ``[G]`` bool: which ground-truth boxes are covered.
    """
    shown = proposals.top(top)
    gt = np.zeros((0, 4), np.float32) if gt is None else np.asarray(gt, np.float32).reshape(-1, 4)
    hit = covered(gt, shown.boxes, iou)
    scale = 1.0
    if size:
        image, scale = fit_within(image, size)
    colours = [SOURCE_COLOURS.get(int(s), (255, 255, 255)) for s in shown.sources[::-1]]
    canvas = draw_boxes(image, shown.boxes[::-1] * scale, colours, width=1)
    canvas = draw_boxes(canvas, gt * scale, [COVERED if ok else MISSED for ok in hit], line_width(canvas.shape))
    return canvas, hit
