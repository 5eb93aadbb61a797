"""Replicate the GoogLeNet detection entry's claims on the synthetic val split, in one table.

    python tools/replicate.py --val data/val [--weights assets/model] [--baseline runs/baseline/checkpoint.pt]
        [--images N] [--timing-images 20] [--out results/replicate] [--resume]

For each claim of GLN §8 it prints the paper's figure beside ours and writes OUT.md (the
table, the command, date and commit) and OUT.json (every number). Proposals come from the
proposal cache (``--cache-dir``); seconds per image are measured live on the first
``--timing-images`` images in this process: proposals (selective search, MultiBox) plus region
classification, everything after the image is decoded.

OUT.json is rewritten after every row, so ``--resume`` after an interruption (or to add the
baseline's row later) reuses the rows measured with the same val images and weights.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import hashlib
import json
import logging
import os
import sys
import time

import numpy as np
import torch

from core.cli import run
from core.formats.coco import read_split
from core.image import load_image
from core.io import write_json, write_text
from core.checkpoint import git_commit, load_weights_only
from detector.config import DetectorConfig
from detector.dataset_run import FixedProposer, run_detector
from detector.pipeline import detect, load_members, member_paths, multibox_path
from eval.api import evaluate
from eval.recall import proposal_recall
from proposals.build import METHODS, build_proposer, proposer_key
from proposals.cache import dataset_proposals, image_digest

log = logging.getLogger("replicate")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--val", default="data/val", help="val split folder (annotations.json + images/)")
    p.add_argument("--weights", default="assets/model", help="folder of member_*.pt and multibox.pt")
    p.add_argument("--baseline", help="Faster R-CNN checkpoint from tools/train_baseline.py")
    p.add_argument("--images", type=int, default=0, help="only the first N val images (0 = all)")
    p.add_argument("--timing-images", type=int, default=20, help="images timed per configuration")
    p.add_argument("--cache-dir", default="cache/proposals", help="proposal cache")
    p.add_argument("--workers", type=int, default=2, help="proposal worker processes")
    p.add_argument("--out", default="results/replicate", help="writes OUT.md and OUT.json")
    p.add_argument("--resume", action="store_true",
                   help="reuse the rows in OUT.json measured on the same val images and weights")
    return p.parse_args(argv)


def run_key(dataset, weights: str, val: str) -> dict:
    """What a measured row depends on: the val images, their annotations and the weights (by content)."""
    files = member_paths(weights) + [p for p in [multibox_path(weights)] if p]
    images = "".join(image_digest(os.path.join(dataset.image_root, a.file_name)) for a in dataset.images)
    return {"images": hashlib.sha256(images.encode()).hexdigest(), "count": len(dataset.images),
            "annotations": image_digest(os.path.join(val, "annotations.json")),
            "weights": {os.path.basename(f): image_digest(f) for f in files}}


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


def all_proposals(dataset, weights: str, args) -> dict[str, dict]:
    """Cached proposals of every method: ``{method: {image_id: Proposals}}``."""
    mb = multibox_path(weights)
    out = {}
    for method in METHODS:
        factory = functools.partial(build_proposer, method, None, mb)
        out[method] = dataset_proposals(dataset, factory, args.cache_dir, proposer_key(method, None, mb),
                                        args.workers)
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
    ilsvrc = evaluate(dataset, dets, "ilsvrc")
    coco = evaluate(dataset, dets, "coco")
    return {"mAP": ilsvrc.mAP, "coco_AP": coco.stats["AP"], "coco_AP50": coco.stats["AP50"]}


def detector_rows(dataset, members, proposals, images, proposal_seconds, done: dict,
                  save) -> dict[str, dict]:
    """mAP and seconds per image of single/ensemble models with ss or merged proposals.

    Rows already in ``done`` are kept; ``save(rows)`` is called after each new row.
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
        dets = run_detector(dataset, models, cfg, proposals=proposals[method])
        ids = [a.image_id for a in dataset.images[:len(images)]]
        seconds = time_classification(models, cfg, images, [proposals[method][i] for i in ids])
        rows[name] = {**score(dataset, dets), "seconds": proposal_seconds[method] + seconds}
        save(rows)
    return rows


def baseline_row(dataset, path: str, images) -> dict:
    from baseline.faster_rcnn import BaselineConfig, build_model, detect_dataset
    state = load_weights_only(path)
    cfg = BaselineConfig(**state["config"])
    model = build_model(len(state["classes"]), cfg)
    model.load_state_dict(state["model"])
    dets, _ = detect_dataset(model, dataset)
    timing = dataclasses.replace(dataset, images=dataset.images[:len(images)])
    _, seconds = detect_dataset(model, timing)
    return {**score(dataset, dets), "seconds": seconds, "iterations": int(state["iteration"])}


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
        rows.append((f"6. seconds per image: {name}", "-", f"{row['seconds']:.2f} s (mAP {_pct(row['mAP'])})"))
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
    lines += ["", "| detector | mAP (ILSVRC rules) | COCO AP | COCO AP50 | s/image |", "|---|---|---|---|---|"]
    table = dict(dets, **({"Faster R-CNN MobileNetV3-FPN (baseline)": base} if base else {}))
    lines += [f"| {n} | {_pct(r['mAP'])} | {_pct(r['coco_AP'])} | {_pct(r['coco_AP50'])} | {r['seconds']:.2f} |"
              for n, r in table.items()]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    dataset = read_split(args.val, args.images)
    members = load_members(args.weights)
    proposals = all_proposals(dataset, args.weights, args)
    images = images_for_timing(dataset, max(1, min(args.timing_images, len(dataset.images))))
    key = run_key(dataset, args.weights, args.val)
    done = previous_rows(args.out, key) if args.resume else {}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)

    def save(**parts):
        write_json(args.out + ".json", {"key": key, **done, **parts}, indent=2)

    props = done.get("proposals") or measure_proposals(dataset, proposals, args.weights, images)
    save(proposals=props)
    seconds = {m: r["seconds"] for m, r in props.items()}
    dets = detector_rows(dataset, members, proposals, images, seconds, done.get("detectors", {}),
                         lambda rows: save(proposals=props, detectors=rows))
    base = baseline_row(dataset, args.baseline, images) if args.baseline else None
    rows = claim_rows(props, dets, base)
    command = "python tools/replicate.py " + " ".join(argv if argv is not None else sys.argv[1:])
    reused = (["proposals"] if "proposals" in done else []) + list(done.get("detectors", {}))
    text = markdown(rows, props, dets, base, command.strip(), len(dataset.images), reused)
    write_text(args.out + ".md", text)
    save(proposals=props, detectors=dets, baseline=base, claims=rows)
    print(text)
    return 0


def measure_proposals(dataset, proposals, weights: str, images) -> dict[str, dict]:
    """Proposal rows with live seconds per image."""
    props = proposal_rows(dataset, proposals)
    for method, row in props.items():
        row["seconds"] = time_proposals(method, weights, images)
    return props


if __name__ == "__main__":
    sys.exit(run(main))
