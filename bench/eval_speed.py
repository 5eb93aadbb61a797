"""Speed and memory of our ILSVRC evaluation against faster-coco-eval, on an ILSVRC-val-sized case.

    python tools/benchmark.py eval [--images 20121] [--dets-per-image 100] [--seed 0] [--work DIR]

(the command line is in ``tools/benchmark.py``).

Builds a synthetic case shaped like ILSVRC2013/2014 DET val (20,121 images, 200 classes, about
2.76 objects per image = ~55k objects, ~100 detections per image = ~2M detections), writes it in
the devkit's files (XMLs, image list, ``meta_det.mat``, a 2M-line submission) and, for the same
boxes, COCO JSON (``w = xmax - xmin + 1``). Then, each in a fresh process:

* **ours**: what ``tools/eval.py --protocol ilsvrc`` does: read the XMLs, meta and list, parse the
  submission, evaluate with the devkit's rules;
* **faster-coco-eval**: load the ground-truth and results JSON, evaluate and accumulate with one
  IoU threshold (0.5), one area range and no per-image cap.

Both are timed from the first file read to the final numbers (imports excluded, reported apart);
the process's peak resident memory is ``ru_maxrss``. The case is cached in ``--work`` (default
a folder under the system temp dir) and reused when its parameters match.
"""
from __future__ import annotations

import json
import logging
import multiprocessing
import os
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["CaseSpec", "make_case", "write_case", "run_benchmark", "format_report"]


@dataclass(frozen=True)
class CaseSpec:
    """The synthetic case's shape (defaults: ILSVRC2014 DET val)."""

    images: int = 20121  # DET val images
    classes: int = 200  # DET synsets
    extra_objects: float = 1.76  # objects per image = 1 + Poisson(this): 55.5k on 20,121 images
    dets_per_image: int = 100  # ~2M detections
    seed: int = 0


@dataclass
class Case:
    """Ground truth and detections, devkit 0-based inclusive boxes (float64).

    ``gt_image [G]`` (1-based index), ``gt_label [G]`` (0-based), ``gt_boxes [G, 4]``;
    ``sizes [N, 2]`` (width, height); ``det_image, det_label, det_score [D]``, ``det_boxes [D, 4]``.
    """

    sizes: np.ndarray
    gt_image: np.ndarray
    gt_label: np.ndarray
    gt_boxes: np.ndarray
    det_image: np.ndarray
    det_label: np.ndarray
    det_score: np.ndarray
    det_boxes: np.ndarray


def _random_boxes(rng, sizes: np.ndarray, min_side: float = 6.0) -> np.ndarray:
    """``[M, 4]`` integer inclusive boxes inside images of ``sizes [M, 2]``; log-uniform sides so
    that some objects are under 25 px (the devkit's small-object threshold applies to them)."""
    w = np.exp(rng.uniform(np.log(min_side), np.log(sizes[:, 0])))
    h = np.clip(w * np.exp(rng.normal(0, 0.4, len(w))), min_side, sizes[:, 1])
    x = np.floor(rng.uniform(0, sizes[:, 0] - w + 1))
    y = np.floor(rng.uniform(0, sizes[:, 1] - h + 1))
    return np.stack([x, y, np.minimum(x + np.round(w) - 1, sizes[:, 0] - 1),
                     np.minimum(y + np.round(h) - 1, sizes[:, 1] - 1)], axis=1)


def _jitter(rng, boxes: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Boxes moved by up to ~15% of their size, rounded to 0.1 px, kept inside the image."""
    wh = np.repeat(boxes[:, 2:] - boxes[:, :2] + 1, 2, axis=0).reshape(-1, 4)
    out = np.round(boxes + rng.normal(0, 0.08, boxes.shape) * wh, 1)
    out[:, :2] = np.clip(out[:, :2], 0, sizes - 1)
    out[:, 2:] = np.clip(np.maximum(out[:, 2:], out[:, :2]), 0, sizes - 1)
    return out


def make_case(spec: CaseSpec) -> Case:
    """The synthetic ground truth and detections (vectorised, deterministic in ``spec.seed``).

    Class frequencies are skewed like DET val (a Zipf-like law); per object about four jittered
    detections of its class score high, the rest of each image's detections are random boxes of
    random classes scoring low. Scores are rounded to 1e-4, so equal scores (ties) occur.
    """
    rng = np.random.default_rng(spec.seed)
    sizes = np.stack([np.full(spec.images, 500.0), rng.choice([333.0, 375.0, 500.0], spec.images)], axis=1)
    n_obj = 1 + rng.poisson(spec.extra_objects, spec.images)
    gt_image = np.repeat(np.arange(1, spec.images + 1), n_obj)
    weights = 1.0 / np.arange(1, spec.classes + 1) ** 1.1
    gt_label = rng.permutation(spec.classes)[rng.choice(spec.classes, len(gt_image), p=weights / weights.sum())]
    gt_boxes = _random_boxes(rng, sizes[gt_image - 1])

    n_true = rng.poisson(4, len(gt_image))
    src = np.repeat(np.arange(len(gt_image)), n_true)
    true_boxes = _jitter(rng, gt_boxes[src], sizes[gt_image[src] - 1])
    n_rand = np.maximum(spec.dets_per_image - np.bincount(gt_image[src] - 1, minlength=spec.images), 0)
    rand_image = np.repeat(np.arange(1, spec.images + 1), n_rand)
    rand_boxes = _random_boxes(rng, sizes[rand_image - 1])
    det_image = np.concatenate([gt_image[src], rand_image])
    order = np.argsort(det_image, kind="stable")  # a submission lists images in order
    return Case(
        sizes=sizes, gt_image=gt_image, gt_label=gt_label, gt_boxes=gt_boxes,
        det_image=det_image[order],
        det_label=np.concatenate([gt_label[src], rng.integers(0, spec.classes, len(rand_image))])[order],
        det_score=np.round(np.concatenate([rng.beta(5, 2, len(src)), rng.beta(1, 4, len(rand_image))]), 4)[order],
        det_boxes=np.concatenate([true_boxes, rand_boxes])[order])


# ----------------------------------------------------------------------------- files


def _dataset(case: Case, spec: CaseSpec):
    """The ground truth as a :class:`~core.structures.DetectionDataset` (one image per index)."""
    from core.boxes import ilsvrc_to_xyxy
    from core.structures import DetectionDataset, ImageAnnotations
    bounds = np.searchsorted(case.gt_image, np.arange(1, spec.images + 2))
    xyxy = ilsvrc_to_xyxy(case.gt_boxes)
    images = [ImageAnnotations(i + 1, f"val_{i + 1:08d}.JPEG", int(case.sizes[i, 0]), int(case.sizes[i, 1]),
                               xyxy[bounds[i]:bounds[i + 1]], case.gt_label[bounds[i]:bounds[i + 1]])
              for i in range(spec.images)]
    return DetectionDataset(classes=[f"class_{k + 1:03d}" for k in range(spec.classes)], images=images)


def _coco_json(case: Case, spec: CaseSpec, folder: str) -> None:
    """``gt.json`` and ``results.json``: the same boxes as COCO ``[x, y, w, h]`` with ``w = xmax - xmin + 1``."""
    def xywh(b: np.ndarray) -> list:
        return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2] + 1], axis=1).tolist()

    gt = {"images": [{"id": i + 1, "width": int(w), "height": int(h), "file_name": f"val_{i + 1:08d}.JPEG"}
                     for i, (w, h) in enumerate(case.sizes.tolist())],
          "annotations": [{"id": j + 1, "image_id": int(i), "category_id": int(c) + 1, "bbox": b,
                           "area": b[2] * b[3], "iscrowd": 0}
                          for j, (i, c, b) in enumerate(zip(case.gt_image, case.gt_label, xywh(case.gt_boxes)))],
          "categories": [{"id": k + 1, "name": f"class_{k + 1:03d}"} for k in range(spec.classes)]}
    with open(os.path.join(folder, "gt.json"), "w") as f:
        json.dump(gt, f)
    results = [{"image_id": i, "category_id": c + 1, "bbox": b, "score": s} for i, c, b, s in zip(
        case.det_image.tolist(), case.det_label.tolist(), xywh(case.det_boxes), case.det_score.tolist())]
    with open(os.path.join(folder, "results.json"), "w") as f:
        json.dump(results, f)


def write_case(spec: CaseSpec, folder: str) -> None:
    """Write the case under ``folder`` (``Annotations/``, ``image_list.txt``, ``meta_det.mat``,
    ``submission.txt``, ``gt.json``, ``results.json``, ``spec.json`` last, as the completion mark)."""
    from core.formats.ilsvrc import write_ilsvrc_devkit, write_submission
    case = make_case(spec)
    write_ilsvrc_devkit(_dataset(case, spec), folder)
    write_submission(os.path.join(folder, "submission.txt"), case.det_image, case.det_label + 1,
                     case.det_score, case.det_boxes)
    _coco_json(case, spec, folder)
    with open(os.path.join(folder, "spec.json"), "w") as f:
        json.dump(asdict(spec), f)


def _case_ready(spec: CaseSpec, folder: str) -> bool:
    try:
        with open(os.path.join(folder, "spec.json")) as f:
            return json.load(f) == asdict(spec)
    except (OSError, ValueError):
        return False


# ----------------------------------------------------------------------------- the two runs


def run_ours(folder: str) -> dict:
    """Our ILSVRC evaluation from the files, as ``tools/eval.py`` runs it."""
    from core.formats.ilsvrc import read_ilsvrc, read_meta, read_submission
    from eval.ilsvrc import evaluate_submission
    t0 = time.perf_counter()
    synsets = read_meta(os.path.join(folder, "meta_det.mat"))
    dataset = read_ilsvrc(os.path.join(folder, "Annotations"), os.path.join(folder, "image_list.txt"), synsets)
    t1 = time.perf_counter()
    path = os.path.join(folder, "submission.txt")
    sub = read_submission(path)
    t2 = time.perf_counter()
    result = evaluate_submission(dataset, sub, synsets, path)
    t3 = time.perf_counter()
    return {"seconds": t3 - t0, "read_gt": t1 - t0, "parse_submission": t2 - t1, "evaluate": t3 - t2,
            "mAP": result.mean_ap, "detections": len(sub)}


def run_faster(folder: str) -> dict:
    """faster-coco-eval on the same boxes: IoU 0.5, one area range, no per-image cap."""
    from faster_coco_eval import COCO, COCOeval_faster
    t0 = time.perf_counter()
    gt = COCO(os.path.join(folder, "gt.json"))
    dt = gt.loadRes(os.path.join(folder, "results.json"))
    t1 = time.perf_counter()
    ev = COCOeval_faster(gt, dt, "bbox", print_function=log.debug)
    ev.params.iouThrs = np.array([0.5])
    ev.params.areaRng = [[0, 1e10]]
    ev.params.areaRngLbl = ["all"]
    # no per-image cap: the most detections any image has (a cap of all 2M makes it allocate
    # per-image buffers of that size and fail)
    ev.params.maxDets = [max((len(v) for v in dt.imgToAnns.values()), default=1)]
    ev.evaluate()
    ev.accumulate()
    t2 = time.perf_counter()
    precision = np.asarray(ev.eval["precision"])[0, :, :, 0, -1]  # [R, K]
    valid = (precision > -1).all(axis=0)
    return {"seconds": t2 - t0, "load": t1 - t0, "evaluate": t2 - t1,
            "mAP@0.5 (101-point)": float(precision[:, valid].mean()) if valid.any() else float("nan")}


def _peak_rss_mib() -> float:
    """This process's peak resident memory. ``VmHWM`` belongs to the process image, while
    ``ru_maxrss`` survives ``exec`` and would report the parent's peak (which built the case)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _measure(which: str, folder: str) -> dict:
    """Run one side in this (fresh) process; return its numbers and peak memory."""
    logging.basicConfig(level=logging.WARNING)
    out = (run_ours if which == "ours" else run_faster)(folder)
    out["peak_rss_mib"] = _peak_rss_mib()
    return out


def _spawn(which: str, folder: str) -> dict:
    """:func:`_measure` in a freshly started interpreter, so that imports, memory and caches start
    empty for each side; ``process_seconds`` includes the interpreter start."""
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        out = pool.submit(_measure, which, folder).result()
    out["process_seconds"] = time.perf_counter() - start
    return out


def format_report(ours: dict, theirs: dict) -> str:
    """The two runs side by side, as text."""
    ratio = ours["seconds"] / theirs["seconds"]
    wall_ratio = ours["process_seconds"] / theirs["process_seconds"]
    return "\n".join([
        f"detections            {ours['detections']:,}",
        f"ours                  {ours['seconds']:7.2f} s  (ground truth {ours['read_gt']:.2f} s, submission "
        f"{ours['parse_submission']:.2f} s, evaluation {ours['evaluate']:.2f} s); mAP {ours['mAP']:.4f}",
        f"faster-coco-eval      {theirs['seconds']:7.2f} s  (loading {theirs['load']:.2f} s, evaluation "
        f"{theirs['evaluate']:.2f} s); mAP@0.5 {theirs['mAP@0.5 (101-point)']:.4f} (101-point, COCO rules)",
        f"ratio ours/theirs     {ratio:7.3f}  (target <= 0.25)",
        f"whole processes       ours {ours['process_seconds']:.2f} s, theirs {theirs['process_seconds']:.2f} s "
        f"(with interpreter start and imports): ratio {wall_ratio:.3f}",
        f"peak memory           ours {ours['peak_rss_mib']:.0f} MiB (target < 2048), "
        f"theirs {theirs['peak_rss_mib']:.0f} MiB",
    ])


def run_benchmark(spec: CaseSpec, folder: str | None = None) -> tuple[dict, dict]:
    """Write the case once (reused while ``spec`` matches) and time both sides, each in its own process.

    Returns:
        ``(ours, theirs)``: seconds (total and per part), mAP, peak resident memory (MiB) and
        ``process_seconds`` of each side; :func:`format_report` prints them.
    """
    folder = folder or os.path.join(tempfile.gettempdir(), f"ilsvrc_eval_bench_{spec.images}_{spec.seed}")
    if not _case_ready(spec, folder):
        log.info("writing the case to %s (once; reused while the parameters match)", folder)
        start = time.perf_counter()
        write_case(spec, folder)
        log.info("case written in %.1f s", time.perf_counter() - start)
    return _spawn("ours", folder), _spawn("faster", folder)
