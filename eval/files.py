"""Evaluation from files in their real formats: what ``tools/eval.py`` runs, one function per protocol.

* COCO: an instances JSON and a results list (or ``tools/detect.py`` JSON, images matched by file
  name). The engine gets the files' own numbers, not our float32 copies.
* ILSVRC: the devkit's XML folder, image list, ``meta_det.mat`` (or its text form), submission
  and optional blacklist.
* VOC: ``Annotations``, an ``ImageSets/Main`` list and either the devkit's per-class result files
  (or a folder of them) or ``tools/detect.py`` JSON (images matched by file stem).
* Proposal recall: a COCO instances JSON and ``tools/propose.py`` JSON (images matched by file name).

Malformed files raise :class:`core.errors.InputError` naming the file and line or element.
"""
from __future__ import annotations

import glob
import os

import numpy as np

from core.errors import InputError
from core.structures import DetectionDataset, Detections
from eval.api import class_report, coco_report
from eval.inputs import load_json, match_paths, read_detect_json, read_propose_json
from eval.recall import RecallConfig, RecallReport, proposal_recall
from eval.report import EvalReport

__all__ = ["evaluate_coco_files", "evaluate_ilsvrc_files", "evaluate_voc_files", "recall_files"]


def _is_detect_json(data) -> bool:
    """Whether a loaded JSON is ``tools/detect.py`` output (records with ``detections``)."""
    return isinstance(data, list) and bool(data) and isinstance(data[0], dict) and "detections" in data[0]


def evaluate_coco_files(gt_path: str, dets_path: str, engine: str = "pycocotools") -> EvalReport:
    """The twelve COCO numbers of a results file (or ``tools/detect.py`` JSON) against ``gt_path``.

    Raises:
        InputError: malformed files; results on image or category ids the ground truth lacks.
    """
    from core.formats.coco import read_coco, read_coco_results
    from eval.coco import detections_to_results, evaluate_coco
    dataset = read_coco(gt_path)  # validates the ground truth
    results = load_json(dets_path)
    if _is_detect_json(results):
        results = detections_to_results(dataset, read_detect_json(dets_path, dataset))
    else:
        read_coco_results(dets_path, dataset)  # validates every result (ids, fields, boxes)
    result = evaluate_coco(load_json(gt_path), results, engine=engine, where=dets_path)
    names = dict(zip([int(c) for c in dataset.class_ids], dataset.classes))
    return coco_report(result, [names[c] for c in result.category_ids])


def evaluate_ilsvrc_files(gt_dir: str, image_list: str, meta: str, dets_path: str,
                          blacklist: str | None = None) -> EvalReport:
    """The devkit's evaluation of a submission file (see :mod:`eval.ilsvrc` for the rules)."""
    from core.formats.ilsvrc import read_blacklist, read_ilsvrc, read_meta, read_submission
    from eval.ilsvrc import evaluate_submission
    synsets = read_meta(meta)
    dataset = read_ilsvrc(gt_dir, image_list, synsets)
    pairs = read_blacklist(blacklist) if blacklist else None
    result = evaluate_submission(dataset, read_submission(dets_path), synsets, dets_path, pairs,
                                 blacklist or "blacklist")
    return class_report("ilsvrc", result)


def _voc_order(dataset: DetectionDataset, classes: list[str]) -> DetectionDataset:
    """``dataset`` with labels renumbered to ``classes`` (a superset of its class names)."""
    new = np.array([classes.index(name) for name in dataset.classes], np.int64)
    for img in dataset.images:
        img.labels = new[img.labels] if len(img.labels) else img.labels
    dataset.classes = list(classes)
    dataset.class_ids = list(classes)
    return dataset


def _result_files(dets: list[str]) -> list[str]:
    """The per-class result files: the paths given, a folder's ``*.txt`` files expanded."""
    paths = []
    for path in dets:
        if os.path.isdir(path):
            found = sorted(glob.glob(os.path.join(path, "*.txt")))
            if not found:
                raise InputError(f"{path}: no *.txt result files in this folder")
            paths += found
        elif not os.path.exists(path):
            raise InputError(f"{path}: file not found")
        else:
            paths.append(path)
    return paths


def _voc_dets(dataset: DetectionDataset, dets: list[str]) -> dict[int, Detections]:
    """Detections keyed by image id from per-class files or one ``tools/detect.py`` JSON."""
    from core.formats.voc import read_voc_results
    if len(dets) == 1 and dets[0].lower().endswith(".json"):
        return read_detect_json(dets[0], dataset, by_stem=True)
    by_stem = read_voc_results(_result_files(dets), dataset.classes)
    positions = match_paths(dataset, list(by_stem), "the result files", by_stem=True)
    return {int(dataset.images[p].image_id): d for p, d in zip(positions, by_stem.values())}


def evaluate_voc_files(gt_dir: str, image_list: str, dets: list[str], use_07: bool,
                       classes: list[str] | None = None) -> EvalReport:
    """The VOC devkit's evaluation (2007 11-point when ``use_07``, else all-point).

    Args:
        dets: per-class result files (``..._<class>.txt``), folders of them, or one
            ``tools/detect.py`` JSON file.
        classes: class names in order; default the 20 VOC classes when every name in the
            annotations is one of them, else the names found, sorted.
    """
    from core.formats.voc import VOC_CLASSES, read_voc
    from eval.voc import evaluate_voc_detections
    dataset = read_voc(gt_dir, image_list, classes)
    if classes is None and set(dataset.classes) <= set(VOC_CLASSES):
        dataset = _voc_order(dataset, VOC_CLASSES)
    result = evaluate_voc_detections(dataset, _voc_dets(dataset, dets), use_07=use_07)
    return class_report("voc07" if use_07 else "voc", result)


def recall_files(gt_path: str, proposals_path: str, cfg: RecallConfig = RecallConfig()) -> RecallReport:
    """Proposal recall of ``tools/propose.py`` JSON against a COCO instances JSON."""
    from core.formats.coco import read_coco
    dataset = read_coco(gt_path)
    proposals = read_propose_json(proposals_path, dataset)
    return proposal_recall(dataset, proposals, cfg.top_n, cfg.counts, cfg.include_difficult)
