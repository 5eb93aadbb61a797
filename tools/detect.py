"""Detect objects in images with the Inception R-CNN ensemble.

    python tools/detect.py IMAGE_OR_FOLDER [...] [--out DIR] [--json FILE] [--weights PATH]
        [--proposals ss|ss2x|multibox|merged] [--draw-threshold 0.3] [--device cpu] [--config FILE]
        [--prefetch N] [--set detector.KEY=VALUE]

--weights is a folder holding member_*.pt (and multibox.pt for MultiBox proposals) or a single
member checkpoint (multibox.pt is then looked up beside it); without it the bundled model in
assets/model/ is used. Every detection prints one line on stdout:

    <image> <category> <score, 4 decimals> [x1, y1, x2, y2]   (xyxy, original pixels, 1 decimal)

--json FILE writes a list of {"image", "width", "height", "detections": [{"box", "score", "label",
"category"}]} (full float precision; images that failed have no entry). --out DIR writes
DIR/<stem>.png with the boxes scoring at least --draw-threshold drawn (default 0.3; the printed
lines and the JSON keep every detection, as detectron2's demo does). An image that cannot be
read or processed gets one stderr line naming it and the reason; the others are still
processed; the exit code is then 1 (0 when every image was processed, 2 for bad arguments,
weights or config). Over several images a worker process loads the next --prefetch N images
(default 2) and computes their selective search while this one classifies (--prefetch 0: all in
this process); the output is the same, in the same order. `--set detector.dtype=bfloat16` runs
the networks in bfloat16 and
`--set detector.cascade_top=N` lets member 0 pick the N regions the others score (both opt-in;
see the README's Speed section for what they cost in mAP).
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

# Only modules without torch at the top: the prefetch worker is a spawned process, which imports
# this script again, and it starts in well under a second when it need not load torch.
from core.cli import run
from core.config import add_config_args, load_config, save_run_config
from core.draw import draw_detections, save_image
from core.errors import InputError
from core.image import list_images
from core.io import write_json
from detector.config import DetectSchema
from detector.prefetch import Prefetched, failure, prefetch
from eval.inputs import detect_record
from proposals.build import METHODS, build_background_proposer, complete_proposals

log = logging.getLogger("detect")
BUNDLED = Path(__file__).resolve().parents[1] / "assets" / "model"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders")
    p.add_argument("--out", help="write DIR/<stem>.png with the detections drawn")
    p.add_argument("--json", help="write all detections to this JSON file")
    p.add_argument("--weights", help="member checkpoint or folder of member_*.pt (default: bundled)")
    p.add_argument("--proposals", choices=METHODS, help="proposal method (default: detector.proposal_method)")
    p.add_argument("--draw-threshold", type=float, default=0.3,
                   help="draw only detections scoring at least this in --out pictures (default 0.3)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--prefetch", type=int, default=2,
                   help="images whose selective search a worker process computes ahead (default 2; "
                        "0: all in this process)")
    add_config_args(p)
    return p.parse_args(argv)


def resolve_weights(weights: str | None) -> str:
    """The weights path to use; the bundled folder when none is given (which must exist)."""
    if weights:
        return weights
    if not BUNDLED.is_dir() or not any(BUNDLED.glob("member_*.pt")):
        raise InputError(f"no bundled model in {BUNDLED} (train one, see tools/train.py, "
                         "or pass --weights PATH)")
    return str(BUNDLED)


def format_line(image: str, det: dict) -> str:
    box = ", ".join(f"{v:.1f}" for v in det["box"])
    return f"{image} {det['category']} {det['score']:.4f} [{box}]"


def draw(pixels: np.ndarray, entry: dict, path: str, min_score: float = 0.0) -> None:
    """Save the image with the boxes scoring ``min_score`` or more drawn, atomically, as PNG."""
    shown = [d for d in entry["detections"] if d["score"] >= min_score]
    picture = draw_detections(pixels, [d["box"] for d in shown], [d["label"] for d in shown],
                              [d["score"] for d in shown], class_names={d["label"]: d["category"] for d in shown})
    save_image(path, picture)


def report(item: Prefetched, detector, out: str | None, draw_threshold: float) -> dict:
    """Detect in one prefetched image with a :class:`detector.api.Detector`; prints its lines and
    returns its JSON entry."""
    image = item.image
    proposals = complete_proposals(detector.proposer, image.pixels, item.proposals)
    dets = detector.detect_proposals(image.pixels, proposals)
    full = dataclasses.replace(dets, boxes=image.to_full(dets.boxes))  # boxes in the file's pixels
    entry = detect_record(item.path, image.full_size, full, detector.classes)
    for det in entry["detections"]:
        tqdm.write(format_line(item.path, det))  # keeps the progress bar intact on a terminal
    if out:  # drawn on the (possibly reduced) decoded pixels, so with the boxes in those pixels
        shown = detect_record(item.path, image.pixels.shape[1::-1], dets, detector.classes)
        draw(image.pixels, shown, os.path.join(out, Path(item.path).stem + ".png"), draw_threshold)
    return entry


def detect_all(items, count: int, detector, args) -> tuple[list[dict], int]:
    """Detect in every prefetched item; (the JSON entries, the number of images that failed)."""
    entries, failed = [], 0
    # The bar only on a terminal (disable=None): piped stderr keeps exactly one line per failed image.
    for item in tqdm(items, total=count, desc="detect", unit="img", disable=None if count > 1 else True,
                     leave=False):
        error = item.error
        if error is None:
            try:
                entries.append(report(item, detector, args.out, args.draw_threshold))
            except Exception as err:  # one bad image must not stop the batch; say which and why
                log.debug("%s failed", item.path, exc_info=True)
                error = failure(item.path, err)
        if error is not None:
            tqdm.write(f"error: {error}", file=sys.stderr)
            failed += 1
    return entries, failed


def main(argv=None) -> int:
    args = parse_args(argv)
    schema = load_config(DetectSchema, args.config, args.overrides)
    cfg = schema.detector
    if args.proposals:
        cfg = dataclasses.replace(cfg, proposal_method=args.proposals)
    paths = list_images(args.images)
    if not paths:
        raise InputError(f"{' '.join(args.images)}: no images found")
    weights = resolve_weights(args.weights)
    # Selective search of the next images runs in a worker while this process classifies; it
    # starts before torch and the networks load, so that the two starts overlap.
    with prefetch(paths, build_background_proposer, (cfg.proposal_method, schema.proposals),
                  ahead=args.prefetch) as items:
        from detector.api import Detector  # torch, imported while the worker starts (see the top)

        detector = Detector.load(weights, args.device, cfg, schema.proposals)
        entries, failed = detect_all(items, len(paths), detector, args)
    if args.json:
        write_json(args.json, entries, indent=1)
    save_run_config(dataclasses.replace(schema, detector=cfg), args.out, args.json)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run(main))
