"""Getting detections and proposals into the evaluators: flat arrays, image matching, tool JSON.

Shape letters: D detections, N images. Boxes are xyxy float (see :mod:`core.boxes`).

* :func:`flatten_detections` turns ``{image_id: Detections}`` into flat arrays in dataset order
  (then each image's own order), the order a devkit file written image by image would have.
* :func:`match_paths` finds the dataset image of a path that a tool wrote (``tools/detect.py``
  and ``tools/propose.py`` record the image path as given on their command line).
* :func:`detect_record` / :func:`propose_record` write one record of those two tools' JSON outputs
  and :func:`read_detect_json` / :func:`read_propose_json` read them: each format is defined here once.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np

from core.errors import InputError
# the formats package's JSON reader (missing/invalid file -> InputError); it should be public there
from core.formats.coco import load_json
from core.structures import DetectionDataset, Detections

__all__ = ["FlatDetections", "flatten_detections", "match_paths", "file_stem", "load_json",
           "detect_record", "propose_record", "read_detect_json", "read_propose_json"]


@dataclass
class FlatDetections:
    """All detections of a dataset, ``[D]`` arrays, in dataset then per-image order.

    Attributes:
        pos: int64 position of the image in ``dataset.images``.
        labels: int64 contiguous labels. scores: float64. boxes: ``[D, 4]`` float64 xyxy.
    """

    pos: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray


def flatten_detections(dataset: DetectionDataset, dets: dict[int, Detections]) -> FlatDetections:
    """Flat arrays of ``dets`` (keyed by ``image_id``) in dataset order.

    Raises:
        InputError: a key that is not an image id of ``dataset``, or a label outside ``0..K-1``.
    """
    ids = {int(img.image_id): i for i, img in enumerate(dataset.images)}
    unknown = [k for k in dets if int(k) not in ids]
    if unknown:
        raise InputError(f"detections for {len(unknown)} image ids the ground truth lacks: {unknown[:5]}")
    parts = sorted((ids[int(k)], d) for k, d in dets.items() if len(d))  # image ids are unique
    if not parts:
        return FlatDetections(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 4)))
    labels = np.concatenate([d.labels for _, d in parts]).astype(np.int64)
    k = len(dataset.classes)
    if labels.min() < 0 or labels.max() >= k:
        raise InputError(f"detection labels must be in 0..{k - 1}, got {labels.min()}..{labels.max()}")
    return FlatDetections(
        pos=np.concatenate([np.full(len(d), p, np.int64) for p, d in parts]),
        labels=labels,
        scores=np.concatenate([d.scores for _, d in parts]).astype(np.float64),
        boxes=np.concatenate([d.boxes for _, d in parts]).astype(np.float64))


def _parts(path: str) -> tuple[str, ...]:
    return PurePosixPath(path.replace(os.sep, "/")).parts


def file_stem(path: str) -> str:
    """The file name without folder and extension (the VOC image id)."""
    return os.path.splitext(os.path.basename(path))[0]


def match_paths(dataset: DetectionDataset, paths: list[str], where: str, by_stem: bool = False) -> list[int]:
    """The dataset position of each path: the image whose ``file_name`` is the longest trailing
    part of the path (``data/val/img/a.png`` matches ``img/a.png`` before ``a.png``).

    With ``by_stem`` only the file stems are compared (VOC image ids; extensions may differ).

    Raises:
        InputError: a path that matches no image, or two images equally well.
    """
    key = (lambda p: (file_stem(p),)) if by_stem else _parts
    index: dict[tuple, list[int]] = {}
    for i, img in enumerate(dataset.images):
        index.setdefault(key(img.file_name), []).append(i)
    keys = [key(p) for p in paths]
    out = []
    for path, parts in zip(paths, keys):
        hit = next((index[parts[s:]] for s in range(len(parts)) if parts[s:] in index), None)
        if hit is None:
            raise InputError(f"{where}: image {path!r} is not in the ground truth")
        if len(hit) > 1:
            raise InputError(f"{where}: image {path!r} matches {len(hit)} ground-truth images")
        out.append(hit[0])
    return out


def _list_of_records(path, data, keys: tuple[str, ...]) -> list[dict]:
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a JSON list of records with {', '.join(keys)}")
    for i, rec in enumerate(data):
        if not isinstance(rec, dict) or any(k not in rec for k in keys):
            raise InputError(f"{path}: entry {i}: expected an object with {', '.join(keys)}")
        if not isinstance(rec["image"], str):
            raise InputError(f"{path}: entry {i}: 'image' must be a string")
    return data


def _box(path, where: str, value) -> list[float]:
    """A finite, non-inverted xyxy box."""
    ok = isinstance(value, list) and len(value) == 4 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    if not ok:
        raise InputError(f"{path}: {where}: box must be 4 finite numbers [x1, y1, x2, y2], got {value!r}")
    if value[2] < value[0] or value[3] < value[1]:
        raise InputError(f"{path}: {where}: inverted box (x2 < x1 or y2 < y1): {value!r}")
    return [float(v) for v in value]


def _detection(path, where: str, det, class_index: dict) -> tuple[list[float], float, int]:
    if not isinstance(det, dict) or "box" not in det or "score" not in det:
        raise InputError(f"{path}: {where}: expected an object with box, score, category")
    score = det["score"]
    if not isinstance(score, (int, float)) or isinstance(score, bool) or not math.isfinite(score):
        raise InputError(f"{path}: {where}: score must be a finite number, got {score!r}")
    name = det.get("category")
    if name not in class_index:
        raise InputError(f"{path}: {where}: unknown category {name!r}")
    return _box(path, where, det["box"]), float(score), class_index[name]


def detect_record(image: str, size: tuple[int, int], dets: Detections, classes: list[str]) -> dict:
    """One record of ``tools/detect.py --json`` (read back by :func:`read_detect_json`).

    Args:
        image: the path as given on the command line. size: the image's (width, height).
        dets: boxes xyxy in that image's pixels, labels indexing ``classes``.
    """
    return {"image": image, "width": int(size[0]), "height": int(size[1]),
            "detections": [{"box": [float(v) for v in box], "score": float(score), "label": int(label),
                            "category": classes[label]}
                           for box, score, label in zip(dets.boxes, dets.scores, dets.labels)]}


def propose_record(image: str, boxes: np.ndarray, seconds: float) -> dict:
    """One record of ``tools/propose.py --json`` (read back by :func:`read_propose_json`).

    Args:
        boxes: ``[R, 4]`` xyxy in the image's pixels, rank order (rounded to 1e-3: float32 noise off).
    """
    rounded = np.round(np.asarray(boxes, np.float64).reshape(-1, 4), 3).tolist()
    return {"image": image, "boxes": rounded, "seconds": round(float(seconds), 6)}


def read_detect_json(path, dataset: DetectionDataset, by_stem: bool = False) -> dict[int, Detections]:
    """Read ``tools/detect.py --json`` output against ``dataset``.

    Records are ``{"image", "width", "height", "detections": [{"box" (xyxy), "score", "label",
    "category"}]}``; the class is the ``category`` name (the model's label numbering may differ
    from the dataset's). Images match by :func:`match_paths`.

    Returns:
        ``{image_id: Detections}`` for the images in the file, detections in file order.
    """
    path = os.fspath(path)
    records = _list_of_records(path, load_json(path), ("image", "detections"))
    positions = match_paths(dataset, [r["image"] for r in records], path, by_stem)
    class_index = {name: k for k, name in enumerate(dataset.classes)}
    out = {}
    for i, (rec, pos) in enumerate(zip(records, positions)):
        if not isinstance(rec["detections"], list):
            raise InputError(f"{path}: entry {i}: 'detections' must be a list")
        rows = [_detection(path, f"entry {i} detection {j}", d, class_index)
                for j, d in enumerate(rec["detections"])]
        image_id = int(dataset.images[pos].image_id)
        if image_id in out:
            raise InputError(f"{path}: entry {i}: image {rec['image']!r} appears twice")
        out[image_id] = Detections(boxes=[r[0] for r in rows], scores=[r[1] for r in rows],
                                   labels=[r[2] for r in rows])
    return out


def read_propose_json(path, dataset: DetectionDataset) -> dict[int, np.ndarray]:
    """Read ``tools/propose.py --json`` output (``[{"image", "boxes", "seconds"}]``).

    Returns:
        ``{image_id: boxes [R, 4] float32 xyxy}`` in rank order, for the images in the file.
    """
    path = os.fspath(path)
    records = _list_of_records(path, load_json(path), ("image", "boxes"))
    positions = match_paths(dataset, [r["image"] for r in records], path)
    out = {}
    for i, (rec, pos) in enumerate(zip(records, positions)):
        if not isinstance(rec["boxes"], list):
            raise InputError(f"{path}: entry {i}: 'boxes' must be a list")
        boxes = [_box(path, f"entry {i} box {j}", b) for j, b in enumerate(rec["boxes"])]
        image_id = int(dataset.images[pos].image_id)
        if image_id in out:
            raise InputError(f"{path}: entry {i}: image {rec['image']!r} appears twice")
        out[image_id] = np.asarray(boxes, np.float32).reshape(-1, 4)
    return out
