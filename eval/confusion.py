"""What a region classifier makes of the ground-truth boxes themselves: a confusion matrix.

Shape letters: K dataset classes, R boxes of one image, C model classes.

Each object's own box (not a proposal) goes through the classifier; the class with the highest
probability, background included, is what the object "is given". Row k of the matrix counts the
objects of class k by what they were given: a perfect classifier on perfect boxes is diagonal,
so what is off the diagonal is classification error that no proposal or localisation fix removes.

The classifier is passed in as a function, so this module needs no detector: ``tools/analyze.py``
builds it from the ensemble (``detector.ensemble``).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np
from tqdm import tqdm

from core.image import load_image
from core.structures import DetectionDataset

__all__ = ["Classify", "ConfusionResult", "gt_confusion", "BACKGROUND"]

log = logging.getLogger(__name__)

BACKGROUND = "background"
# classify(image uint8 [H, W, 3] RGB, boxes [R, 4] float32 xyxy) -> probabilities [R, C + 1],
# column 0 = background, column j = model class j - 1
Classify = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass
class ConfusionResult:
    """Counts ``matrix [K, K + 1]`` (columns: the dataset's classes, then background), and
    ``given [G']`` the column each object was given (``objects [G']`` its flat index)."""

    classes: list[str]
    matrix: np.ndarray
    objects: np.ndarray
    given: np.ndarray

    @property
    def columns(self) -> list[str]:
        return list(self.classes) + [BACKGROUND]

    def accuracy(self) -> np.ndarray:
        """``[K]`` fraction of each class's objects given their own class (NaN without objects)."""
        n = self.matrix.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, np.diag(self.matrix[:, :len(self.classes)]) / n, np.nan)

    def to_json(self) -> dict:
        return {"columns": self.columns,
                "rows": {c: self.matrix[k].astype(int).tolist() for k, c in enumerate(self.classes)},
                "accuracy": {c: (None if np.isnan(a) else float(a)) for c, a in zip(self.classes, self.accuracy())}}


def _column_map(model_classes: list[str], classes: list[str]) -> np.ndarray:
    """``[C + 1]`` matrix column of each probability column; model classes the dataset lacks and
    background go to the background column."""
    index = {c: k for k, c in enumerate(classes)}
    return np.array([len(classes)] + [index.get(c, len(classes)) for c in model_classes], np.int64)


def gt_confusion(dataset: DetectionDataset, classify: Classify, model_classes: list[str],
                 max_images: int = 0) -> ConfusionResult:
    """Classify every non-crowd object's own box; count what each class is given.

    Args:
        dataset: ground truth with ``image_root`` pointing at its images.
        classify: see :data:`Classify`. model_classes: its C class names.
        max_images: only the first N images (0 = all).
    """
    k = len(dataset.classes)
    cols = _column_map(model_classes, list(dataset.classes))
    matrix = np.zeros((k, k + 1), np.int64)
    objects, given = [], []
    start = 0
    images = dataset.images[:max_images] if max_images else dataset.images
    for img in tqdm(images, desc="confusion", unit="img"):
        keep = np.flatnonzero(~img.iscrowd)
        if len(keep):
            pixels = load_image(os.path.join(dataset.image_root, img.file_name)).pixels
            probs = np.asarray(classify(pixels, img.boxes[keep].astype(np.float32)))
            col = cols[probs.argmax(axis=1)]
            np.add.at(matrix, (img.labels[keep], col), 1)
            objects.append(start + keep)
            given.append(col)
        start += len(img.labels)
    cat = (lambda parts: np.concatenate(parts) if parts else np.zeros(0, np.int64))
    return ConfusionResult(list(dataset.classes), matrix, cat(objects), cat(given))
