"""Box formats and their converters.

The one internal format is **xyxy**: float32, absolute pixels, continuous coordinates, so a
box's width is ``x2 - x1`` and the pixel with 0-based index ``i`` covers ``[i, i + 1)``.
Other formats are converted only at the edges, with the named functions below:

* COCO ``[x, y, w, h]`` (continuous, like ours).
* PASCAL VOC: 1-based inclusive pixel indices ``xmin..xmax`` (detectron2's convention:
  ``x1 = xmin - 1``, ``x2 = xmax``).
* ILSVRC DET: 0-based inclusive pixel indices (the XMLs contain ``xmin=0``):
  ``x1 = xmin``, ``x2 = xmax + 1``.
* OpenCV rects ``(x, y, w, h)`` in integer pixels.

In both inclusive conventions the devkit's width ``xmax - xmin + 1`` equals our ``x2 - x1``.
Shapes: ``[N, 4]`` tensors or arrays. IoU and clipping come from ``core.box_ops`` (torchvision's, without its import).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

# torch loads lazily: the format readers and the evaluator import this module, and importing
# torch costs seconds per process (a third of the evaluator's time on ILSVRC val).
_TORCH_OPS = ("box_iou", "clip_boxes_to_image")


def __getattr__(name: str):
    """``box_iou`` and ``clip_boxes_to_image`` (core.box_ops: torchvision's), imported on first use."""
    if name in _TORCH_OPS:
        from core import box_ops
        return getattr(box_ops, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "as_boxes", "coco_xywh_to_xyxy", "xyxy_to_coco_xywh", "voc_to_xyxy", "xyxy_to_voc",
    "ilsvrc_to_xyxy", "xyxy_to_ilsvrc", "cv_rect_to_xyxy", "xyxy_to_cv_rect", "box_iou",
    "clip_boxes_to_image", "scale_boxes", "flip_boxes",
]


def as_boxes(boxes) -> torch.Tensor:
    """Any ``[N, 4]`` array-like (or empty) as a float32 tensor of shape ``[N, 4]``."""
    import torch
    t = torch.as_tensor(np.asarray(boxes, dtype=np.float32) if not torch.is_tensor(boxes) else boxes)
    return t.to(torch.float32).reshape(-1, 4)


def _offset(boxes, delta, dtype=np.float32) -> np.ndarray:
    a = np.asarray(boxes, dtype=dtype).reshape(-1, 4)
    return a + np.asarray(delta, dtype=dtype)


def coco_xywh_to_xyxy(boxes) -> np.ndarray:
    """COCO ``[x, y, w, h]`` → xyxy, ``[N, 4]`` float32."""
    a = np.asarray(boxes, dtype=np.float32).reshape(-1, 4).copy()
    a[:, 2:] += a[:, :2]
    return a


def xyxy_to_coco_xywh(boxes) -> np.ndarray:
    """xyxy → COCO ``[x, y, w, h]``, ``[N, 4]`` float32."""
    a = np.asarray(boxes, dtype=np.float32).reshape(-1, 4).copy()
    a[:, 2:] -= a[:, :2]
    return a


def voc_to_xyxy(boxes) -> np.ndarray:
    """PASCAL VOC 1-based inclusive ``[xmin, ymin, xmax, ymax]`` → xyxy."""
    return _offset(boxes, (-1, -1, 0, 0))


def xyxy_to_voc(boxes, dtype=np.float32) -> np.ndarray:
    """xyxy → PASCAL VOC 1-based inclusive (float; round when writing integer files).

    ``dtype=np.float64`` for the evaluator, which computes overlaps in the devkit's double precision.
    """
    return _offset(boxes, (1, 1, 0, 0), dtype)


def ilsvrc_to_xyxy(boxes) -> np.ndarray:
    """ILSVRC DET 0-based inclusive ``[xmin, ymin, xmax, ymax]`` → xyxy."""
    return _offset(boxes, (0, 0, 1, 1))


def xyxy_to_ilsvrc(boxes) -> np.ndarray:
    """xyxy → ILSVRC DET 0-based inclusive (float)."""
    return _offset(boxes, (0, 0, -1, -1))


def cv_rect_to_xyxy(rects) -> np.ndarray:
    """OpenCV ``(x, y, w, h)`` integer rects → xyxy float32."""
    return coco_xywh_to_xyxy(rects)


def xyxy_to_cv_rect(boxes) -> np.ndarray:
    """xyxy → OpenCV ``(x, y, w, h)`` int32 rects covering the box's pixels."""
    a = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    x1y1 = np.floor(a[:, :2])
    x2y2 = np.ceil(a[:, 2:])
    return np.concatenate([x1y1, x2y2 - x1y1], axis=1).astype(np.int32)


def scale_boxes(boxes, sx: float, sy: float) -> np.ndarray:
    """Map xyxy boxes from a resized image back by the factors ``(sx, sy)``."""
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4) * np.array([sx, sy, sx, sy], np.float32)


def flip_boxes(boxes, width: int):
    """``[N, 4]`` xyxy boxes (tensor or array) mirrored in an image ``width`` pixels wide: a new
    ``[N, 4]`` of the same type, ``x1' = width - x2``, ``x2' = width - x1``."""
    out = boxes[:, [2, 1, 0, 3]]  # fancy indexing copies, for tensors and arrays alike
    out[:, 0] = width - out[:, 0]
    out[:, 2] = width - out[:, 2]
    return out
