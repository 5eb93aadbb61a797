"""The ensemble: every member scores every region; their softmax probabilities are averaged.

Shape letters: M members, R regions, K classes (+1 for background at index 0), C features.
GLN §7 averaged softmax probabilities over models (and crops); the detection paper does not say
how its six models were combined, so we do the same (METHOD §1.1, §1.5).
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import Tensor

from core.errors import InputError
from detector.classifier import RegionClassifier


def average_probabilities(probs: Tensor) -> Tensor:
    """``[M, R, K+1]`` per-member probabilities → ``[R, K+1]`` their mean."""
    if probs.dim() != 3 or probs.shape[0] == 0:
        raise ValueError(f"expected [M>0, R, K+1] probabilities, got {tuple(probs.shape)}")
    return probs.mean(dim=0)


def check_members(members: list[RegionClassifier]) -> list[str]:
    """The members' shared class list; raises InputError if they disagree or there are none."""
    if not members:
        raise InputError("the ensemble has no members")
    classes = members[0].classes
    for i, m in enumerate(members[1:], 1):
        if m.classes != classes:
            raise InputError(f"ensemble member {i} has other classes than member 0")
    return classes


def member_probabilities(image: np.ndarray, boxes: Tensor, members: list[RegionClassifier],
                         batch: int = 256, with_features: bool = False,
                         watch=lambda stage: contextlib.nullcontext()
                         ) -> tuple[Tensor, list[Tensor | None]]:
    """Each member's probabilities for the regions of one image.

    Each member warps with its own S, p and normalisation (members may differ in context).

    Args:
        image: uint8 ``[H, W, 3]`` RGB.
        boxes: ``[R, 4]`` xyxy in the image's pixels.
        with_features: also return each member's pooled features ``[R, C_m]``.
        watch: times the stages, see ``detector.pipeline.detect_regions``.

    Returns:
        (``[M, R, K+1]`` probabilities, per-member features or Nones).
    """
    check_members(members)
    probs, feats = [], []
    prepared: dict[tuple, Tensor] = {}
    for i, m in enumerate(members):
        device = next(m.parameters()).device
        key = (tuple(m.cfg.mean), tuple(m.cfg.std), str(device))
        if key not in prepared:  # normalise once per distinct preprocessing
            with watch("warping"):
                prepared[key] = m.prepare_image(image, device)
        p, f = m.probabilities(prepared[key], boxes.to(device), batch, with_features,
                               watch=watch, name=f"member {i} forward")
        probs.append(p.cpu())
        feats.append(f.cpu() if f is not None else None)
    return torch.stack(probs), feats
