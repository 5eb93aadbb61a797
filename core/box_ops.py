"""The box operations of torchvision.ops the project uses, without importing torchvision.

``import torchvision`` imports its models and ``ops``, and ``ops`` imports ``torch._dynamo``:
about 1.5 s of every tool's start-up on this project's 2-core machine, a tenth of a 12-image
``tools/detect.py`` run. So ``nms`` and ``roi_align`` call torchvision's compiled kernels
(``torch.ops.torchvision.*``, the same ones ``torchvision.ops`` calls) after loading only its
extension library, and the elementwise ones are written here with torchvision's formulas: the
results equal torchvision's bit for bit (tests hold them to it). If the library cannot be found
on its own (another torchvision layout), ``torchvision.ops`` is imported to register it. The
kernels run in float32 (or float64): other dtypes are computed in float32, as torchvision's autocast
registration does, and ``roi_align`` returns the features' dtype.
"""
from __future__ import annotations

import glob
import importlib.machinery
import importlib.util
import os

import torch
from torch import Tensor

_EXTENSIONS = ("_C_stable", "_C")  # torchvision's compiled ops, newest name first


def _has_kernels() -> bool:
    try:
        torch.ops.torchvision.nms  # noqa: B018 - attribute lookup raises if the op is not registered
    except (AttributeError, RuntimeError):
        return False
    return True


def load_kernels() -> None:
    """Register torchvision's compiled ops (nms, roi_align) once per process."""
    if _has_kernels():
        return
    spec = importlib.util.find_spec("torchvision")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        for name in _EXTENSIONS:
            for suffix in importlib.machinery.EXTENSION_SUFFIXES:
                for path in glob.glob(os.path.join(folder, name + suffix)):
                    try:
                        torch.ops.load_library(path)
                    except OSError:  # built for another torch: let torchvision's own loader say so
                        continue
                    if _has_kernels():
                        return
    import torchvision.ops  # noqa: F401 - registers the ops its own way


def _upcast(t: Tensor) -> Tensor:
    """Widen before products, as torchvision does: float16 → float32, small ints → int32."""
    if t.is_floating_point():
        return t if t.dtype in (torch.float32, torch.float64) else t.float()
    return t if t.dtype in (torch.int32, torch.int64) else t.int()


def _kernel_dtype(t: Tensor) -> Tensor:
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def box_area(boxes: Tensor) -> Tensor:
    """``[N, 4]`` xyxy → ``[N]`` areas."""
    boxes = _upcast(boxes)
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """``[N, 4]`` and ``[M, 4]`` xyxy → ``[N, M]`` IoU (torchvision.ops.box_iou)."""
    lt = torch.max(boxes1[..., None, :2], boxes2[..., None, :, :2])
    rb = torch.min(boxes1[..., None, 2:], boxes2[..., None, :, 2:])
    wh = _upcast(rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(boxes1)[..., None] + box_area(boxes2)[..., None, :] - inter
    return inter / union


def clip_boxes_to_image(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Clip xyxy ``boxes [..., 4]`` into an image of ``size`` (height, width)."""
    height, width = size
    xs = boxes[..., 0::2].clamp(min=0, max=width)
    ys = boxes[..., 1::2].clamp(min=0, max=height)
    return torch.stack((xs, ys), dim=boxes.dim()).reshape(boxes.shape)


def remove_small_boxes(boxes: Tensor, min_size: float) -> Tensor:
    """Indices of the boxes whose sides are both at least ``min_size``."""
    ws, hs = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    return torch.where((ws >= min_size) & (hs >= min_size))[0]


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Indices kept by greedy NMS (IoU > ``iou_threshold`` suppresses), by decreasing score."""
    load_kernels()
    return torch.ops.torchvision.nms(_kernel_dtype(boxes), _kernel_dtype(scores), iou_threshold)


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """NMS within each category ``idxs``; indices by decreasing score (torchvision.ops.batched_nms,
    including its choice between one offset NMS and one NMS per category)."""
    if boxes.numel() > (4000 if boxes.device.type == "cpu" else 100_000):
        keep = torch.zeros_like(scores, dtype=torch.bool)
        for category in torch.unique(idxs):
            members = torch.where(idxs == category)[0]
            keep[members[nms(boxes[members], scores[members], iou_threshold)]] = True
        kept = torch.where(keep)[0]
        return kept[scores[kept].sort(descending=True)[1]]
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    # an offset per category larger than any coordinate: boxes of two categories never overlap
    offsets = idxs.to(boxes) * (boxes.max() + torch.tensor(1).to(boxes))
    return nms(boxes + offsets[:, None], scores, iou_threshold)


def roi_align(features: Tensor, boxes: list[Tensor] | Tensor, output_size: int | tuple[int, int],
              spatial_scale: float = 1.0, sampling_ratio: int = -1, aligned: bool = False) -> Tensor:
    """RoIAlign of ``boxes`` (one ``[R_i, 4]`` xyxy tensor per image of ``features [B, C, H, W]``,
    or ``[K, 5]`` rows of image index and box) → ``[K, C, h, w]`` (torchvision.ops.roi_align)."""
    if torch.is_grad_enabled() and features.requires_grad:
        # the kernel's backward is registered by the torchvision package's Python (training only)
        from torchvision.ops import roi_align as with_backward
        return with_backward(features, boxes, output_size, spatial_scale, sampling_ratio, aligned)
    load_kernels()
    h, w = (output_size, output_size) if isinstance(output_size, int) else output_size
    rois = boxes
    if not isinstance(boxes, Tensor):
        index = torch.cat([torch.full_like(b[:, :1], i) for i, b in enumerate(boxes)])
        rois = torch.cat([index, torch.cat(boxes)], dim=1)
    out = torch.ops.torchvision.roi_align(_kernel_dtype(features), _kernel_dtype(rois), spatial_scale, h, w,
                                          sampling_ratio, aligned)
    return out.to(features.dtype)
