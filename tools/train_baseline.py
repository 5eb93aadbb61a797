"""Train torchvision's Faster R-CNN (MobileNetV3-FPN, from scratch) on a synthetic split, then score it.

    python tools/train_baseline.py --train data/train --val data/val --out runs/baseline \
        [--set baseline.budget_minutes=85] [--resume] [--device cpu]

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

from baseline.faster_rcnn import BaselineConfig, build_model, detect_dataset, train
from core.checkpoint import load_weights_only
from core.cli import run
from core.config import add_config_args, load_config, save_config
from core.errors import InputError
from core.formats.coco import read_split
from core.io import atomic_path, write_json


@dataclasses.dataclass(frozen=True)
class Schema:
    baseline: BaselineConfig = BaselineConfig()


def _save(path, model, optimizer, it, seconds, cfg, classes) -> None:
    with atomic_path(path) as tmp:
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "iteration": it,
                    "seconds": seconds, "config": dataclasses.asdict(cfg), "classes": list(classes)}, tmp)


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
    parser.add_argument("--device", default="cpu")
    add_config_args(parser)
    args = parser.parse_args(argv)
    cfg = load_config(Schema, args.config, args.overrides).baseline
    torch.manual_seed(cfg.seed)
    trainset = read_split(args.train)
    os.makedirs(args.out, exist_ok=True)
    save_config(Schema(cfg), os.path.join(args.out, "config.yaml"))
    model = build_model(len(trainset.classes), cfg)
    ckpt_path = os.path.join(args.out, "checkpoint.pt")
    start, spent, optimizer = 0, 0.0, None
    if args.eval_only and not os.path.isfile(ckpt_path):
        raise InputError(f"{ckpt_path}: no such checkpoint to score")
    if (args.resume and os.path.isfile(ckpt_path)) or args.eval_only:
        state = load_weights_only(ckpt_path)
        model.load_state_dict(state["model"])
        start, spent = int(state["iteration"]), float(state.get("seconds", 0.0))
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                                    momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        optimizer.load_state_dict(state["optimizer"])
    if not args.eval_only:
        train(model, trainset, cfg, args.device, start, optimizer, spent=spent,
              on_checkpoint=lambda it, opt, sec: _save(ckpt_path, model, opt, it, sec, cfg, trainset.classes))
    if args.val:
        report = score(model, read_split(args.val), args.device)
        write_json(os.path.join(args.out, "report.json"), report, indent=2)
        print(" ".join(f"{k}={v:.4f}" for k, v in report.items()))
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
