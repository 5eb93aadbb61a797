"""Region proposals for images.

    python tools/propose.py IMAGE [IMAGE ...] --method {ss,ss2x,multibox,merged} [--json FILE]

``--json FILE`` writes a list of ``{"image": str, "boxes": [[x1, y1, x2, y2], ...], "seconds": float}``:
``image`` as given, boxes xyxy in rank order in the original image's pixels, ``seconds`` the time to
compute that image's proposals (not reading the image, not loading models).
"""
from __future__ import annotations

import argparse
import logging
import sys
import time

import numpy as np
from tqdm import tqdm

import core.cli
from core.config import add_config_args, load_config
from core.image import list_images, load_image
from core.io import write_json
from proposals.build import METHODS, ProposalsConfig, build_proposer

log = logging.getLogger("propose")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders")
    parser.add_argument("--method", choices=METHODS, default="merged", help="proposal method (default: merged)")
    parser.add_argument("--json", metavar="FILE", help="write the proposals of every image here")
    parser.add_argument("--multibox-weights", metavar="FILE",
                        help="MultiBox checkpoint (default: assets/model/multibox.pt)")
    parser.add_argument("--device", default="cpu", help="torch device for MultiBox (default: cpu)")
    add_config_args(parser)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = load_config(ProposalsConfig, args.config, args.overrides)
    proposer = build_proposer(args.method, cfg, args.multibox_weights, args.device)
    records = []
    for path in tqdm(list_images(args.images), desc=args.method, unit="img"):
        pixels = load_image(path).pixels
        start = time.perf_counter()
        proposals = proposer(pixels)
        seconds = time.perf_counter() - start
        boxes = np.round(proposals.boxes.astype(np.float64), 3).tolist()  # float32 noise off
        records.append({"image": path, "boxes": boxes, "seconds": round(seconds, 6)})
        log.info("%s: %d proposals in %.3f s", path, len(proposals), seconds)
    if args.json:
        write_json(args.json, records)
        log.info("wrote %s", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(core.cli.run(main))
