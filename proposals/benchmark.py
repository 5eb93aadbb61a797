"""Proposal benchmark: count, coverage, recall@0.7, ABO and speed of every method on one split.

    python tools/benchmark.py proposals [--data DIR | --images N --seed S] [--json FILE]

Without ``--data`` it generates a synthetic val split with ``tools/make_synthetic.py``. For each of
``ss``, ``ss2x``, ``multibox``, ``merged`` (the last two skipped, with a note, when there are no
MultiBox weights) and for OpenCV's ``switchToSelectiveSearchFast()`` on the same (equally capped)
images it reports proposals per image, coverage (ground-truth recall at IoU >= 0.5, GLN's
"coverage"), recall at IoU >= 0.7, ABO (mean over ground-truth boxes of the best IoU) and seconds
per image (proposal computation only), as a table and optionally JSON.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from core.boxes import as_boxes, box_iou, cv_rect_to_xyxy, scale_boxes
from core.config import add_config_args, load_config
from core.errors import InputError
from core.formats.coco import read_split
from core.image import load_image
from core.io import write_json
from core.structures import DetectionDataset
from proposals.build import METHODS, ProposalsConfig, build_proposer, multibox_weights_path
from proposals.selective_search import as_rgb, working_scale

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]


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


# ---------------------------------------------------------------- data

def make_synthetic(out: Path, images: int, seed: int) -> Path:
    """Generate a synthetic val split with ``tools/make_synthetic.py``; return its folder."""
    tool = REPO / "tools" / "make_synthetic.py"
    if not tool.is_file():
        raise InputError(f"{tool}: not found; pass --data DIR with an existing split")
    cmd = [sys.executable, str(tool), "--out", str(out), "--images", str(images), "--seed", str(seed),
           "--split", "val"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return out


# ---------------------------------------------------------------- measures

def best_ious(gt: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Best IoU of every ground-truth box ``[G, 4]`` with any proposal ``[R, 4]``; ``[G]``."""
    if len(gt) == 0:
        return np.zeros(0)
    if len(boxes) == 0:
        return np.zeros(len(gt))
    return box_iou(as_boxes(gt), as_boxes(boxes)).max(dim=1).values.double().numpy()


def recall_stats(dataset: DetectionDataset, proposals: dict[int, np.ndarray]) -> tuple[float, float, float]:
    """(coverage at 0.5, recall at 0.7, ABO) over all non-crowd ground-truth boxes."""
    best = [best_ious(a.boxes[~a.iscrowd], proposals[a.image_id]) for a in dataset.images]
    best = np.concatenate(best) if best else np.zeros(0)
    if len(best) == 0:
        return float("nan"), float("nan"), float("nan")
    return float((best >= 0.5).mean()), float((best >= 0.7).mean()), float(best.mean())


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
    coverage, recall_07, abo = recall_stats(dataset, boxes)
    count = float(np.mean([len(b) for b in boxes.values()])) if boxes else 0.0
    return MethodResult(name, count, coverage, recall_07, abo, float(np.mean(seconds)) if seconds else 0.0)


# ---------------------------------------------------------------- command line

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmark.py proposals", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", metavar="DIR", help="split folder (annotations.json + images); "
                        "default: generate a synthetic val split")
    parser.add_argument("--images", type=int, help="images to generate (default 20); with --data, "
                        "only its first N images (default all)")
    parser.add_argument("--seed", type=int, default=0, help="synthetic data seed (default 0)")
    parser.add_argument("--work", metavar="DIR", help="where to generate the split (default: a temp folder)")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of "
                        + ",".join(METHODS))
    parser.add_argument("--no-opencv", action="store_true", help="skip OpenCV's fast mode")
    parser.add_argument("--multibox-weights", metavar="FILE", help="default: assets/model/multibox.pt")
    parser.add_argument("--device", default="cpu", help="torch device for MultiBox")
    parser.add_argument("--json", metavar="FILE", help="also write the results here")
    add_config_args(parser)
    return parser.parse_args(argv)


def _proposer_or_note(method: str, cfg: ProposalsConfig, args) -> tuple[object, str]:
    """The proposer, or None and why it was skipped (no MultiBox weights)."""
    if method in ("multibox", "merged"):
        try:
            multibox_weights_path(args.multibox_weights)
        except InputError:
            return None, "skipped: no MultiBox weights (--multibox-weights FILE)"
    return build_proposer(method, cfg, args.multibox_weights, args.device), ""


def benchmark(dataset: DetectionDataset, methods: list[str], cfg: ProposalsConfig, args) -> list[MethodResult]:
    """Every method (and OpenCV's fast mode unless ``args.no_opencv``) on every image of ``dataset``."""
    paths = [os.path.join(dataset.image_root, a.file_name) for a in dataset.images]
    images = [as_rgb(load_image(p).pixels) for p in paths]
    results = []
    for method in methods:
        proposer, note = _proposer_or_note(method, cfg, args)
        if proposer is None:
            results.append(MethodResult(method, float("nan"), float("nan"), float("nan"), float("nan"),
                                        float("nan"), note))
            continue
        results.append(run_method(method, lambda im: proposer(im).boxes, images, dataset))
    if not args.no_opencv:
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


def main(argv=None) -> int:
    """Run the benchmark; print the table; write JSON with ``--json``."""
    args = parse_args(argv)
    cfg = load_config(ProposalsConfig, args.config, args.overrides)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise InputError(f"--methods: unknown {unknown[0]!r} (known: {', '.join(METHODS)})")
    cv2.setNumThreads(1)  # the same single core for OpenCV's fast mode and ours
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="proposals-bench-") as tmp:
        folder = args.data or make_synthetic(Path(args.work or tmp) / "val", args.images or 20, args.seed)
        dataset = read_split(folder)
        if args.data and args.images:
            dataset.images = dataset.images[:args.images]
        results = benchmark(dataset, methods, cfg, args)
    print(format_table(results, len(dataset.images)))
    if args.json:
        rows = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(r).items()}
                for r in results]  # strict JSON: no NaN
        write_json(args.json, {"images": len(dataset.images), "data": str(folder), "results": rows}, indent=2)
    return 0
