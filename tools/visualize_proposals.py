"""Draw the top-N proposals of images, coloured by source, with the ground truth covered or missed.

    python tools/visualize_proposals.py IMAGE [IMAGE ...] [--method ...] [--top N] [--gt FILE] --out OUT.png
    python tools/visualize_proposals.py --dataset DIR [--split val] [--max-images 16] --out SHEET.png

One image gives one picture; several images, or ``--dataset`` (a split folder with annotations.json,
or its parent with ``--split``), give one contact-sheet PNG. ``--gt`` is a COCO annotations file
(boxes of the image with the same file name) or a JSON list of xyxy boxes (used for every image given).
Blue: selective search; orange: MultiBox; green: covered ground truth (IoU >= 0.5); red: missed.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
from tqdm import tqdm

import core.cli
from core.config import add_config_args, load_config, save_run_config
from core.draw import contact_sheet, draw_title, save_image
from core.errors import InputError
from core.formats.coco import read_coco, read_split
from core.image import list_images, load_image
from proposals.build import METHODS, ProposalsConfig, build_proposer
from proposals.visualize import draw_proposals


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="*", metavar="IMAGE", help="image files or folders")
    parser.add_argument("--method", choices=METHODS, default="merged", help="proposal method (default: merged)")
    parser.add_argument("--top", type=int, default=100, help="proposals drawn per image (default 100)")
    parser.add_argument("--gt", metavar="FILE", help="COCO annotations or a JSON list of xyxy boxes")
    parser.add_argument("--dataset", metavar="DIR", help="contact sheet of a split folder")
    parser.add_argument("--split", help="subfolder of --dataset holding the split (e.g. val)")
    parser.add_argument("--max-images", type=int, default=16, help="images in a --dataset sheet (default 16)")
    parser.add_argument("--cols", type=int, default=4, help="contact-sheet columns (default 4)")
    parser.add_argument("--cell", type=int, default=320, help="contact-sheet cell size in pixels (default 320)")
    parser.add_argument("--out", required=True, metavar="OUT.png", help="output PNG")
    parser.add_argument("--multibox-weights", metavar="FILE", help="default: assets/model/multibox.pt")
    parser.add_argument("--device", default="cpu", help="torch device for MultiBox (default: cpu)")
    add_config_args(parser)
    args = parser.parse_args(argv)
    if not args.images and not args.dataset:
        parser.error("give IMAGE(s) or --dataset DIR")
    return args


def read_gt(path: str, image_path: str) -> np.ndarray:
    """Ground-truth xyxy ``[G, 4]`` for ``image_path`` from a COCO file or a JSON list of boxes."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(f"{path}: cannot read ground truth ({err})") from None
    if isinstance(data, list):  # a plain list of boxes
        boxes = np.asarray(data, np.float32)
        if boxes.size and (boxes.ndim != 2 or boxes.shape[1] != 4):
            raise InputError(f"{path}: expected a list of [x1, y1, x2, y2] boxes")
        return boxes.reshape(-1, 4)
    dataset = read_coco(path)
    name = os.path.basename(image_path)
    for ann in dataset.images:
        if os.path.basename(ann.file_name) == name:
            return ann.boxes
    raise InputError(f"{path}: no image named {name}")


def inputs(args) -> list[tuple[str, np.ndarray | None]]:
    """(image path, ground truth or None) pairs to draw."""
    if args.dataset:
        folder = os.path.join(args.dataset, args.split) if args.split else args.dataset
        dataset = read_split(folder)
        return [(os.path.join(dataset.image_root, a.file_name), a.boxes)
                for a in dataset.images[: args.max_images]]
    paths = list_images(args.images)
    return [(p, read_gt(args.gt, p) if args.gt else None) for p in paths]


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = load_config(ProposalsConfig, args.config, args.overrides)
    proposer = build_proposer(args.method, cfg, args.multibox_weights, args.device)
    pairs = inputs(args)
    if not pairs:
        raise InputError(f"{args.dataset or ' '.join(args.images)}: no images to draw")
    sheet = len(pairs) > 1
    tiles, titles = [], []
    for path, gt in tqdm(pairs, desc="draw", unit="img"):
        image = load_image(path).pixels
        picture, hit = draw_proposals(image, proposer(image), args.top, gt, size=args.cell if sheet else None)
        caption = f"{os.path.basename(path)} {args.method} top {args.top}"
        tiles.append(picture)
        titles.append(f"{caption}  covered {int(hit.sum())}/{len(hit)}" if gt is not None and len(gt) else caption)
    save_image(args.out, contact_sheet(tiles, titles, args.cols, args.cell) if sheet else draw_title(tiles[0], titles[0]))
    save_run_config(cfg, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(core.cli.run(main))
