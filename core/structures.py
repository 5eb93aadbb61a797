"""The small dataclasses stages exchange.

Shape letters: N boxes in one image, K object classes. Labels are contiguous ``0..K-1`` over
the dataset's ``classes`` list (the detector's background class is internal to it). Boxes are
xyxy float32 in original-image pixels (see :mod:`core.boxes`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def _boxes(a=None) -> np.ndarray:
    return np.zeros((0, 4), np.float32) if a is None else np.asarray(a, np.float32).reshape(-1, 4)


@dataclass
class ImageAnnotations:
    """Ground truth of one image.

    Attributes:
        image_id: the dataset's id (COCO image id, ILSVRC list index, or a running number).
        file_name: path relative to the dataset's image folder.
        width, height: image size in pixels.
        boxes: ``[N, 4]`` xyxy float32.
        labels: ``[N]`` int64 contiguous class labels.
        iscrowd: ``[N]`` bool (COCO crowd regions).
        difficult: ``[N]`` bool (VOC difficult flags).
        area: ``[N]`` float32 (COCO's segment area; box area elsewhere).
    """

    image_id: int
    file_name: str
    width: int
    height: int
    boxes: np.ndarray = field(default_factory=_boxes)
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    iscrowd: np.ndarray | None = None
    difficult: np.ndarray | None = None
    area: np.ndarray | None = None

    def __post_init__(self):
        self.boxes = _boxes(self.boxes)
        self.labels = np.asarray(self.labels, np.int64).reshape(-1)
        n = len(self.boxes)
        if len(self.labels) != n:
            raise ValueError(f"image {self.file_name}: {n} boxes but {len(self.labels)} labels")
        self.iscrowd = np.zeros(n, bool) if self.iscrowd is None else np.asarray(self.iscrowd, bool)
        self.difficult = np.zeros(n, bool) if self.difficult is None else np.asarray(self.difficult, bool)
        if self.area is None:
            wh = self.boxes[:, 2:] - self.boxes[:, :2]
            self.area = (wh[:, 0] * wh[:, 1]).astype(np.float32)
        self.area = np.asarray(self.area, np.float32)


@dataclass
class DetectionDataset:
    """A split: its class list and one :class:`ImageAnnotations` per image, in dataset order.

    ``class_ids`` keeps each class's identifier in the source format (COCO category id, ILSVRC
    WNID, VOC name) so writers can map contiguous labels back.
    """

    classes: list[str]
    images: list[ImageAnnotations]
    class_ids: list = field(default_factory=list)
    image_root: str = ""

    def __post_init__(self):
        if not self.class_ids:
            self.class_ids = list(self.classes)


@dataclass
class Detections:
    """Detections of one image: ``boxes [N, 4]`` xyxy, ``scores [N]``, ``labels [N]`` contiguous."""

    boxes: np.ndarray = field(default_factory=_boxes)
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __post_init__(self):
        self.boxes = _boxes(self.boxes)
        self.scores = np.asarray(self.scores, np.float32).reshape(-1)
        self.labels = np.asarray(self.labels, np.int64).reshape(-1)

    def __len__(self) -> int:
        return len(self.scores)
