"""Train torchvision's Faster R-CNN on a synthetic split, then score it.

    python tools/train_baseline.py --train data/train --val data/val --out runs/baseline \
        [--set baseline.budget_minutes=85] [--resume] [--device cpu]
    python tools/train_baseline.py --train data/train --val data/val --out runs/baseline_inception \
        --set baseline.backbone=inception --pretrained assets/pretrain/pretrain.pt [--set baseline.clock=cpu]

The first is MobileNetV3-FPN from scratch; the second our Inception trunk under an FPN, started from
a tools/pretrain.py checkpoint (the same crop stream our members start from).

The budget is wall-clock minutes of training on this machine; for the same budget our models get,
set it to what tools/train_bundled.sh took (~210 for the 12-epoch bundle; the default 85 is the
earlier 6-epoch bundle's). A --resume with a larger budget continues training.
Writes OUT/checkpoint.pt, OUT/config.yaml and OUT/report.json (ILSVRC-rule mAP, COCO AP/AP50,
seconds per image on the val split).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys

import torch

from baseline.faster_rcnn import (BaselineConfig, build_model, detect_dataset, load_backbone, load_baseline,
                                  make_optimizer, resume, save_checkpoint, train)
from core.cli import run
from core.config import add_config_args, config_to_dict, load_config, save_config
from core.errors import InputError
from core.formats.coco import read_split
from core.io import write_json


@dataclasses.dataclass(frozen=True)
class Schema:
    baseline: BaselineConfig = BaselineConfig()


def score(model, val, device) -> dict:
    """Detections on the val split, scored by our evaluator under ILSVRC rules and COCO's."""
    from eval.api import evaluate
    dets, seconds = detect_dataset(model, val, device)
    ilsvrc = evaluate(val, dets, "ilsvrc")
    coco = evaluate(val, dets, "coco")
    return {"mAP_ilsvrc": ilsvrc.mAP, "coco_AP": coco.stats["AP"], "coco_AP50": coco.stats["AP50"],
            "seconds_per_image": seconds}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", required=True, help="synthetic train split folder")
    parser.add_argument("--val", help="val split folder to score on after training")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    parser.add_argument("--eval-only", action="store_true", help="score OUT/checkpoint.pt without training")
    parser.add_argument("--pretrained", metavar="PATH",
                        help="start the trunk from a tools/pretrain.py checkpoint (baseline.backbone=inception)")
    parser.add_argument("--device", default="cpu")
    add_config_args(parser)
    args = parser.parse_args(argv)
    schema = load_config(Schema, args.config, args.overrides)
    cfg, config = schema.baseline, config_to_dict(schema)
    torch.manual_seed(cfg.seed)
    trainset = read_split(args.train)
    model = build_model(len(trainset.classes), cfg)
    optimizer = make_optimizer(model, cfg)
    ckpt_path = os.path.join(args.out, "checkpoint.pt")
    if args.eval_only and not os.path.isfile(ckpt_path):
        raise InputError(f"{ckpt_path}: no such checkpoint to score")
    state = None
    if args.eval_only:  # scored as trained, whatever the current config says
        model = load_baseline(ckpt_path)[0]
    elif args.resume and os.path.isfile(ckpt_path):
        state = resume(ckpt_path, model, optimizer, config)
    elif args.pretrained:
        print(f"{args.pretrained}: loaded the {load_backbone(model, args.pretrained)}")
    os.makedirs(args.out, exist_ok=True)
    save_config(schema, os.path.join(args.out, "config.yaml"))  # after the resume check: never clobbered
    if not args.eval_only:
        train(model, trainset, cfg, optimizer, state, device=args.device,
              save=lambda s: save_checkpoint(ckpt_path, model, config, trainset.classes, optimizer, s))
    if args.val:
        report = score(model, read_split(args.val), args.device)
        write_json(os.path.join(args.out, "report.json"), report, indent=2)
        print(" ".join(f"{k}={v:.4f}" for k, v in report.items()))
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
