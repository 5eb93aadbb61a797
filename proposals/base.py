"""The proposal contract every proposer keeps.

A proposer maps one image, uint8 ``[H, W, 3]`` RGB, to :class:`Proposals`: ``R`` class-agnostic
boxes, xyxy float32 in the original image's pixels (see :mod:`core.boxes`), best-ranked first,
each tagged with the source that proposed it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

SOURCE_SS = 0  # selective search
SOURCE_MULTIBOX = 1  # MultiBox
SOURCE_NAMES = {SOURCE_SS: "selective_search", SOURCE_MULTIBOX: "multibox"}


def _empty_boxes() -> np.ndarray:
    return np.zeros((0, 4), np.float32)


@dataclass
class Proposals:
    """Ranked proposals of one image.

    Attributes:
        boxes: ``[R, 4]`` xyxy float32, original image pixels, best-ranked first.
        sources: ``[R]`` uint8, :data:`SOURCE_SS` or :data:`SOURCE_MULTIBOX` per box.
    """

    boxes: np.ndarray = field(default_factory=_empty_boxes)
    sources: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))

    def __post_init__(self):
        self.boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        self.sources = np.asarray(self.sources, np.uint8).reshape(-1)
        if len(self.sources) != len(self.boxes):
            raise ValueError(f"{len(self.boxes)} boxes but {len(self.sources)} sources")

    def __len__(self) -> int:
        return len(self.boxes)

    def top(self, n: int | None) -> "Proposals":
        """The ``n`` best-ranked proposals (all of them when ``n`` is None)."""
        return self if n is None else Proposals(self.boxes[:n], self.sources[:n])


class Proposer(Protocol):
    """Anything that turns an image into ranked proposals."""

    def __call__(self, image: np.ndarray) -> Proposals:
        """uint8 ``[H, W, 3]`` RGB → :class:`Proposals` in that image's pixels."""
        ...
