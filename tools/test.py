"""Run the detector over a COCO or ILSVRC split, write the results in that format and score them.

    python tools/test.py --weights assets/model --images DIR --gt annotations.json [--out DIR]
    python tools/test.py --weights assets/model --images DIR --gt-dir ILSVRC_DIR [--out DIR]
    python tools/test.py --weights assets/model --split SPLIT [--out DIR]
        [--proposals METHOD] [--cache-dir cache/proposals] [--max-images N] [--device cpu]
        [--config FILE] [--set detector.KEY=VALUE]
    torchrun --standalone --nproc_per_node N tools/test.py ...the same arguments...

--gt: a COCO instances file; the images are --images or, without it, the folder beside the file
that holds them (COCO's own layout: annotations/instances_val2017.json beside val2017/); writes
OUT/results.json (COCO results) and scores it under COCO and ILSVRC rules. --gt-dir: a devkit
folder (Annotations/, image_list.txt, meta_det.mat or meta_det.txt; images --images) or the root
of the ILSVRC DET package (its val split: ImageSets/DET/val.txt, Annotations/DET/val,
Data/DET/val, the devkit's meta_det.mat and validation blacklist); writes OUT/submission.txt
(top 30,000 per class, as R-CNN) and scores it under ILSVRC rules. --split: any split the
training tools read (core.datasets: a synthetic split folder, a COCO instances JSON, an ILSVRC
Data/DET/<split> folder). --cache-dir takes the proposals from the proposal cache (computing
missing ones) instead of computing them live. OUT/report.json holds the scores, seconds per image,
world_size, images_reused and the config.

Every image's detections are kept in OUT/images/ as soon as they exist (keyed by the image's,
the weights' and the settings' bytes), so the same command started again after an interruption
detects only the images not done yet (report.json: images_reused). Under torchrun the ranks
share the images (core.distributed.shard), each rank uses cores // ranks-on-its-machine threads,
and rank 0 merges the parts, writes the results and scores them: the same files a single
process writes, detection for detection.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import os
import sys
import time
from typing import Any

import torch

from core.cli import run
from core.config import add_config_args, config_to_dict, load_config
from core.datasets import Split, open_coco, open_split
from core.distributed import World, gather, process_group, rank_device, set_threads, shard, world_from_env
from core.errors import InputError
from core.io import write_json
from core.structures import DetectionDataset
from detector.config import DetectSchema
from detector.dataset_run import (ILSVRC_PER_CLASS_CAP, ResultStore, cap_per_class, run_detector, run_key,
                                  store_each, stored_results, write_results)
from detector.pipeline import build_detector_proposer, load_members, multibox_path
from proposals.build import METHODS, build_proposer, proposer_key
from proposals.cache import dataset_proposals

log = logging.getLogger("test")


@dataclasses.dataclass(frozen=True)
class Schema(DetectSchema):
    """The detector and proposals sections; a member's training config (configs/detector.yaml,
    configs/ilsvrc2014.yaml) works as --config too: its training sections are accepted and unused."""

    data: Any = None
    classifier: Any = None
    sampler: Any = None
    train: Any = None
    bbox_regression: Any = None


def detect_config(cfg: Schema) -> dict:
    """The sections that shape detection, as plain data (the report's and the results' key)."""
    tree = config_to_dict(cfg)
    return {"detector": tree["detector"], "proposals": tree["proposals"]}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", required=True, help="member checkpoint or folder of member_*.pt")
    p.add_argument("--images", help="folder of the split's images (default: where the layout puts them)")
    gt = p.add_mutually_exclusive_group(required=True)
    gt.add_argument("--gt", help="COCO instances JSON")
    gt.add_argument("--gt-dir", help="devkit folder (Annotations/, image_list.txt, meta_det.*) or ILSVRC DET root")
    gt.add_argument("--split", help="a split in any layout core.datasets reads")
    p.add_argument("--out", default="runs/test", help="output folder")
    p.add_argument("--proposals", choices=METHODS, help="proposal method (default: detector.proposal_method)")
    p.add_argument("--cache-dir", help="use (and fill) this proposal cache")
    p.add_argument("--max-images", type=int, default=0, help="only the first N images (0 = all)")
    p.add_argument("--device", default="cpu")
    add_config_args(p)
    return p.parse_args(argv)


def read_split(args) -> Split:
    """The split --gt, --gt-dir or --split names, first --max-images images."""
    source = args.gt or args.gt_dir or args.split
    if args.gt:
        split = open_coco(args.gt, args.images or "")
        if args.max_images:
            split.dataset.images = split.dataset.images[:args.max_images]
    else:
        split = open_split(source, args.images or "", args.max_images)
    if not split.dataset.images:
        raise InputError(f"{source}: the split has no images")
    return split


def proposal_source(args, cfg, dataset, device: str | None = None) -> dict:
    """run_detector's keyword: a live ``proposer`` or cached ``proposals`` of ``dataset``'s images."""
    method = cfg.detector.proposal_method
    if not args.cache_dir:
        return {"proposer": build_detector_proposer(cfg.detector, args.weights, cfg.proposals, device or args.device)}
    mb = multibox_path(args.weights)
    factory = functools.partial(build_proposer, method, cfg.proposals, mb)
    return {"proposals": dataset_proposals(dataset, factory, args.cache_dir,
                                           proposer_key(method, cfg.proposals, mb))}


def score(split: Split, dets, fmt: str) -> dict:
    """mAP under ILSVRC rules (plus COCO AP/AP50 for a COCO split) via eval.api."""
    from eval.api import evaluate
    protocols = ["ilsvrc", "coco"] if fmt == "coco" else ["ilsvrc"]
    return {p: evaluate(split.dataset, dets, p, split.blacklist if p == "ilsvrc" else None).to_json()
            for p in protocols}


@dataclasses.dataclass
class Part:
    """One rank's share of the run: its detections, how many an earlier run had finished, and the
    images and seconds it detected itself."""

    detections: dict
    reused: int
    computed: int
    seconds: float


def detect_part(args, cfg, world: World, dataset: DetectionDataset, members) -> Part:
    """This rank's images: stored detections loaded, the others detected and stored one by one."""
    device = rank_device(world, args.device)
    settings = {**detect_config(cfg), "device": torch.device(device).type}
    store = ResultStore(os.path.join(args.out, "images"), run_key(args.weights, settings))
    mine = DetectionDataset(dataset.classes, shard(dataset.images, world), dataset.class_ids, dataset.image_root)
    found, todo = stored_results(mine, store)
    start = time.perf_counter()
    if todo.images:
        store_one, saved = store_each(todo, store), set()

        def keep(image_id, dets) -> None:
            store_one(image_id, dets)
            saved.add(image_id)

        source = proposal_source(args, cfg, todo, device)  # the cache fill is sharded with the images
        with torch.no_grad():
            computed = run_detector(todo, members, cfg.detector, on_result=keep, **source)
        for image_id in set(computed) - saved:
            keep(image_id, computed[image_id])
        found.update(computed)
    seconds = time.perf_counter() - start
    return Part(found, len(mine.images) - len(todo.images), len(todo.images), seconds)


def report_run(args, cfg, split: Split, members, parts: list[Part]) -> str:
    """Rank 0: merge the parts in dataset order, write the results and report.json; the results path."""
    dataset, fmt = split.dataset, split.fmt
    merged = {k: v for part in parts for k, v in part.detections.items()}
    dets = {ann.image_id: merged[ann.image_id] for ann in dataset.images}
    out = os.path.join(args.out, "results.json" if fmt == "coco" else "submission.txt")
    write_results(out, dataset, dets, fmt)
    # The submission keeps the top 30,000 per class; score exactly what it holds.
    scored = cap_per_class(dets, ILSVRC_PER_CLASS_CAP) if fmt == "ilsvrc" else dets
    computed = sum(p.computed for p in parts)
    seconds = sum(p.seconds for p in parts) / computed if computed else None
    report = {"weights": args.weights, "members": len(members), "images": len(dataset.images),
              "seconds_per_image": seconds, "world_size": len(parts),
              "images_reused": sum(p.reused for p in parts), "results": out,
              "scores": score(split, scored, fmt), "config": detect_config(cfg)}
    write_json(os.path.join(args.out, "report.json"), report, indent=1)
    for protocol, rep in report["scores"].items():
        print(f"{protocol}: mAP {rep['mAP']:.4f}")
    timing = f"{seconds:.3f} s/image" if seconds is not None else "no image detected"
    print(f"{timing} ({'cached' if args.cache_dir else 'live'} proposals, {len(parts)} process(es), "
          f"{report['images_reused']} images reused); wrote {out}")
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = load_config(Schema, args.config, args.overrides)
    if args.proposals:
        cfg = dataclasses.replace(cfg, detector=dataclasses.replace(cfg.detector, proposal_method=args.proposals))
    world = world_from_env()
    if world.size > 1:
        set_threads(world)
    split = read_split(args)
    members = load_members(args.weights, rank_device(world, args.device))
    if members[0].classes != list(split.dataset.classes):
        raise InputError(f"{args.weights}: the model's classes differ from the split's")
    with process_group(world, args.device):
        parts = gather(world, detect_part(args, cfg, world, split.dataset, members))
    if world.is_main:
        report_run(args, cfg, split, members, parts)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
