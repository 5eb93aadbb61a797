"""Small synthetic images and a split folder for the proposal tests (no downloads)."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

# Objects drawn on the scene image, xyxy continuous pixels.
SCENE_BOXES = np.array([[20, 30, 70, 90], [90, 20, 140, 60], [60, 100, 150, 130]], np.float32)


def scene(height: int = 140, width: int = 160, seed: int = 0) -> np.ndarray:
    """uint8 RGB ``[H, W, 3]``: a textured background with three flat-coloured objects."""
    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), (200, 190, 120), np.uint8)
    image = cv2.add(image, rng.integers(0, 25, (height, width, 3), dtype=np.uint8))
    colours = [(200, 30, 30), (30, 160, 40), (40, 60, 200)]
    for (x1, y1, x2, y2), colour in zip(SCENE_BOXES.astype(int), colours):
        image[y1:y2, x1:x2] = colour
    return image


@pytest.fixture
def image() -> np.ndarray:
    return scene()


def write_split(folder, n: int = 2) -> None:
    """A COCO split folder: ``annotations.json`` + ``images/NNN.png`` (scenes with SCENE_BOXES)."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i in range(n):
        cv2.imwrite(str(folder / "images" / f"{i:03d}.png"), scene(seed=i)[:, :, ::-1])
        images.append({"id": i + 1, "file_name": f"{i:03d}.png", "width": 160, "height": 140})
        for b in SCENE_BOXES:
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                         "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])],
                         "area": float((b[2] - b[0]) * (b[3] - b[1]))})
    coco = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "thing"}]}
    (folder / "annotations.json").write_text(json.dumps(coco))


@pytest.fixture
def split(tmp_path):
    folder = tmp_path / "val"
    write_split(folder)
    return folder


@pytest.fixture
def make_scene():
    """The :func:`scene` function (test files cannot import this conftest under importlib mode)."""
    return scene


@pytest.fixture
def scene_boxes() -> np.ndarray:
    return SCENE_BOXES.copy()


@pytest.fixture
def make_split():
    return write_split
