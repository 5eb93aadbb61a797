"""Replicate the GoogLeNet detection entry's claims on the synthetic val split, in one table.

    python tools/replicate.py --val data/val [--weights assets/model] [--baseline runs/baseline/checkpoint.pt]
        [--images N] [--timing-images 20] [--out results/replicate] [--resume]
    torchrun --standalone --nproc_per_node N tools/replicate.py ...the same arguments...

For each claim of GLN §8 it prints the paper's figure beside ours and writes OUT.md (the
table, the command, date and commit) and OUT.json (every number). Proposals come from the
proposal cache (``--cache-dir``); seconds per image are measured live on the first
``--timing-images`` images in this process: proposals (selective search, MultiBox) plus region
classification, everything after the image is decoded. With more than one member it adds a
leave-one-out row per member: the ensemble's mAP without it, i.e. what that member adds.

OUT.json is rewritten after every row, so ``--resume`` after an interruption (or to add the
baseline's row later) reuses the rows measured with the same val images and weights.

Under torchrun the ranks share the per-image work (core.distributed.shard): the proposal cache
fill, each detector configuration's detections and the members' probabilities for the
leave-one-out rows; rank 0 merges them (the detections one process makes, detection for
detection, hence the same scores), scores and writes OUT.md and OUT.json. Each rank uses
cores // ranks-on-its-machine threads. The timing and the baseline's row run on rank 0 only, so
under torchrun the seconds per image are those of one rank with its share of the threads.
"""
from __future__ import annotations

import argparse
import os
import sys


from bench.replicate import (all_proposals, baseline_row, claim_rows, detector_rows, images_for_timing,
                             leave_one_out_rows, markdown, measure_proposals, previous_rows, run_key)
from core.cli import run
from core.distributed import World, gather, process_group, set_threads, world_from_env
from core.formats.coco import read_split
from core.io import write_json, write_text
from detector.pipeline import load_members


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


def measure(args, world: World, dataset, members) -> tuple[dict, dict, dict]:
    """The rows (proposals, detectors), all ranks sharing the per-image work, and the rows reused
    from an earlier run; the rows are rank 0's (the other ranks' are incomplete)."""
    proposals = all_proposals(dataset, args.weights, args.cache_dir, args.workers, world)
    key = run_key(dataset, args.weights, args.val) if world.is_main else None
    # rank 0 reads the earlier rows for all: it rewrites OUT.json while the others may not have read it
    done = gather(world, previous_rows(args.out, key) if args.resume and world.is_main else {})[0]
    props, images, seconds = {}, [], {}
    if world.is_main:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        images = images_for_timing(dataset, max(1, min(args.timing_images, len(dataset.images))))
        props = done.get("proposals") or measure_proposals(dataset, proposals, args.weights, images)
        seconds = {m: r["seconds"] for m, r in props.items()}

    def save(**parts):
        write_json(args.out + ".json", {**done, "key": key, "proposals": props, **parts}, indent=2)

    if world.is_main:
        save()
    dets = detector_rows(dataset, members, proposals, images, seconds, done.get("detectors", {}),
                         lambda rows: save(detectors=rows), world)
    dets.update(leave_one_out_rows(dataset, members, proposals, done.get("detectors", {}),
                                   lambda rows: save(detectors={**dets, **rows}), world))
    return {"key": key, "proposals": props, "detectors": dets}, done, images


def main(argv=None) -> int:
    args = parse_args(argv)
    world = world_from_env()
    if world.size > 1:
        set_threads(world)
    dataset = read_split(args.val, args.images)
    members = load_members(args.weights)
    with process_group(world):
        rows, done, images = measure(args, world, dataset, members)
    if not world.is_main:
        return 0
    props, dets = rows["proposals"], rows["detectors"]
    base = baseline_row(dataset, args.baseline, images) if args.baseline else None
    claims = claim_rows(props, dets, base)
    command = "python tools/replicate.py " + " ".join(argv if argv is not None else sys.argv[1:])
    reused = (["proposals"] if "proposals" in done else []) + list(done.get("detectors", {}))
    text = markdown(claims, props, dets, base, command.strip(), len(dataset.images), reused)
    write_text(args.out + ".md", text)
    write_json(args.out + ".json", {**done, **rows, "baseline": base, "claims": claims}, indent=2)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
