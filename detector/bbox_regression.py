"""R-CNN's class-specific bounding-box regression an option the paper lacked.

Shape letters: N training pairs, R regions, K classes, C pooled feature channels.
For a proposal P and its GT box G (centres x, y, sizes w, h in pixels), the targets are
``tx = (Gx - Px) / Pw``, ``ty = (Gy - Py) / Ph``, ``tw = log(Gw / Pw)``, ``th = log(Gh / Ph)``
(:class:`core.box_coder.BoxCoder` with unit weights).
Each class has a ridge regressor from the classifier's pooled inception-5b features (R-CNN used
pool5) plus a constant bias feature to the four targets, solved in closed form:
``w = (AᵀA + λI)⁻¹ Aᵀ(t - μ)``. As in ``rcnn_train_bbox_regressor.m`` the features are scaled
to a mean L2 norm of 20 and targets are centred by their mean μ; we skip its target whitening
(a rotation of four outputs that changes little with a shared λ). Pairs: proposals and GT boxes
whose IoU with their best GT box exceeds 0.6.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import Tensor
from core.box_ops import box_iou
from tqdm import tqdm

from core.box_coder import BoxCoder
from core.image import load_image

FEATURE_NORM = 20.0  # R-CNN's rcnn_scale_features target norm
CODER = BoxCoder()  # R-CNN's targets: unit weights against the proposal


@dataclass
class BoxRegressor:
    """Per-class linear regressors: ``weights [K, C+1, 4]``, target means ``mean [K, 4]``."""

    weights: Tensor
    mean: Tensor
    feature_scale: float

    def to_dict(self) -> dict:
        """Plain tensors and floats, as stored in a checkpoint (weights-only loadable)."""
        return {"weights": self.weights, "mean": self.mean, "feature_scale": float(self.feature_scale)}

    @classmethod
    def from_dict(cls, d: dict) -> "BoxRegressor":
        return cls(d["weights"].float(), d["mean"].float(), float(d["feature_scale"]))

    def _design(self, features: Tensor) -> Tensor:
        ones = features.new_ones((len(features), 1))
        return torch.cat([features.float() * self.feature_scale, ones], dim=1)

    def deltas(self, features: Tensor) -> Tensor:
        """``[R, C]`` pooled features → ``[R, K, 4]`` predicted targets for every class."""
        return torch.einsum("rc,kcd->rkd", self._design(features), self.weights) + self.mean[None]

    def predict(self, features: Tensor, boxes: Tensor) -> Tensor:
        """``[R, C]`` features of ``[R, 4]`` xyxy boxes → ``[R, K, 4]`` regressed xyxy boxes."""
        return CODER.decode(self.deltas(features), boxes[:, None])


def fit_regressor(features: Tensor, proposals: Tensor, gt: Tensor, labels: Tensor, num_classes: int,
                  ridge_lambda: float = 1000.0) -> BoxRegressor:
    """Fit one ridge regressor per class.

    Args:
        features: ``[N, C]`` pooled features of the training proposals.
        proposals, gt: ``[N, 4]`` xyxy proposals and their matched GT boxes.
        labels: ``[N]`` class of the matched GT box, ``0..K-1``.
        num_classes: K; a class without pairs gets the identity (zero deltas).
        ridge_lambda: λ (R-CNN: 1000).

    Returns:
        :class:`BoxRegressor`.
    """
    features = features.double()
    norms = features.norm(dim=1)
    scale = FEATURE_NORM / float(norms.mean()) if len(norms) and float(norms.mean()) > 0 else 1.0
    reg = BoxRegressor(torch.zeros(num_classes, features.shape[1] + 1, 4), torch.zeros(num_classes, 4), scale)
    targets = CODER.encode(gt.double(), proposals.double())
    for k in range(num_classes):
        sel = labels == k
        if not bool(sel.any()):
            continue
        a = reg._design(features[sel]).double()
        mu = targets[sel].mean(dim=0)
        gram = a.T @ a + ridge_lambda * torch.eye(a.shape[1], dtype=torch.float64)
        w = torch.cholesky_solve(a.T @ (targets[sel] - mu), torch.linalg.cholesky(gram))
        reg.weights[k], reg.mean[k] = w.float(), mu.float()
    return reg


def average_boxes(predictions: list[Tensor]) -> Tensor:
    """Mean of the members' ``[R, K, 4]`` regressed boxes (members without a regressor excluded)."""
    return torch.stack(predictions).mean(dim=0)


def training_pairs(model, pixels, proposals: Tensor, gt: Tensor, gt_labels: Tensor, min_iou: float
                   ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One image's regression pairs: features, boxes, matched GT boxes, labels (IoU > ``min_iou``).

    Args:
        model: a :class:`detector.classifier.RegionClassifier` in eval mode.
        pixels: uint8 ``[H, W, 3]`` RGB.
        proposals: ``[P, 4]`` xyxy; the GT boxes themselves are added (IoU 1, R-CNN's cache has them).
        gt, gt_labels: ``[G, 4]`` xyxy and ``[G]`` labels ``0..K-1``.
    """
    boxes = torch.cat([gt, proposals.reshape(-1, 4)]).float()
    wh = boxes[:, 2:] - boxes[:, :2]
    boxes = boxes[(wh > 0).all(dim=1)]
    if len(gt) == 0 or len(boxes) == 0:
        return _no_pairs(model.regression_channels)
    iou, best = box_iou(boxes, gt).max(dim=1)
    keep = iou > min_iou  # R-CNN: O > 0.6
    boxes, best = boxes[keep], best[keep]
    device = next(model.parameters()).device
    _, feats = model.probabilities(model.prepare_image(pixels, device), boxes.to(device), with_features=True)
    return feats.cpu(), boxes, gt[best], gt_labels[best]


def _no_pairs(channels: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    return torch.zeros(0, channels), torch.zeros(0, 4), torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64)


def _cap(labels: Tensor, cap: int) -> Tensor:
    """Boolean mask keeping the first ``cap`` entries of each label."""
    keep = torch.zeros(len(labels), dtype=torch.bool)
    for k in labels.unique():
        keep[torch.nonzero(labels == k).flatten()[:cap]] = True
    return keep


def train_box_regressor(model, dataset, proposals: dict, cfg, progress: bool = True) -> BoxRegressor:
    """Fit R-CNN's regressors for ``model`` on a training split.

    Args:
        model: a RegionClassifier (eval mode is set here).
        dataset: ``core.structures.DetectionDataset``; images read from its ``image_root``.
        proposals: ``image_id -> Proposals`` or ``[P, 4]`` boxes.
        cfg: :class:`detector.config.BBoxRegressionConfig`.
    """
    model.eval()
    images = dataset.images[:cfg.images] if cfg.images > 0 else dataset.images
    parts = [_no_pairs(model.regression_channels)]
    for ann in tqdm(images, desc="bbox regression", disable=not progress, dynamic_ncols=True):
        props = proposals.get(ann.image_id, torch.zeros(0, 4))
        props = torch.as_tensor(getattr(props, "boxes", props), dtype=torch.float32)
        keep = ~torch.as_tensor(ann.iscrowd, dtype=torch.bool)
        pixels = load_image(os.path.join(dataset.image_root, ann.file_name)).pixels
        parts.append(training_pairs(model, pixels, props, torch.as_tensor(ann.boxes)[keep],
                                    torch.as_tensor(ann.labels)[keep], cfg.min_iou))
    feats, boxes, gts, labels = (torch.cat(p) for p in zip(*parts))
    keep = _cap(labels, cfg.max_per_class)
    return fit_regressor(feats[keep], boxes[keep], gts[keep], labels[keep], model.num_classes, cfg.ridge_lambda)
