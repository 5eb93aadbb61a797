"""The error analysis from files to a folder: what ``tools/analyze.py`` runs.

    errors.json   {"AP50", "dAP": {cls, loc, both, dupe, bkg, miss}, "special": {FalsePos, FalseNeg},
                   "per_class": {name: {AP50, positives, dAP, errors}}, "false_positives": {...},
                   "confusion": {...} (with a classifier), "pictures": {...}, "source", "config"}
    dap.png, pr_<n>.png, hoiem_groups.png, hoiem_<n>.png, confusion.png, gallery_<k>_<class>.png
    report.html   one static page with all of it

Ground truth and detections come as COCO files (instances JSON and results list, or
``tools/detect.py`` JSON) or in the ILSVRC devkit's form (XMLs, image list, meta, submission).
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

import numpy as np

from core.errors import InputError
from core.io import write_json
from core.structures import DetectionDataset
from eval.errors import ErrorConfig, ErrorInput, TideErrors, error_input, tide_analysis
from eval.error_plots import PlotConfig
from eval.gallery import GalleryConfig
from eval.hoiem import FP_TYPES, HoiemResult, SimilarConfig, class_groups, hoiem_analysis

__all__ = ["AnalysisConfig", "AnalysisData", "coco_data", "ilsvrc_data", "analyze"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnalysisConfig:
    """``configs/analysis.yaml``: the thresholds, the similar classes, the galleries."""

    errors: ErrorConfig = field(default_factory=ErrorConfig)
    similar: SimilarConfig = field(default_factory=SimilarConfig)
    gallery: GalleryConfig = field(default_factory=GalleryConfig)
    plots: PlotConfig = field(default_factory=PlotConfig)


@dataclass
class AnalysisData:
    """The inputs of one analysis: ``dataset`` (names, images, ``image_root``), the flat arrays,
    the COCO supercategory of each class (or None) and a line naming the files."""

    dataset: DetectionDataset
    inp: ErrorInput
    supercategories: list[str] | None
    source: str


def _supercategories(gt_path: str, dataset: DetectionDataset) -> list[str] | None:
    """The ``supercategory`` of each class from a COCO file, None if any category lacks one."""
    from core.formats.coco import load_json
    cats = {c.get("id"): c.get("supercategory") for c in load_json(gt_path).get("categories", [])}
    found = [cats.get(i) for i in dataset.class_ids]
    return [str(s) for s in found] if all(isinstance(s, str) for s in found) else None


def coco_data(gt_path: str, dets_path: str, image_root: str = "", max_images: int = 0) -> AnalysisData:
    """COCO ground truth and a results list (or ``tools/detect.py`` JSON).

    ``max_images`` keeps the first N images of the ground truth (as ``tools/test.py
    --max-images`` does); detections on the others are dropped.
    """
    from core.formats.coco import load_json, read_coco, read_coco_results
    from eval.inputs import read_detect_json
    dataset = read_coco(gt_path, image_root=image_root)
    data = load_json(dets_path)
    if isinstance(data, list) and data and isinstance(data[0], dict) and "detections" in data[0]:
        dets = read_detect_json(dets_path, dataset)
    else:
        dets = read_coco_results(dets_path, dataset)
    if max_images:
        dataset.images = dataset.images[:max_images]
        kept = {int(img.image_id) for img in dataset.images}
        dets = {k: d for k, d in dets.items() if int(k) in kept}
    return AnalysisData(dataset, error_input(dataset, dets), _supercategories(gt_path, dataset),
                        f"{gt_path} + {dets_path}")


def _list_positions(dataset: DetectionDataset, image_index: np.ndarray) -> np.ndarray:
    """``[D]`` position in ``dataset.images`` of each devkit image index, -1 if not listed."""
    ids = np.array([int(img.image_id) for img in dataset.images], np.int64)
    order = np.argsort(ids, kind="stable")
    at = np.minimum(np.searchsorted(ids[order], image_index), max(len(ids) - 1, 0))
    found = ids[order][at] == image_index if len(ids) else np.zeros(len(image_index), bool)
    return np.where(found, order[at] if len(ids) else -1, -1)


def _drop_blacklisted(inp: ErrorInput, dataset: DetectionDataset, pairs: list[tuple[int, str]]) -> ErrorInput:
    """Remove the detections and objects of blacklisted (image index, WNID) pairs (neither true
    nor false positives, not positives: the devkit's rule)."""
    wnid = {str(w): k for k, w in enumerate(dataset.class_ids)}
    pos = _list_positions(dataset, np.array([int(p[0]) for p in pairs], np.int64))
    k = len(dataset.classes)
    keys = np.array([p * k + wnid.get(w, -1) for p, (_, w) in zip(pos, pairs) if p >= 0 and w in wnid], np.int64)
    d = ~np.isin(inp.det_image * k + inp.det_label, keys)
    g = ~np.isin(inp.gt_image * k + inp.gt_label, keys)
    return ErrorInput(inp.classes, inp.n_images, inp.gt_image[g], inp.gt_label[g], inp.gt_boxes[g], inp.gt_crowd[g],
                      inp.det_image[d], inp.det_label[d], inp.det_score[d], inp.det_boxes[d])


def ilsvrc_data(gt_dir: str, image_list: str, meta: str, dets_path: str, blacklist: str | None = None,
                image_root: str = "", max_images: int = 0) -> AnalysisData:
    """The devkit's files: XML folder, image list, ``meta_det.mat`` (or text), submission.

    Boxes become continuous xyxy (``xmax + 1``), so COCO's IoU equals the devkit's ``+1`` IoU;
    TIDE's fixed 0.5 threshold replaces the devkit's small-object thresholds. Detections on
    unlisted images are ignored with a warning, as :mod:`eval.ilsvrc` does.
    """
    from core.formats.ilsvrc import read_blacklist, read_ilsvrc, read_meta, read_submission
    from eval.ilsvrc import det_id_labels
    synsets = read_meta(meta)
    dataset = read_ilsvrc(gt_dir, image_list, synsets, image_root=image_root)
    if max_images:
        dataset.images = dataset.images[:max_images]
    sub = read_submission(dets_path)
    labels = det_id_labels(sub.det_id, sub.line, synsets, dataset, dets_path)
    pos = _list_positions(dataset, sub.image_index)
    if (pos < 0).any():
        log.warning("ignored %d detections on image indices not in the image list (or beyond max_images)",
                    int((pos < 0).sum()))
    keep = np.flatnonzero(pos >= 0)
    keep = keep[np.argsort(sub.line[keep], kind="stable")]  # file order breaks ties
    boxes = sub.boxes[keep].astype(np.float64)
    boxes[:, 2:] += 1
    gt = error_input(dataset, {})
    inp = ErrorInput(gt.classes, gt.n_images, gt.gt_image, gt.gt_label, gt.gt_boxes, gt.gt_crowd,
                     pos[keep], labels[keep], sub.score[keep].astype(np.float64), boxes)
    if blacklist:
        inp = _drop_blacklisted(inp, dataset, read_blacklist(blacklist))
    return AnalysisData(dataset, inp, None, f"{gt_dir} + {dets_path}")


def _hoiem_json(result: HoiemResult, classes: list[str], groups_text: str) -> dict:
    counts = result.counts()
    return {"types": list(FP_TYPES), "groups_text": groups_text,
            "groups": {name: [classes[k] for k in np.flatnonzero(result.group == g)]
                       for g, name in enumerate(result.group_names)},
            "per_class": {c: dict(zip(FP_TYPES, counts[k].tolist())) for k, c in enumerate(classes)},
            "total": dict(zip(FP_TYPES, counts.sum(axis=0).tolist()))}


def _groups_text(result: HoiemResult) -> str:
    multi = [n for g, n in enumerate(result.group_names) if (result.group == g).sum() > 1]
    return ", ".join(multi) if multi else "none (no class is similar to another)"


def analyze(data: AnalysisData, out_dir: str, cfg: AnalysisConfig = AnalysisConfig(),
            confusion=None, galleries: bool = True) -> dict:
    """Run the analysis and write ``out_dir`` (see the module notes); returns errors.json's content.

    Args:
        confusion: a :class:`~eval.confusion.ConfusionResult` (from running a classifier on the
            ground-truth boxes), or None.
        galleries: draw the galleries (needs the images under ``data.dataset.image_root``).
    """
    from eval import error_plots
    from eval.html_report import write_report
    os.makedirs(out_dir, exist_ok=True)
    start = time.perf_counter()
    tide = tide_analysis(data.inp, cfg.errors)
    ds = data.dataset
    group, names = class_groups(cfg.similar, list(ds.classes), list(ds.class_ids), data.supercategories)
    hoiem = hoiem_analysis(tide.matching, data.inp.gt_label, tide.npos, group, names, cfg.errors)
    log.info("TIDE and the false-positive types in %.1f s", time.perf_counter() - start)
    out = tide.to_json()
    out["false_positives"] = _hoiem_json(hoiem, list(ds.classes), _groups_text(hoiem))
    shown = error_plots.worst_classes(tide.class_ap, cfg.plots.max_classes)
    pictures = {"dap": error_plots.plot_dap(tide, out_dir),
                "pr": error_plots.plot_pr_curves(tide, out_dir, cfg.plots.max_classes),
                "hoiem": error_plots.plot_hoiem(hoiem, list(ds.classes), out_dir, shown)}
    if len(shown) < len(ds.classes):
        out["plotted_classes"] = [ds.classes[c] for c in shown]
    if confusion is not None:
        out["confusion"] = confusion.to_json()
        pictures["confusion"] = error_plots.plot_confusion(confusion.matrix, confusion.classes,
                                                           confusion.columns, out_dir)
    pictures["galleries"] = _galleries(data, tide, out_dir, cfg) if galleries else {}
    out.update(pictures=pictures, source=data.source, config=_config_dict(cfg),
               counts={"images": data.inp.n_images, "objects": int((~data.inp.gt_crowd).sum()),
                       "detections": int(len(data.inp.det_score)), "kept": int(len(tide.matching.order))})
    write_json(os.path.join(out_dir, "errors.json"), out, indent=1)
    write_report(os.path.join(out_dir, "report.html"), out, pictures, "Where the detector fails")
    return out


def _galleries(data: AnalysisData, tide: TideErrors, out_dir: str, cfg: AnalysisConfig) -> dict:
    from eval.gallery import images_available, write_galleries
    if not images_available(data.dataset):
        log.warning("no galleries: the images are not under %r (give --images DIR)", data.dataset.image_root)
        return {}
    return write_galleries(tide.matching, data.dataset, data.inp.gt_image, data.inp.gt_boxes, data.inp.gt_label,
                           out_dir, cfg.gallery)


def _config_dict(cfg: AnalysisConfig) -> dict:
    from core.config import config_to_dict
    return config_to_dict(cfg)


def check_output_dir(path: str) -> None:
    """An output folder that exists as a file is a user error."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise InputError(f"{path}: exists and is not a folder")
