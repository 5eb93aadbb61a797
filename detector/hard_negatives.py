"""Hard negatives: background windows a trained detector scores as objects (R-CNN's hard-negative
mining, after Sung & Poggio's bootstrapping), mined once over the training images and then drawn
for a share of every minibatch's background (``sampler.hard_fraction``).

R-CNN mined its SVMs' negatives; our members are trained end to end with a softmax, so the
mined windows go back into fine-tuning instead: a member is trained, its highest-scoring
background windows on the training split are mined (``tools/train.py --mine``), and members are
trained again seeing those windows ``hard_fraction`` of the time. A window's score is the
ensemble's largest object probability (``1 - p(background)``); it is hard if that is at least
``min_score`` and its IoU with every GT box is below ``max_iou`` (R-CNN's SVM negatives: 0.3), and
each image keeps its ``per_image`` highest. The sampler's other background windows (up to IoU 0.5)
still teach localisation; the mined ones are the confusions: shapes that look like objects.

The file (``.npz``) holds ``names`` (image file names), ``counts`` (windows per image) and
``boxes`` (``[N, 4]`` xyxy float32 in image pixels, image after image), plus ``scores``.
"""
from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from core.config import FRACTION, AT_LEAST_ONE, check_ranges
from core.errors import InputError
from core.io import atomic_path
from core.structures import DetectionDataset
from detector.classifier import RegionClassifier
from detector.config import SamplerConfig
from detector.ensemble import average_probabilities, member_probabilities
from detector.sampler import label_windows


@dataclass(frozen=True)
class MiningConfig:
    min_score: float = 0.3  # a background window is hard if the largest object probability is >= this
    max_iou: float = 0.3  # ... and its IoU with every GT box is below this (R-CNN's SVM negatives)
    per_image: int = 16  # the highest-scoring hard windows kept per image
    batch_regions: int = 256  # regions per forward pass

    def __post_init__(self):
        check_ranges(self, min_score=FRACTION, max_iou=FRACTION, per_image=AT_LEAST_ONE,
                     batch_regions=AT_LEAST_ONE)


def mine_image(pixels: np.ndarray, proposals: np.ndarray, ann, members: list[RegionClassifier],
               sampler_cfg: SamplerConfig, cfg: MiningConfig) -> tuple[np.ndarray, np.ndarray]:
    """The hard background windows of one image: (``[n, 4]`` boxes, ``[n]`` scores), best first."""
    windows = label_windows(proposals, ann, sampler_cfg)
    background = torch.nonzero((windows.labels == 0) & (windows.ious < cfg.max_iou)).flatten()
    if len(background) == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
    boxes = windows.boxes[background]
    probs, _ = member_probabilities(pixels, boxes, members, cfg.batch_regions)
    scores = 1.0 - average_probabilities(probs)[:, 0]
    # stable sort: equal scores keep the proposals' order, so the file is deterministic
    order = torch.sort(scores, descending=True, stable=True).indices[:cfg.per_image]
    order = order[scores[order] >= cfg.min_score]
    return boxes[order].numpy().astype(np.float32), scores[order].numpy().astype(np.float32)


def mine(dataset: DetectionDataset, proposals: dict[int, np.ndarray], load, members: list[RegionClassifier],
         sampler_cfg: SamplerConfig, cfg: MiningConfig) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``file_name -> (boxes, scores)`` over every image of ``dataset`` (``load(index)`` gives its
    uint8 pixels; ``proposals`` are by image id)."""
    out = {}
    empty = np.zeros((0, 4), np.float32)
    for index, ann in enumerate(tqdm(dataset.images, desc="mining hard negatives", unit="image")):
        out[ann.file_name] = mine_image(load(index), proposals.get(ann.image_id, empty), ann, members,
                                        sampler_cfg, cfg)
    return out


def save_negatives(path, mined: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Write the mined windows (see the module doc) atomically."""
    names = list(mined)
    boxes = [mined[n][0] for n in names]
    scores = [mined[n][1] for n in names]
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to the temporary name
            np.savez(f, names=np.array(names, dtype=str), counts=np.array([len(b) for b in boxes], np.int64),
                     boxes=np.concatenate(boxes or [np.zeros((0, 4), np.float32)]).astype(np.float32),
                     scores=np.concatenate(scores or [np.zeros(0, np.float32)]).astype(np.float32))


def load_negatives(path) -> dict[str, np.ndarray]:
    """``file_name -> [n, 4]`` boxes from a file :func:`save_negatives` wrote.

    Raises:
        InputError: missing or unreadable file, or arrays that do not fit together.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such hard-negatives file")
    try:
        blob = np.load(path, allow_pickle=False)
        if not isinstance(blob, np.lib.npyio.NpzFile):
            raise ValueError("one array, not an .npz archive")
        with blob:
            names, counts, boxes = blob["names"], blob["counts"], blob["boxes"]
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as err:
        raise InputError(f"{path}: not a hard-negatives file ({err})") from None
    if (names.ndim != 1 or counts.ndim != 1 or not np.issubdtype(counts.dtype, np.integer)
            or len(counts) != len(names) or (counts < 0).any() or not np.issubdtype(boxes.dtype, np.number)
            or boxes.ndim != 2 or boxes.shape[1] != 4 or int(counts.sum()) != len(boxes)):
        raise InputError(f"{path}: its names, counts and boxes do not fit together")
    if len(set(names.tolist())) != len(names):
        raise InputError(f"{path}: an image is listed twice")
    ends = np.cumsum(counts)
    return {str(n): boxes[e - c:e].astype(np.float32) for n, c, e in zip(names, counts, ends)}
