"""Proposal benchmark: count, coverage, recall@0.7, ABO and speed of every method on one split.

    python tools/benchmark.py proposals [--data DIR | --images N --seed S] [--json FILE]

Without ``--data`` the command generates a synthetic val split (:mod:`bench.synthetic`). For each of
``ss``, ``ss2x``, ``multibox``, ``merged`` (the last two skipped, with a note, when there are no
MultiBox weights) and for OpenCV's ``switchToSelectiveSearchFast()`` on the same (equally capped)
images it reports proposals per image, coverage (ground-truth recall at IoU >= 0.5, GLN's
"coverage"), recall at IoU >= 0.7, ABO (mean over ground-truth boxes of the best IoU) and seconds
per image (proposal computation only), as a table and optionally JSON.
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass

import cv2
import numpy as np
from tqdm import tqdm

from core.boxes import cv_rect_to_xyxy, scale_boxes
from core.errors import InputError
from core.image import load_image
from core.structures import DetectionDataset
from eval.recall import proposal_recall
from proposals.build import ProposalsConfig, build_proposer, multibox_weights_path
from proposals.selective_search import as_rgb, working_scale

log = logging.getLogger(__name__)


@dataclass
class MethodResult:
    """One row of the table."""

    method: str
    proposals_per_image: float
    coverage: float  # recall at IoU >= 0.5
    recall_07: float  # recall at IoU >= 0.7
    abo: float  # mean best IoU over ground-truth boxes
    seconds_per_image: float
    note: str = ""


# ---------------------------------------------------------------- measures

def recall_row(dataset: DetectionDataset, proposals: dict[int, np.ndarray]) -> tuple[float, float, float]:
    """(coverage at 0.5, recall at 0.7, ABO) over the non-crowd objects, as :mod:`eval.recall` measures them."""
    report = proposal_recall(dataset, proposals)
    return report.coverage, report.recall_07, report.abo


def _capped(rgb: np.ndarray, cfg) -> tuple[np.ndarray, float, float]:
    """The image as selective search processes it (``cfg.max_side``), and the factors back."""
    h, w = rgb.shape[:2]
    scale = working_scale(h, w, cfg.max_side, cfg.min_box_size)
    if scale >= 1.0:
        return rgb, 1.0, 1.0
    small = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return small, w / small.shape[1], h / small.shape[0]


def opencv_fast(rgb: np.ndarray, cfg) -> np.ndarray:
    """OpenCV's ``switchToSelectiveSearchFast()`` boxes ``[R, 4]`` xyxy in ``rgb``'s pixels.

    Run on the image capped as our selective search caps it (``cfg.max_side``), so both see the same
    pixels; the order is OpenCV's own unseeded one. An OpenCV failure (it has crashed on elongated
    images) counts as no boxes.
    """
    small, sx, sy = _capped(rgb, cfg)
    ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    ss.setBaseImage(np.ascontiguousarray(small[:, :, ::-1]))
    ss.switchToSelectiveSearchFast()
    try:
        rects = ss.process()
    except cv2.error as err:
        log.warning("OpenCV selective search failed on a %dx%d image: %s", rgb.shape[1], rgb.shape[0], err)
        return np.zeros((0, 4), np.float32)
    return scale_boxes(cv_rect_to_xyxy(rects), sx, sy)


def run_method(name: str, propose, images: list[np.ndarray], dataset: DetectionDataset) -> MethodResult:
    """Time ``propose(image) -> [R, 4] boxes`` on every image and score it."""
    boxes, seconds = {}, []
    for ann, image in zip(tqdm(dataset.images, desc=name, unit="img"), images):
        start = time.perf_counter()
        out = propose(image)
        seconds.append(time.perf_counter() - start)
        boxes[ann.image_id] = out
    coverage, recall_07, abo = recall_row(dataset, boxes)
    count = float(np.mean([len(b) for b in boxes.values()])) if boxes else 0.0
    return MethodResult(name, count, coverage, recall_07, abo, float(np.mean(seconds)) if seconds else 0.0)


# ---------------------------------------------------------------- the benchmark

def _proposer_or_note(method: str, cfg: ProposalsConfig, multibox_weights: str | None,
                      device: str) -> tuple[object, str]:
    """The proposer, or None and why it was skipped (no MultiBox weights)."""
    if method in ("multibox", "merged"):
        try:
            multibox_weights_path(multibox_weights)
        except InputError:
            return None, "skipped: no MultiBox weights (--multibox-weights FILE)"
    return build_proposer(method, cfg, multibox_weights, device), ""


def benchmark(dataset: DetectionDataset, methods: list[str], cfg: ProposalsConfig,
              multibox_weights: str | None = None, device: str = "cpu",
              opencv: bool = True) -> list[MethodResult]:
    """Every method (and OpenCV's fast mode if ``opencv``) on every image of ``dataset``.

    Args:
        methods: names from :data:`proposals.build.METHODS`.
        multibox_weights: MultiBox checkpoint (None: the bundled one); without one, ``multibox``
            and ``merged`` are skipped with a note.
    """
    paths = [os.path.join(dataset.image_root, a.file_name) for a in dataset.images]
    images = [as_rgb(load_image(p).pixels) for p in paths]
    results = []
    for method in methods:
        proposer, note = _proposer_or_note(method, cfg, multibox_weights, device)
        if proposer is None:
            results.append(MethodResult(method, float("nan"), float("nan"), float("nan"), float("nan"),
                                        float("nan"), note))
            continue
        results.append(run_method(method, lambda im: proposer(im).boxes, images, dataset))
    if opencv:
        result = run_method("opencv_fast", lambda im: opencv_fast(im, cfg.ss), images, dataset)
        result.note = "OpenCV switchToSelectiveSearchFast(): k 150/300/450, min_size 100, 12 hierarchies"
        results.append(result)
    return results


def format_table(results: list[MethodResult], n_images: int) -> str:
    """The results as a fixed-width text table."""
    lines = [f"{n_images} images",
             f"{'method':<12}{'props/img':>10}{'cover@.5':>10}{'rec@.7':>8}{'ABO':>7}{'s/img':>8}  note",
             "-" * 62]
    for r in results:
        lines.append(f"{r.method:<12}{r.proposals_per_image:>10.1f}{r.coverage:>10.3f}{r.recall_07:>8.3f}"
                     f"{r.abo:>7.3f}{r.seconds_per_image:>8.3f}  {r.note}")
    return "\n".join(lines)


def results_json(results: list[MethodResult], dataset: DetectionDataset, folder: str) -> dict:
    """The results as strict JSON (NaN as null)."""
    rows = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(r).items()}
            for r in results]
    return {"images": len(dataset.images), "data": str(folder), "results": rows}
