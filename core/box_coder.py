"""Box offsets against reference boxes, the R-CNN parameterisation (as torchvision's ``BoxCoder``).

For a reference box P and a box G (centres x, y and sizes w, h), with weights (wx, wy, ww, wh)::

    dx = wx * (Gx - Px) / Pw    dy = wy * (Gy - Py) / Ph    dw = ww * log(Gw / Pw)    dh = wh * log(Gh / Ph)

R-CNN's bounding-box regression uses weights (1, 1, 1, 1) against proposals; MultiBox uses
(10, 10, 5, 5) against its priors, so that the targets of a typical match are about unit size.
Decoding clamps dw, dh at log(1000 / 16) before the exponential, as torchvision does, so a wild
prediction cannot overflow.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

MAX_LOG_SIZE = math.log(1000.0 / 16)


def centre_size(boxes: Tensor, eps: float = 1e-6) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """xyxy ``[..., 4]`` → centres x, y and sizes w, h ``[...]`` (sizes at least ``eps``)."""
    w = (boxes[..., 2] - boxes[..., 0]).clamp(min=eps)
    h = (boxes[..., 3] - boxes[..., 1]).clamp(min=eps)
    return (boxes[..., 0] + boxes[..., 2]) / 2, (boxes[..., 1] + boxes[..., 3]) / 2, w, h


class BoxCoder:
    """Encode xyxy boxes as offsets against reference boxes, and back.

    Args:
        weights: (wx, wy, ww, wh) scaling of the four offsets.
        max_log_size: clamp of dw / ww and dh / wh when decoding.
    """

    def __init__(self, weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
                 max_log_size: float = MAX_LOG_SIZE) -> None:
        self.weights, self.max_log_size = tuple(float(w) for w in weights), max_log_size

    def encode(self, boxes: Tensor, reference: Tensor) -> Tensor:
        """xyxy ``boxes [..., 4]`` against ``reference`` (same or broadcastable shape) → offsets ``[..., 4]``."""
        gx, gy, gw, gh = centre_size(boxes)
        px, py, pw, ph = centre_size(reference)
        wx, wy, ww, wh = self.weights
        return torch.stack([wx * (gx - px) / pw, wy * (gy - py) / ph,
                            ww * torch.log(gw / pw), wh * torch.log(gh / ph)], dim=-1)

    def decode(self, offsets: Tensor, reference: Tensor) -> Tensor:
        """Offsets ``[..., 4]`` + ``reference`` (broadcastable xyxy) → xyxy boxes ``[..., 4]``."""
        px, py, pw, ph = centre_size(reference)
        wx, wy, ww, wh = self.weights
        cx = px + offsets[..., 0] / wx * pw
        cy = py + offsets[..., 1] / wy * ph
        w = pw * torch.exp((offsets[..., 2] / ww).clamp(max=self.max_log_size))
        h = ph * torch.exp((offsets[..., 3] / wh).clamp(max=self.max_log_size))
        return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)
