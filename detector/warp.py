"""R-CNN's region warp (docs/method.md §2.2): every proposal becomes an S×S crop with context.

Shape letters: R regions, S the warped size, H×W the image. Boxes are xyxy float32 in image
pixels (continuous; pixel ``i`` covers ``[i, i + 1)``).

Following ``rcnn_im_crop.m`` (crop_mode 'warp'):

1. each box is dilated around its centre by ``S / (S - 2p)`` so that, once warped, ``p`` pixels
   of context surround the original box on every side (R-CNN: S = 227, p = 16);
2. the dilated box is rounded to whole pixels (R-CNN rounds too);
3. that region is resized anisotropically to S×S, bilinearly and without antialiasing;
4. pixels outside the image are the mean, i.e. 0 on the already-normalised input.

:func:`warp_regions` does all regions of an image in one ``torch.nn.functional.grid_sample``
call: output pixel ``j`` of a region samples source coordinate ``x1 - 0.5 + (j + 0.5) * w / S``
(pixel centres, the mapping of ``cv2.resize``), one bilinear sample per output pixel, i.e. plain
bilinear resizing without antialiasing as R-CNN did, and a tap outside the image reads the zero
mean (``padding_mode="zeros"``). All regions' sample points form one ``[1, R·S, S, 2]`` grid over
the single image, so no per-region work is done in Python; unlike torchvision's ``roi_align``
(which this replaced, same samples), ``grid_sample`` releases the GIL, so regions warp in
parallel threads beside the networks (detector.ensemble). The grid is in normalised [-1, 1]
coordinates, so sample positions carry float32 rounding of about 1e-7 of the image side.

:func:`warp_regions_reference` is the plain per-region OpenCV version the tests hold the fast one
to. They agree to float rounding wherever every bilinear sample falls inside the cropped region,
which is always the case when a region is shrunk (the common case). When a region is enlarged
(dilated side ``w < S``), the outer ``ceil((S / w - 1) / 2)`` output rows/columns differ:
``cv2.resize`` replicates the crop's edge pixel there, while the fast warp blends in the true
neighbouring image pixel (or the zero mean outside the image), which is the better estimate.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def _check_size(size: int, padding: int) -> None:
    if size <= 0 or padding < 0 or size - 2 * padding <= 0:
        raise ValueError(f"warp needs size > 2 * padding >= 0, got size={size}, padding={padding}")


def jitter_boxes(boxes: Tensor, jitter: float, generator: torch.Generator | None = None) -> Tensor:
    """Random crop jitter for training: shift centres and scale sides by up to ``jitter``.

    Args:
        boxes: ``[R, 4]`` xyxy.
        jitter: the centre moves by up to ``jitter`` × the box side, each side is scaled by
            ``exp(u * jitter)`` with ``u`` uniform in [-1, 1]. 0 returns the boxes unchanged.
        generator: the random source (for reproducible ensemble members).

    Returns:
        ``[R, 4]`` xyxy float32.
    """
    boxes = boxes.to(torch.float32)
    if jitter <= 0 or len(boxes) == 0:
        return boxes
    u = torch.rand((len(boxes), 4), generator=generator).to(boxes.device) * 2 - 1
    wh = boxes[:, 2:] - boxes[:, :2]
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2 + u[:, :2] * jitter * wh
    half = wh * torch.exp(u[:, 2:] * jitter) / 2
    return torch.cat([centre - half, centre + half], dim=1)


def dilate_boxes(boxes: Tensor, size: int, padding: int) -> Tensor:
    """Boxes grown around their centres by ``size / (size - 2 * padding)``, rounded to whole pixels.

    Args:
        boxes: ``[R, 4]`` xyxy.

    Returns:
        ``[R, 4]`` xyxy float32 with integer values, each at least 1 px wide and high.
    """
    _check_size(size, padding)
    boxes = boxes.to(torch.float32)
    scale = size / (size - 2 * padding)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0) * scale / 2
    x1y1 = torch.round(centre - half)
    x2y2 = torch.maximum(torch.round(centre + half), x1y1 + 1)
    return torch.cat([x1y1, x2y2], dim=1)


def warp_regions(image: Tensor, boxes: Tensor, size: int, padding: int = 16, jitter: float = 0.0,
                 generator: torch.Generator | None = None) -> Tensor:
    """Warp every region of one image to ``size × size`` with context, in one batched call.

    Args:
        image: ``[3, H, W]`` float, already normalised (so the image mean is 0).
        boxes: ``[R, 4]`` xyxy in image pixels (on the image's device or CPU).
        size: S, the warped side.
        padding: p, context pixels around the box in the warped frame (R-CNN: 16 at S = 227).
            Ensemble members may vary it.
        jitter: training augmentation, see :func:`jitter_boxes` (0 at test time).
        generator: random source for the jitter.

    Returns:
        ``[R, 3, S, S]`` float32 crops in channels-last layout (NHWC in memory, the members'
        layout); 0 where the region leaves the image. Memory is
        ``R·3·S²·4`` bytes: callers with thousands of regions at large S warp them in chunks.
    """
    if image.dim() != 3:
        raise ValueError(f"warp_regions expects one image [3, H, W], got {tuple(image.shape)}")
    boxes = torch.as_tensor(boxes).reshape(-1, 4).to(device=image.device, dtype=torch.float32)
    boxes = dilate_boxes(jitter_boxes(boxes, jitter, generator), size, padding)
    if len(boxes) == 0:
        return image.new_zeros((0, image.shape[0], size, size), dtype=torch.float32)
    crops = F.grid_sample(image[None].to(torch.float32), sample_grid(boxes, size, image.shape[1:]),
                          mode="bilinear", padding_mode="zeros", align_corners=False
                          ).reshape(image.shape[0], len(boxes), size, size).transpose(0, 1)
    # once here, not once per member: the members that share these crops run channels-last
    return crops.contiguous(memory_format=torch.channels_last)


def sample_grid(boxes: Tensor, size: int, image_size) -> Tensor:
    """The bilinear sample points of every region, as one ``grid_sample`` grid ``[1, R·S, S, 2]``.

    Args:
        boxes: ``[R, 4]`` xyxy (already dilated) in image pixels.
        image_size: (H, W) of the image sampled.

    Returns:
        (x, y) in ``grid_sample``'s normalised coordinates (align_corners=False: -1 and 1 are the
        image's outer pixel edges); row ``r·S + i``, column ``j`` is region r's output pixel (i, j).
    """
    h, w = image_size
    steps = (torch.arange(size, dtype=torch.float32, device=boxes.device) + 0.5) / size  # [S]
    # Pixel coordinates of the samples: x1 - 0.5 + (j + 0.5) * (x2 - x1) / S (pixel centres).
    xs = boxes[:, 0:1] + steps * (boxes[:, 2:3] - boxes[:, 0:1]) - 0.5  # [R, S]
    ys = boxes[:, 1:2] + steps * (boxes[:, 3:4] - boxes[:, 1:2]) - 0.5
    gx, gy = (2 * xs + 1) / w - 1, (2 * ys + 1) / h - 1
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)  # [R, S, S, 2]
    return grid.reshape(1, len(boxes) * size, size, 2)


def warp_regions_reference(image: Tensor, boxes: Tensor, size: int, padding: int = 16) -> Tensor:
    """The same warp one region at a time with OpenCV (slow; the tests' oracle).

    Crops the dilated, rounded box from the image padded with zeros and resizes it with
    ``cv2.resize(..., INTER_LINEAR)``. Args and returns as :func:`warp_regions` (no jitter).
    """
    boxes = dilate_boxes(torch.as_tensor(boxes).reshape(-1, 4).cpu(), size, padding)
    hwc = image.detach().cpu().to(torch.float32).permute(1, 2, 0).numpy()
    out = np.zeros((len(boxes), image.shape[0], size, size), np.float32)
    for i, (x1, y1, x2, y2) in enumerate(boxes.to(torch.int64).tolist()):
        pad = max(0, -x1, -y1, x2 - hwc.shape[1], y2 - hwc.shape[0])
        canvas = np.pad(hwc, ((pad, pad), (pad, pad), (0, 0)))
        crop = canvas[y1 + pad:y2 + pad, x1 + pad:x2 + pad]
        warped = cv2.resize(crop, (size, size), interpolation=cv2.INTER_LINEAR)
        out[i] = warped.reshape(size, size, -1).transpose(2, 0, 1)
    return torch.from_numpy(out)

