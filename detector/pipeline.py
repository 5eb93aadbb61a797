"""The detector, stage by stage (GLN §8 on R-CNN's pipeline, docs/method.md §1.1 and §2).

Data flow for one image (shape letters: R proposals, M members, K classes, S warped size)::

    image uint8 [H, W, 3] RGB
      → proposals [R, 4] xyxy (selective search + MultiBox, any Proposer)
      → warped crops [R, 3, S, S] per member (R-CNN warp with context, detector.warp)
      → per-member softmax probabilities [M, R, K+1]
      → averaged probabilities [R, K+1]
      → optional box regression [R, K, 4]
      → per-class NMS (IoU 0.3), score threshold, top 100 → Detections

Regions go through the networks ``batch_regions`` at a time, so memory does not grow with R.
"""
from __future__ import annotations

import contextlib
import glob
import os
import re
from collections.abc import Callable
from typing import ContextManager

import numpy as np
import torch
from torch import Tensor
from core.box_ops import clip_boxes_to_image

from core.errors import InputError
from core.structures import Detections
from detector.bbox_regression import average_boxes
from detector.checkpoint import load_member
from detector.classifier import RegionClassifier, autocast_dtype
from detector.config import DetectorConfig
from detector.ensemble import (
    average_probabilities,
    cascade_probabilities,
    member_probabilities,
    resolve_streams,
)
from detector.postprocess import postprocess
from nets.inception import fold_batchnorm
from proposals.base import Proposals, Proposer
from proposals.build import build_proposer

MULTIBOX_FILE = "multibox.pt"
MEMBER_GLOB = "member_*.pt"


def region_boxes(proposals: Proposals, image_size: tuple[int, int], max_proposals: int = 0) -> Tensor:
    """The top proposals as ``[R, 4]`` xyxy clipped to ``image_size`` (h, w), non-empty ones only."""
    boxes = torch.as_tensor(proposals.boxes, dtype=torch.float32).reshape(-1, 4)
    if max_proposals > 0:
        boxes = boxes[:max_proposals]
    boxes = clip_boxes_to_image(boxes[torch.isfinite(boxes).all(dim=1)], image_size)
    wh = boxes[:, 2:] - boxes[:, :2]
    return boxes[(wh > 0).all(dim=1)]


def regress_boxes(boxes: Tensor, features: list[Tensor | None], members: list[RegionClassifier]) -> Tensor:
    """Average of the members' regressed boxes ``[R, K, 4]`` (``boxes`` unchanged if none has one)."""
    predictions = [m.box_regressor.predict(f, boxes) for m, f in zip(members, features)
                   if m.box_regressor is not None and f is not None]
    return average_boxes(predictions) if predictions else boxes


Watch = Callable[[str], ContextManager]  # watch("stage") times a stage (bench.detect_speed)


def no_watch(stage: str) -> ContextManager:
    """The default :data:`Watch`: times nothing."""
    return contextlib.nullcontext()


def detect(image: np.ndarray, proposer: Proposer, members: list[RegionClassifier],
           cfg: DetectorConfig = DetectorConfig()) -> Detections:
    """Detect objects in one image.

    Args:
        image: uint8 ``[H, W, 3]`` RGB (any size down to 1×1).
        proposer: class-agnostic proposals for the image.
        members: the ensemble, in eval mode, sharing one class list (on any device).
        cfg: proposal cap, NMS, threshold, top-k, batching, box regression.

    Returns:
        :class:`Detections` in the image's pixels, labels ``0..K-1``, best first.
    """
    return detect_regions(image, proposer(image), members, cfg)


def detect_regions(image: np.ndarray, proposals: Proposals, members: list[RegionClassifier],
                   cfg: DetectorConfig = DetectorConfig(), watch: Watch = no_watch) -> Detections:
    """Detect objects in one image whose proposals are already computed (see :func:`detect`).

    Args:
        proposals: the image's proposals (e.g. from a worker process or a cache).
        watch: called with each stage's name ("warping", "member I forward", "averaging",
            "nms", ...) around that stage, for the benchmark.
    """
    size = (int(image.shape[0]), int(image.shape[1]))
    boxes = region_boxes(proposals, size, cfg.max_proposals)
    with_features = cfg.bbox_regression and any(m.box_regressor is not None for m in members)
    dtype = autocast_dtype(cfg.dtype)
    streams = resolve_streams(cfg.streams, members)
    if cfg.cascade_top > 0:
        probs = cascade_probabilities(image, boxes, members, cfg.cascade_top, cfg.batch_regions, watch, dtype,
                                      streams)
    else:
        probs, features = member_probabilities(image, boxes, members, cfg.batch_regions, with_features,
                                               watch=watch, dtype=dtype, streams=streams)
        with watch("averaging"):
            probs = average_probabilities(probs)
    if with_features:
        with watch("box regression"):
            boxes = regress_boxes(boxes, features, members)
    with watch("nms"):
        return final_detections(boxes, probs, size, cfg)


def final_detections(boxes: Tensor, probs: Tensor, size: tuple[int, int], cfg: DetectorConfig) -> Detections:
    """Per-class NMS, threshold and caps of ``cfg`` on averaged probabilities ``[R, K+1]`` of regions
    ``boxes`` (``[R, 4]``, or ``[R, K, 4]`` regressed) in an image of ``size`` (h, w)."""
    return postprocess(boxes, probs, size, cfg.score_threshold, cfg.nms_iou, cfg.top_k, cfg.pre_nms_per_class)


def _member_number(path: str) -> int:
    match = re.search(r"member_(\d+)\.pt$", path)
    return int(match.group(1)) if match else -1


def member_paths(weights: str) -> list[str]:
    """The member checkpoints a ``--weights`` path names: a file, or a folder's ``member_*.pt``."""
    if os.path.isdir(weights):
        paths = sorted(glob.glob(os.path.join(weights, MEMBER_GLOB)), key=_member_number)
        if not paths:
            raise InputError(f"{weights}: no {MEMBER_GLOB} checkpoints in this folder")
        return paths
    if not os.path.exists(weights):
        raise InputError(f"{weights}: no such weights file or folder")
    return [weights]


def multibox_path(weights: str) -> str | None:
    """``multibox.pt`` in the weights folder (or beside a single checkpoint), if there is one."""
    folder = weights if os.path.isdir(weights) else os.path.dirname(os.path.abspath(weights))
    path = os.path.join(folder, MULTIBOX_FILE)
    return path if os.path.isfile(path) else None


def weights_files(weights: str) -> list[str]:
    """Every file whose bytes decide the detections of a ``--weights`` path: its member
    checkpoints (:func:`member_paths`) and the ``multibox.pt`` beside them, if there is one."""
    mb = multibox_path(weights)
    return member_paths(weights) + ([mb] if mb else [])


def load_members(weights: str, device="cpu") -> list[RegionClassifier]:
    """Load every member a weights path names for inference (eval mode, on ``device``, BatchNorm
    folded into the convolutions: :func:`nets.inception.fold_batchnorm`); classes must agree."""
    members: list[RegionClassifier] = []
    for path in member_paths(weights):
        expect = members[0].classes if members else None
        members.append(fold_batchnorm(load_member(path, device, expect_classes=expect).model))
    return members


def build_detector_proposer(cfg: DetectorConfig, weights: str, proposals_cfg=None, device="cpu") -> Proposer:
    """The proposer ``cfg.proposal_method`` names, with the MultiBox weights found beside ``weights``.

    Args:
        proposals_cfg: a ``proposals.build.ProposalsConfig`` (None: its presets).
    """
    mb = multibox_path(weights)
    if mb is None and cfg.proposal_method in ("multibox", "merged"):
        raise InputError(f"{weights}: no {MULTIBOX_FILE} beside the member checkpoints, which proposal "
                         f"method {cfg.proposal_method!r} needs (use --proposals ss2x)")
    return build_proposer(cfg.proposal_method, proposals_cfg, multibox_weights=mb, device=device)
