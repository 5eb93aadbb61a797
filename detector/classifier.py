"""The region classifier: an Inception network with K+1 outputs over warped regions.

Shape letters: R regions, S the warped size, K object classes, C pooled feature channels.
Output index 0 is background; index ``k + 1`` is ``classes[k]`` (dataset label ``k``).

A classifier owns its preprocessing so that checkpoints are self-describing: the input size S,
the context padding p of the R-CNN warp and the normalisation (mean/std, RGB, 0..1 scale).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detector.config import ClassifierConfig
from detector.warp import warp_regions
from nets.inception import Inception, normalize

REGRESSION_GRID = 2  # features for box regression: the 5b map pooled to 2x2


def autocast_dtype(name: str) -> torch.dtype | None:
    """The autocast dtype a config's ``dtype`` names (None for float32: no autocast)."""
    return None if name == "float32" else getattr(torch, name)


class RegionClassifier(nn.Module):
    """Inception over warped regions, ``K + 1`` logits (background first).

    Args:
        classes: the K object class names, in label order.
        cfg: architecture and preprocessing (width, S, p, dropout, aux heads, mean/std).
    """

    def __init__(self, classes: list[str], cfg: ClassifierConfig = ClassifierConfig()) -> None:
        super().__init__()
        if not classes:
            raise ValueError("a region classifier needs at least one class")
        self.classes = list(classes)
        self.cfg = cfg
        # Channels-last (NHWC): oneDNN's convolutions run 2-3x faster in it on CPU than in NCHW,
        # with the same outputs to float rounding; crops are converted on the way in.
        self.net = Inception(len(classes) + 1, width=cfg.width, aux_logits=cfg.aux_logits,
                             dropout=cfg.dropout).to(memory_format=torch.channels_last)
        # Optional R-CNN box regressor fitted on this network's features (detector.bbox_regression).
        self.box_regressor = None

    @property
    def regression_channels(self) -> int:
        """Length of the box-regression feature vector (the 5b map's channels x 2 x 2)."""
        return self.net.feature_channels * REGRESSION_GRID ** 2

    @property
    def num_classes(self) -> int:
        """K, without background."""
        return len(self.classes)

    def config_dict(self) -> dict:
        """The classifier config as a plain dict (lists for tuples), as stored in checkpoints."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self.cfg).items()}

    def prepare_image(self, image: np.ndarray, device="cpu") -> Tensor:
        """uint8 ``[H, W, 3]`` RGB → normalised float ``[3, H, W]`` on ``device``."""
        # A copy: cached and PIL-decoded arrays may be read-only or flipped views.
        pixels = torch.from_numpy(np.array(image, dtype=np.uint8, order="C")).to(device).permute(2, 0, 1)
        return normalize(pixels, self.cfg.mean, self.cfg.std)

    def warp(self, image: Tensor, boxes: Tensor, jitter: float = 0.0,
             generator: torch.Generator | None = None) -> Tensor:
        """Normalised ``[3, H, W]`` + ``[R, 4]`` xyxy → crops ``[R, 3, S, S]`` with this model's S and p."""
        return warp_regions(image, boxes, self.cfg.input_size, self.cfg.padding, jitter, generator)

    def forward(self, crops: Tensor):
        """Crops ``[R, 3, S, S]`` → logits ``[R, K+1]`` (train mode with aux: a 3-tuple)."""
        return self.net(crops.contiguous(memory_format=torch.channels_last))

    def logits_and_features(self, crops: Tensor) -> tuple[Tensor, Tensor]:
        """Eval-mode logits ``[R, K+1]`` and the 5b map pooled to 2x2, ``[R, 4C]``, for box regression.

        The features feed R-CNN's bounding-box regression (docs/method.md §2.6; R-CNN used pool5).
        """
        net = self.net
        fmap = net.features(crops.contiguous(memory_format=torch.channels_last))
        logits = net.fc(net.dropout(torch.flatten(net.avgpool(fmap), 1)))
        # A 2x2 grid keeps where things are (R-CNN regressed from pool5's spatial 6x6 grid);
        # the global average alone cannot tell a box that is too far left from one too far right.
        return logits, torch.flatten(F.adaptive_avg_pool2d(fmap, REGRESSION_GRID), 1)

    def classify(self, crops: Tensor, with_features: bool = False,
                 dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor | None]:
        """Eval-mode softmax of crops ``[R, 3, S, S]``: (``[R, K+1]`` float32, ``[R, C]`` features or None).

        Args:
            dtype: compute the network under autocast to this dtype (e.g. ``torch.bfloat16``);
                None keeps float32. Probabilities and features come back as float32.
        """
        autocast = torch.autocast(crops.device.type, dtype=dtype, enabled=dtype is not None)
        with torch.inference_mode(), autocast:
            logits, pooled = self.logits_and_features(crops)
            probs = torch.softmax(logits.float(), dim=1)
        return probs, pooled.float() if with_features else None

    def probabilities(self, image: Tensor, boxes: Tensor, batch: int = 256,
                      with_features: bool = False) -> tuple[Tensor, Tensor | None]:
        """Softmax probabilities of all regions of one image, ``batch`` regions at a time.

        Args:
            image: normalised ``[3, H, W]`` (see :meth:`prepare_image`).
            boxes: ``[R, 4]`` xyxy in that image's pixels.
            with_features: also return the pooled features ``[R, C]``.

        Returns:
            (``[R, K+1]`` probabilities, ``[R, C]`` features or None), on the image's device.
        """
        probs, feats = [], []
        for start in range(0, len(boxes), batch):
            p, f = self.classify(self.warp(image, boxes[start:start + batch]), with_features)
            probs.append(p)
            feats.append(f)
        if not probs:
            empty = image.new_zeros((0, self.num_classes + 1))
            return empty, image.new_zeros((0, self.regression_channels)) if with_features else None
        return torch.cat(probs), torch.cat(feats) if with_features else None
