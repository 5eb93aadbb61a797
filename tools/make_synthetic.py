"""Generate the synthetic detection benchmark (bench/synthetic.py; README "The synthetic benchmark").

    python tools/make_synthetic.py --out DIR --images N --seed S [--split train|val] [--preview PNG]

Writes ``DIR/images/<split>_<index>.jpg``, ``DIR/annotations.json`` (COCO), the ILSVRC devkit
layout under ``DIR/ilsvrc/`` and the effective config as ``DIR/config.yaml``. The same seed and
split give the same files; ``--preview`` draws the first images with their boxes.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass, field

import core.cli
from core.config import add_config_args, load_config, save_config
from core.errors import InputError
from bench.synthetic import SyntheticConfig, generate_split, write_preview

log = logging.getLogger("make_synthetic")


@dataclass(frozen=True)
class MakeSyntheticConfig:
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--images", type=_count, required=True, metavar="N", help="number of images")
    parser.add_argument("--seed", type=_count, default=0, help="random seed, >= 0 (default: 0)")
    parser.add_argument("--split", choices=("train", "val"), default="train", help="split name (default: train)")
    parser.add_argument("--workers", type=_count, default=1, help="worker processes (default: 1)")
    parser.add_argument("--preview", metavar="PNG", help="also write a picture of the first images")
    parser.add_argument("--preview-count", type=_count, default=8, metavar="N",
                        help="images in the preview (default: 8)")
    add_config_args(parser)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = load_config(MakeSyntheticConfig, args.config, args.overrides)
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise InputError(f"{args.out}: --out exists and is not a folder")
    dataset = generate_split(args.out, args.images, args.seed, args.split, args.workers, cfg.synthetic)
    save_config(cfg, os.path.join(args.out, "config.yaml"))
    if args.preview:
        if not dataset.images or not args.preview_count:
            raise InputError(f"{args.preview}: no images to preview")
        write_preview(dataset, args.preview, args.preview_count)
        log.info("wrote %s", args.preview)
    return 0


if __name__ == "__main__":
    sys.exit(core.cli.run(main))
