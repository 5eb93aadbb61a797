"""Region proposals for images.

    python tools/propose.py IMAGE [IMAGE ...] --method {ss,ss2x,multibox,merged} [--json FILE]

``--json FILE`` writes a list of ``{"image": str, "boxes": [[x1, y1, x2, y2], ...], "seconds": float}``:
``image`` as given, boxes xyxy in rank order in the original image's pixels, ``seconds`` the time to
compute that image's proposals (not reading the image, not loading models). An image that cannot
be read or proposed for is one ``error:`` line on stderr and has no record; the others go on. Exit
status: 0 when every image succeeded, 1 when some failed, 2 on a usage or config error or when no
image was given (an empty folder). Images above core.image.WORK_PIXELS are proposed for at a
reduced size; their boxes are mapped back to the original pixels.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time

from tqdm import tqdm

import core.cli
from core.config import add_config_args, load_config, save_run_config
from core.errors import InputError
from core.image import WORK_PIXELS, ImageError, list_images, load_image
from core.io import write_json
from eval.inputs import propose_record
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


def propose_one(path: str, proposer) -> dict:
    """The JSON record of one image (boxes xyxy in original pixels, rank order)."""
    image = load_image(path, WORK_PIXELS)
    start = time.perf_counter()
    proposals = proposer(image.pixels)
    seconds = time.perf_counter() - start
    log.info("%s: %d proposals in %.3f s", path, len(proposals), seconds)
    return propose_record(path, image.to_full(proposals.boxes), seconds)


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = load_config(ProposalsConfig, args.config, args.overrides)
    paths = list_images(args.images)
    if not paths:
        raise InputError(f"{' '.join(args.images)}: no images found")
    proposer = build_proposer(args.method, cfg, args.multibox_weights, args.device)
    records, failed = [], 0
    for path in tqdm(paths, desc=args.method, unit="img"):
        try:
            records.append(propose_one(path, proposer))
        except ImageError as err:  # one bad image must not stop the batch (as tools/detect.py)
            tqdm.write(f"error: {err}", file=sys.stderr)
            failed += 1
        except Exception as err:
            log.debug("%s failed", path, exc_info=True)
            tqdm.write(f"error: {path}: proposals failed ({type(err).__name__}: {err})", file=sys.stderr)
            failed += 1
    if args.json:  # the good images' records; a failed image has none
        write_json(args.json, records)
        save_run_config(cfg, args.json)
        log.info("wrote %s", args.json)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(core.cli.run(main))
