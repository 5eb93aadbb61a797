"""The replication of the GoogLeNet detection entry's claims (GLN §8) on the synthetic val split.

The pieces ``tools/replicate.py`` runs: the proposal and detector rows (mAP, coverage, seconds per
image), the baseline's row, the claims table (paper beside ours) and its Markdown. Every number is
measured; the table is built from the rows. A row depends on the val images, their annotations and
the weights (:func:`run_key`), so an interrupted run can keep the rows it measured.
"""
from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import logging
import os
import time

import numpy as np
from tqdm import tqdm

from core.checkpoint import git_commit
from core.distributed import World, gather, shard
from core.digest import sha256_bytes, sha256_file
from core.image import load_image
from detector.config import DetectorConfig
from detector.dataset_run import FixedProposer, run_detector, stored_proposer
from detector.ensemble import average_probabilities, member_probabilities
from detector.pipeline import detect, final_detections, multibox_path, region_boxes, weights_files
from eval.api import evaluate
from eval.errors import MAIN_ERRORS, tide_errors
from eval.recall import proposal_recall
from proposals.build import METHODS, build_proposer, proposer_key
from proposals.cache import dataset_proposals

log = logging.getLogger(__name__)


def run_key(dataset, weights: str, val: str) -> dict:
    """What a measured row depends on: the val images, their annotations and the weights (by content)."""
    images = "".join(sha256_file(os.path.join(dataset.image_root, a.file_name)) for a in dataset.images)
    return {"images": sha256_bytes(images.encode()), "count": len(dataset.images),
            "annotations": sha256_file(os.path.join(val, "annotations.json")),
            "weights": {os.path.basename(f): sha256_file(f) for f in weights_files(weights)}}


def previous_rows(out: str, key: dict) -> dict:
    """The rows of an earlier run of the same key, or nothing."""
    path = out + ".json"
    if not os.path.isfile(path):
        return {}
    try:
        with open(path) as f:
            saved = json.load(f)
    except (OSError, ValueError) as err:  # a damaged results file costs a re-measurement, not a crash
        log.warning("%s: unreadable (%s); measuring everything again", path, err)
        return {}
    if not isinstance(saved, dict) or saved.get("key") != key:
        log.warning("%s: measured on other images or weights; measuring everything again", path)
        return {}
    return saved


def all_proposals(dataset, weights: str, cache_dir: str, workers: int, world: World = World()) -> dict[str, dict]:
    """Cached proposals of every method: ``{method: {image_id: Proposals}}``.

    Under torchrun each rank first fills the cache for its :func:`shard` of the images; then rank 0
    reads every image's (it scores and times) and the other ranks keep their shard's.
    """
    if world.size > 1:
        mine = all_proposals(dataclasses.replace(dataset, images=shard(dataset.images, world)), weights,
                             cache_dir, workers)
        gather(world, None)  # every shard is in the cache
        if not world.is_main:
            return mine
    mb = multibox_path(weights)
    out = {}
    for method in METHODS:
        factory = functools.partial(build_proposer, method, None, mb)
        out[method] = dataset_proposals(dataset, factory, cache_dir, proposer_key(method, None, mb), workers)
    return out


def proposal_rows(dataset, proposals: dict[str, dict]) -> dict[str, dict]:
    """Per method: proposals per image, coverage (recall at 0.5), recall at 0.7, ABO."""
    rows = {}
    for method, props in proposals.items():
        report = proposal_recall(dataset, {k: p.boxes for k, p in props.items()}).to_json()
        rows[method] = {"per_image": float(np.mean([len(p.boxes) for p in props.values()])),
                        "coverage": report["coverage"], "recall@0.7": report["recall@0.7"],
                        "abo": report["ABO"]}
    return rows


def images_for_timing(dataset, n: int) -> list[np.ndarray]:
    return [load_image(os.path.join(dataset.image_root, a.file_name)).pixels for a in dataset.images[:n]]


def time_proposals(method: str, weights: str, images: list[np.ndarray]) -> float:
    """Seconds per image of one proposal method, computed live (model loading excluded)."""
    proposer = build_proposer(method, None, multibox_path(weights))
    proposer(images[0])  # warm-up: lazy initialisation is not per-image work
    start = time.perf_counter()
    for image in images:
        proposer(image)
    return (time.perf_counter() - start) / len(images)


def time_classification(members, cfg: DetectorConfig, images, proposals) -> float:
    """Seconds per image of warping + classifying + NMS, on given per-image proposals."""
    detect(images[0], FixedProposer(proposals[0]), members, cfg)
    start = time.perf_counter()
    for image, props in zip(images, proposals):
        detect(image, FixedProposer(props), members, cfg)
    return (time.perf_counter() - start) / len(images)


def score(dataset, dets) -> dict:
    """ILSVRC mAP, COCO AP and AP50, and TIDE's dAP of each main error (AP points), so that every
    change shows which error it moved."""
    ilsvrc = evaluate(dataset, dets, "ilsvrc")
    coco = evaluate(dataset, dets, "coco")
    errors = tide_errors(dataset, dets)
    return {"mAP": ilsvrc.mAP, "coco_AP": coco.stats["AP"], "coco_AP50": coco.stats["AP50"],
            "dAP": {k: float(errors.dap[k]) for k in MAIN_ERRORS}}


def _dap_cells(row: dict) -> str:
    """The row's dAP columns; "-" for a row measured before they existed."""
    dap = row.get("dAP") or {}
    return " | ".join(f"{dap[k]:.1f}" if k in dap else "-" for k in MAIN_ERRORS)


def sharded(dataset, world: World, per_image) -> dict | None:
    """``per_image(part)`` (``{image_id: value}`` for the images of dataset ``part``) over the whole
    dataset, each rank computing its :func:`shard`; rank 0 gets every image's value in dataset
    order (what one process computes), the other ranks None."""
    if world.size == 1:
        return per_image(dataset)
    parts = gather(world, per_image(dataclasses.replace(dataset, images=shard(dataset.images, world))))
    if not world.is_main:
        return None
    merged = {k: v for part in parts for k, v in part.items()}
    return {ann.image_id: merged[ann.image_id] for ann in dataset.images}


def detector_rows(dataset, members, proposals, images, proposal_seconds, done: dict,
                  save, world: World = World()) -> dict[str, dict]:
    """mAP and seconds per image of single/ensemble models with ss or merged proposals.

    Rows already in ``done`` are kept; ``save(rows)`` is called after each new row. Under torchrun
    (``world``) the ranks detect their shards and rank 0 alone times, scores, saves and returns
    the new rows (the others return only ``done``'s; every rank must pass the same ``done``).
    """
    configs = {"single, ss": (members[:1], "ss", False), "single, merged": (members[:1], "merged", False),
               "ensemble, merged": (members, "merged", False),
               "ensemble, merged, box regression": (members, "merged", True)}
    rows = {}
    for name, (models, method, bbox) in configs.items():
        if name in done:
            rows[name] = done[name]
            continue
        if bbox and not any(m.box_regressor is not None for m in models):
            continue
        cfg = dataclasses.replace(DetectorConfig(), proposal_method=method, bbox_regression=bbox)
        dets = sharded(dataset, world, lambda part: run_detector(part, models, cfg, proposals=proposals[method]))
        if not world.is_main:
            continue
        ids = [a.image_id for a in dataset.images[:len(images)]]
        seconds = time_classification(models, cfg, images, [proposals[method][i] for i in ids])
        rows[name] = {**score(dataset, dets), "seconds": proposal_seconds[method] + seconds}
        save(rows)
    return rows


def member_outputs(dataset, members, proposals: dict, cfg: DetectorConfig) -> dict[int, tuple]:
    """Each image's regions and every member's probabilities on them, computed once:
    ``image_id -> (boxes [R, 4], probabilities [M, R, K+1], (height, width))``."""
    out = {}
    for ann in tqdm(dataset.images, desc="members", dynamic_ncols=True):
        pixels = load_image(os.path.join(dataset.image_root, ann.file_name)).pixels
        size = (int(pixels.shape[0]), int(pixels.shape[1]))
        boxes = region_boxes(stored_proposer(proposals, ann.image_id)(pixels), size, cfg.max_proposals)
        out[ann.image_id] = (boxes, member_probabilities(pixels, boxes, members, cfg.batch_regions)[0], size)
    return out


def leave_one_out_rows(dataset, members, proposals: dict, done: dict, save,
                       world: World = World()) -> dict[str, dict]:
    """The ensemble's scores without each member in turn (merged proposals, no box regression),
    from the members' probabilities computed once; rows in ``done`` are kept, ``save(rows)`` after each.
    Under torchrun the ranks compute their shards' probabilities and rank 0 scores (as :func:`detector_rows`)."""
    cfg = dataclasses.replace(DetectorConfig(), proposal_method="merged")
    names = [f"ensemble without member {i}" for i in range(len(members))]
    rows = {n: done[n] for n in names if n in done}
    if len(members) < 2 or len(rows) == len(names):
        return rows
    outputs = sharded(dataset, world, lambda part: member_outputs(part, members, proposals["merged"], cfg))
    if not world.is_main:
        return rows
    for left, name in enumerate(names):
        if name in rows:
            continue
        keep = [i for i in range(len(members)) if i != left]
        dets = {image_id: final_detections(boxes, average_probabilities(probs[keep]), size, cfg)
                for image_id, (boxes, probs, size) in outputs.items()}
        rows[name] = score(dataset, dets)
        save(rows)
    return rows


def baseline_row(dataset, path: str, images) -> dict:
    from baseline.faster_rcnn import detect_dataset, load_baseline
    model, blob = load_baseline(path)
    dets, _ = detect_dataset(model, dataset)
    timing = dataclasses.replace(dataset, images=dataset.images[:len(images)])
    _, seconds = detect_dataset(model, timing)
    return {**score(dataset, dets), "seconds": seconds, "iterations": int(blob["train_state"]["iteration"])}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def claim_rows(props: dict, dets: dict, base: dict | None) -> list[tuple[str, str, str]]:
    """(claim, paper, ours) rows of the table."""
    ss, ss2x, merged = props["ss"], props["ss2x"], props["merged"]
    single_ss, single_merged = dets["single, ss"], dets["single, merged"]
    ensemble = dets["ensemble, merged"]
    rows = [
        ("1. ss2x proposals / ss proposals", "x0.5",
         f"x{ss2x['per_image'] / ss['per_image']:.2f} ({ss2x['per_image']:.0f} / {ss['per_image']:.0f} per image)"),
        ("2. merged (ss2x + 200 MultiBox) proposals / ss", "x0.6",
         f"x{merged['per_image'] / ss['per_image']:.2f} ({merged['per_image']:.0f} per image)"),
        ("2. coverage (recall at IoU 0.5): ss -> merged", "92% -> 93%",
         f"{_pct(ss['coverage'])} -> {_pct(merged['coverage'])}"),
        ("3. single model mAP: ss -> merged proposals", "+1 point",
         f"{_pct(single_ss['mAP'])} -> {_pct(single_merged['mAP'])} "
         f"({100 * (single_merged['mAP'] - single_ss['mAP']):+.1f})"),
        ("4. six-model ensemble vs single model (mAP)", "38.0-40% -> 43.9%",
         f"{_pct(single_merged['mAP'])} -> {_pct(ensemble['mAP'])}"),
    ]
    reg = dets.get("ensemble, merged, box regression")
    rows.append(("5. + R-CNN bounding-box regression (mAP)", "not used",
                 f"{_pct(ensemble['mAP'])} -> {_pct(reg['mAP'])}" if reg else "no regressors in the weights"))
    for name, row in dets.items():
        if "seconds" in row:
            rows.append((f"6. seconds per image: {name}", "-", f"{row['seconds']:.2f} s (mAP {_pct(row['mAP'])})"))
    for name, row in dets.items():
        if name.startswith("ensemble without member"):
            rows.append((f"7. {name} (mAP; what it adds)", "not reported",
                         f"{_pct(row['mAP'])} ({100 * (ensemble['mAP'] - row['mAP']):+.1f})"))
    if base:
        rows.append(("6. Faster R-CNN MobileNetV3-FPN baseline", "-",
                     f"{base['seconds']:.2f} s (mAP {_pct(base['mAP'])})"))
    return rows


def markdown(rows, props, dets, base, command: str, n_images: int, reused: list[str] = ()) -> str:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    again = f" Rows kept from an earlier run on the same images and weights: {'; '.join(reused)}." if reused else ""
    lines = [f"Run `{command}` on {stamp}, commit {git_commit()}, {n_images} val images.{again}", "",
             "| claim | paper | ours |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    lines += ["", "| proposals | per image | coverage | recall@0.7 | ABO | s/image |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {m} | {r['per_image']:.0f} | {_pct(r['coverage'])} | {_pct(r['recall@0.7'])} | {r['abo']:.3f} "
              f"| {r['seconds']:.2f} |"
              for m, r in props.items()]
    dap_head = " | ".join(f"dAP {k}" for k in MAIN_ERRORS)
    lines += ["", f"| detector | mAP (ILSVRC rules) | COCO AP | COCO AP50 | s/image | {dap_head} |",
              "|---|---|---|---|---|" + "---|" * len(MAIN_ERRORS)]
    table = dict(dets, **({"Faster R-CNN MobileNetV3-FPN (baseline)": base} if base else {}))
    lines += [f"| {n} | {_pct(r['mAP'])} | {_pct(r['coco_AP'])} | {_pct(r['coco_AP50'])} | "
              f"{r['seconds']:.2f} | {_dap_cells(r)} |" if "seconds" in r else
              f"| {n} | {_pct(r['mAP'])} | {_pct(r['coco_AP'])} | {_pct(r['coco_AP50'])} | - | {_dap_cells(r)} |"
              for n, r in table.items()]
    return "\n".join(lines) + "\n"


def measure_proposals(dataset, proposals, weights: str, images) -> dict[str, dict]:
    """Proposal rows with live seconds per image."""
    props = proposal_rows(dataset, proposals)
    for method, row in props.items():
        row["seconds"] = time_proposals(method, weights, images)
    return props
