"""The detector as one object, in the form torchvision users know::

    from detector import Detector
    det = Detector.load("assets/model")          # a folder of member_*.pt (+ multibox.pt) or one member
    result = det(image)                          # numpy RGB uint8 [H, W, 3], a PIL image or a path
    for box, score, name in zip(result.boxes, result.scores, result.class_names):
        print(name, score, box)                  # box: xyxy float32, the image's pixels

A list of images gives a list of results. ``tools/detect.py`` is built on this class.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from core.config import ConfigError, build_dataclass
from core.errors import InputError
from core.image import load_image
from core.structures import Detections as BoxDetections
from detector.classifier import RegionClassifier
from detector.config import DetectorConfig
from detector.pipeline import build_detector_proposer, detect_regions, load_members
from proposals.base import Proposals, Proposer
from proposals.build import ProposalsConfig

BUNDLED = Path(__file__).resolve().parents[1] / "assets" / "model"


@dataclass
class Detections(BoxDetections):
    """One image's detections: ``boxes [N, 4]`` xyxy float32 (image pixels), ``scores [N]``,
    ``labels [N]`` (0..K-1) and ``class_names [N]``, best first."""

    class_names: list[str] = field(default_factory=list)


def as_rgb_array(image) -> np.ndarray:
    """A numpy RGB uint8 ``[H, W, 3]`` array, PIL image or image path → uint8 ``[H, W, 3]`` RGB.

    Raises:
        InputError: anything else (another dtype or shape is named in the message).
    """
    if isinstance(image, (str, os.PathLike)):
        return load_image(image).pixels
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise InputError(f"image array: expected uint8 [H, W, 3] RGB, got {image.dtype} "
                             f"{list(image.shape)}")
        return image
    raise InputError(f"image: expected a numpy array, a PIL image or a path, got {type(image).__name__}")


class Detector:
    """The Inception R-CNN ensemble with its proposer.

    Args:
        members: the region classifiers (eval mode, one class list).
        proposer: class-agnostic proposals for an image.
        cfg: NMS, thresholds, batching, dtype, cascade.
    """

    def __init__(self, members: list[RegionClassifier], proposer: Proposer,
                 cfg: DetectorConfig = DetectorConfig()) -> None:
        self.members, self.proposer, self.cfg = members, proposer, cfg

    @classmethod
    def load(cls, weights=None, device: str = "cpu", config: DetectorConfig | dict | None = None,
             proposals: ProposalsConfig | None = None) -> Detector:
        """Load the members (and MultiBox) a weights folder or member file holds.

        Args:
            weights: a folder of ``member_*.pt`` (and ``multibox.pt``), or one member checkpoint
                (None: the bundled model, ``assets/model``).
            device: torch device, e.g. "cpu" or "cuda".
            config: a :class:`DetectorConfig` or a dict of its fields (e.g. ``{"dtype": "bfloat16"}``).
            proposals: selective search and merge parameters (None: the presets).
        """
        cfg = build_dataclass(DetectorConfig, config, "detector")
        weights = os.fspath(weights) if weights is not None else str(BUNDLED)
        members = load_members(weights, device)
        return cls(members, build_detector_proposer(cfg, weights, proposals, device), cfg)

    @property
    def classes(self) -> list[str]:
        """The K class names, in label order."""
        return self.members[0].classes

    def __call__(self, images):
        """Detections of one image (numpy RGB uint8, PIL or path), or a list of them for a list."""
        if isinstance(images, (list, tuple)):
            return [self.detect(image) for image in images]
        return self.detect(images)

    def detect(self, image) -> Detections:
        """The detections of one image (see :func:`as_rgb_array` for what ``image`` may be)."""
        pixels = as_rgb_array(image)
        return self.detect_proposals(pixels, self.proposer(pixels))

    def detect_proposals(self, pixels: np.ndarray, proposals: Proposals, watch=None) -> Detections:
        """The detections of uint8 ``[H, W, 3]`` RGB pixels whose proposals are already computed."""
        kwargs = {"watch": watch} if watch is not None else {}
        found = detect_regions(pixels, proposals, self.members, self.cfg, **kwargs)
        return Detections(found.boxes, found.scores, found.labels,
                          [self.classes[i] for i in found.labels])

    def with_config(self, **changes) -> Detector:
        """The same networks and proposer with some :class:`DetectorConfig` fields changed."""
        try:
            return Detector(self.members, self.proposer, dataclasses.replace(self.cfg, **changes))
        except TypeError as err:
            raise ConfigError(f"detector: {err}") from None
