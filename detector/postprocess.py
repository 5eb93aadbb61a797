"""From scored regions to detections, as torchvision's ``RoIHeads.postprocess_detections``.

Shape letters: R regions, K object classes (probabilities carry background at index 0).
Steps: clip boxes to the image → drop non-finite → score threshold → flatten (box, class) pairs
→ at most ``pre_nms_per_class`` per class (R-CNN's ``rcnn_test.m``) → per-class NMS
(``batched_nms``, IoU 0.3 as R-CNN's code) → top-k per image.
"""
from __future__ import annotations

import torch
from torch import Tensor
from core.box_ops import batched_nms, clip_boxes_to_image, remove_small_boxes

from core.structures import Detections


def _cap_per_class(scores: Tensor, labels: Tensor, cap: int) -> Tensor:
    """Indices of the ``cap`` best-scoring entries of each label (all labels), best first."""
    order = torch.argsort(scores, descending=True, stable=True)
    # Rank of each entry within its class: stable sort by label keeps the score order inside it.
    by_label = order[torch.argsort(labels[order], stable=True)]
    sorted_labels = labels[by_label]
    counts = torch.bincount(sorted_labels)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(len(by_label)) - starts[sorted_labels]
    keep = by_label[rank < cap]
    return keep[torch.argsort(scores[keep], descending=True, stable=True)]


def postprocess(boxes: Tensor, probs: Tensor, image_size: tuple[int, int],
                score_threshold: float = 0.05, nms_iou: float = 0.3, top_k: int = 100,
                pre_nms_per_class: int = 100) -> Detections:
    """Turn region probabilities into the image's detections.

    Args:
        boxes: ``[R, 4]`` xyxy (the same box for every class) or ``[R, K, 4]`` (per class, e.g.
            after bounding-box regression), image pixels.
        probs: ``[R, K+1]`` probabilities, background first.
        image_size: ``(height, width)``, to clip the boxes.
        score_threshold: pairs with probability ``<= score_threshold`` are dropped.
        nms_iou: per-class NMS drops a box whose IoU with a better one of its class is above this.
        top_k: detections kept per image (best first).
        pre_nms_per_class: candidates kept per class before NMS (0 = no cap).

    Returns:
        :class:`Detections` with labels ``0..K-1`` (background removed), sorted by score.
    """
    num_regions, num_classes = probs.shape[0], probs.shape[1] - 1
    if boxes.dim() == 2:
        boxes = boxes[:, None, :].expand(num_regions, num_classes, 4)
    flat_boxes = boxes.reshape(-1, 4).to(torch.float32)
    scores = probs[:, 1:].reshape(-1).to(torch.float32)
    labels = torch.arange(num_classes).repeat(num_regions)
    keep = torch.isfinite(flat_boxes).all(dim=1) & torch.isfinite(scores) & (scores > score_threshold)
    flat_boxes, scores, labels = flat_boxes[keep], scores[keep], labels[keep]
    flat_boxes = clip_boxes_to_image(flat_boxes, image_size)
    keep = remove_small_boxes(flat_boxes, 1e-2)  # zero-area boxes after clipping (torchvision)
    flat_boxes, scores, labels = flat_boxes[keep], scores[keep], labels[keep]
    if pre_nms_per_class > 0 and len(scores):
        keep = _cap_per_class(scores, labels, pre_nms_per_class)
        flat_boxes, scores, labels = flat_boxes[keep], scores[keep], labels[keep]
    keep = batched_nms(flat_boxes, scores, labels, nms_iou)[:top_k]
    return Detections(flat_boxes[keep].numpy(), scores[keep].numpy(), labels[keep].numpy())
