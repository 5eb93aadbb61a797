"""Run the detector over a COCO or ILSVRC split, write the results in that format and score them.

    python tools/test.py --weights assets/model --images DIR --gt annotations.json [--out DIR]
    python tools/test.py --weights assets/model --images DIR --gt-dir ILSVRC_DIR [--out DIR]
        [--proposals METHOD] [--cache-dir cache/proposals] [--max-images N] [--device cpu]
        [--config FILE] [--set detector.KEY=VALUE]

--gt: a COCO annotations file; writes OUT/results.json (COCO results) and scores it under COCO
and ILSVRC rules. --gt-dir: a devkit folder (Annotations/, image_list.txt, meta_det.mat or
meta_det.txt); writes OUT/submission.txt (top 30,000 per class, as R-CNN) and scores it under
ILSVRC rules. --cache-dir takes the proposals from the proposal cache (computing missing ones)
instead of computing them live. OUT/report.json holds the scores, seconds per image and config.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import os
import sys
import time

import torch

from core.cli import run
from core.config import add_config_args, config_to_dict, load_config
from core.errors import InputError
from core.io import write_json
from detector.config import DetectSchema
from detector.dataset_run import ILSVRC_PER_CLASS_CAP, cap_per_class, run_detector, write_results
from detector.pipeline import build_detector_proposer, load_members, multibox_path
from proposals.build import METHODS, build_proposer, proposer_key
from proposals.cache import dataset_proposals

log = logging.getLogger("test")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", required=True, help="member checkpoint or folder of member_*.pt")
    p.add_argument("--images", required=True, help="folder of the split's images")
    gt = p.add_mutually_exclusive_group(required=True)
    gt.add_argument("--gt", help="COCO annotations JSON")
    gt.add_argument("--gt-dir", help="ILSVRC devkit folder (Annotations/, image_list.txt, meta_det.*)")
    p.add_argument("--out", default="runs/test", help="output folder")
    p.add_argument("--proposals", choices=METHODS, help="proposal method (default: detector.proposal_method)")
    p.add_argument("--cache-dir", help="use (and fill) this proposal cache")
    p.add_argument("--max-images", type=int, default=0, help="only the first N images (0 = all)")
    p.add_argument("--device", default="cpu")
    add_config_args(p)
    return p.parse_args(argv)


def read_split(args):
    """(dataset, results format) from --gt or --gt-dir."""
    if args.gt:
        from core.formats.coco import read_coco
        dataset, fmt = read_coco(args.gt, image_root=args.images), "coco"
    else:
        from core.formats.ilsvrc import read_ilsvrc
        meta = os.path.join(args.gt_dir, "meta_det.mat")
        meta = meta if os.path.isfile(meta) else os.path.join(args.gt_dir, "meta_det.txt")
        dataset = read_ilsvrc(os.path.join(args.gt_dir, "Annotations"),
                              os.path.join(args.gt_dir, "image_list.txt"), meta, image_root=args.images)
        fmt = "ilsvrc"
    if args.max_images:
        dataset.images = dataset.images[:args.max_images]
    if not dataset.images:
        raise InputError(f"{args.gt or args.gt_dir}: the split has no images")
    return dataset, fmt


def proposal_source(args, cfg, dataset) -> dict:
    """run_detector's keyword: a live ``proposer`` or cached ``proposals``."""
    method = cfg.detector.proposal_method
    if not args.cache_dir:
        return {"proposer": build_detector_proposer(cfg.detector, args.weights, cfg.proposals, args.device)}
    mb = multibox_path(args.weights)
    factory = functools.partial(build_proposer, method, cfg.proposals, mb)
    return {"proposals": dataset_proposals(dataset, factory, args.cache_dir,
                                           proposer_key(method, cfg.proposals, mb))}


def score(dataset, dets, fmt: str) -> dict:
    """mAP under ILSVRC rules (plus COCO AP/AP50 for a COCO split) via eval.api."""
    from eval.api import evaluate
    protocols = ["ilsvrc", "coco"] if fmt == "coco" else ["ilsvrc"]
    return {p: evaluate(dataset, dets, p).to_json() for p in protocols}


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = load_config(DetectSchema, args.config, args.overrides)
    if args.proposals:
        cfg = dataclasses.replace(cfg, detector=dataclasses.replace(cfg.detector, proposal_method=args.proposals))
    dataset, fmt = read_split(args)
    members = load_members(args.weights, args.device)
    if members[0].classes != list(dataset.classes):
        raise InputError(f"{args.weights}: the model's classes differ from the split's")
    source = proposal_source(args, cfg, dataset)
    start = time.perf_counter()
    with torch.no_grad():
        dets = run_detector(dataset, members, cfg.detector, **source)
    seconds = (time.perf_counter() - start) / len(dataset.images)
    out = os.path.join(args.out, "results.json" if fmt == "coco" else "submission.txt")
    write_results(out, dataset, dets, fmt)
    # The submission keeps the top 30,000 per class; score exactly what it holds.
    scored = cap_per_class(dets, ILSVRC_PER_CLASS_CAP) if fmt == "ilsvrc" else dets
    report = {"weights": args.weights, "members": len(members), "images": len(dataset.images),
              "seconds_per_image": seconds, "results": out, "scores": score(dataset, scored, fmt),
              "config": config_to_dict(cfg)}
    write_json(os.path.join(args.out, "report.json"), report, indent=1)
    for protocol, rep in report["scores"].items():
        print(f"{protocol}: mAP {rep['mAP']:.4f}")
    print(f"{seconds:.3f} s/image ({'cached' if args.cache_dir else 'live'} proposals); wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
