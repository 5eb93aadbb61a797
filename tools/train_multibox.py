"""Train the MultiBox proposal network on a COCO-format split (e.g. the synthetic benchmark).

    python tools/train_multibox.py --config configs/multibox.yaml [--set train.epochs=5] \\
        [--train DIR] [--val DIR] [--out runs/multibox] [--resume] [--device cpu|cuda]

A split folder holds annotations.json (COCO) and images/ (tools/make_synthetic.py writes them).
Writes OUT/config.yaml (the effective config), OUT/checkpoint.pt after every epoch (atomically;
load it with proposals.multibox.load_multibox) and OUT/history.json (loss and val proposal recall
per epoch). --resume continues from OUT/checkpoint.pt with the same config.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import sys

import numpy as np
import torch
from tqdm import tqdm

from core.cli import run
from core.config import add_config_args, load_config, save_config
from core.errors import InputError
from core.formats.coco import read_split
from core.io import write_json
from core.checkpoint import git_commit
from proposals.multibox import (MultiBoxConfig, MultiBoxProposer, MultiBoxTrainConfig, build_net,
                                kmeans_priors, load_multibox, load_split, load_state, read_checkpoint,
                                save_checkpoint, train_epoch)

log = logging.getLogger("train_multibox")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    train: str = "data/train"  # split folder: annotations.json + images/
    val: str = "data/val"  # split for the per-epoch proposal recall ("" to skip)


@dataclasses.dataclass(frozen=True)
class Schema:
    data: DataConfig = DataConfig()
    multibox: MultiBoxConfig = MultiBoxConfig()
    train: MultiBoxTrainConfig = MultiBoxTrainConfig()


def val_recall(proposer: MultiBoxProposer, dataset, images, sizes) -> dict[str, float]:
    """Recall at IoU 0.5/0.7 and ABO of the top-k boxes on a split (+ eval.recall's coverage if present)."""
    props = {}
    for start in range(0, len(images), 64):
        batch = proposer.propose_resized(images[start:start + 64], sizes[start:start + 64])
        for ann, p in zip(dataset.images[start:start + 64], batch):
            props[ann.image_id] = p.boxes
    mean_count = float(np.mean([len(b) for b in props.values()])) if props else 0.0
    row = {"proposals": mean_count, **_local_recall(dataset, props)}
    try:
        from eval.recall import proposal_recall
    except ImportError:  # the evaluator is optional here: the local numbers suffice to follow training
        return row
    row["coverage"] = float(proposal_recall(dataset, props).coverage)  # the evaluator's recall@0.5
    return row


def _fmt(row: dict) -> str:
    return " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())


def _local_recall(dataset, props: dict[int, np.ndarray]) -> dict[str, float]:
    from torchvision.ops import box_iou
    best = []
    for ann in dataset.images:
        gt = torch.from_numpy(ann.boxes[~ann.iscrowd])
        if len(gt) == 0:
            continue
        boxes = torch.from_numpy(props[ann.image_id]).reshape(-1, 4)
        best.append(box_iou(gt, boxes).max(dim=1).values if len(boxes) else torch.zeros(len(gt)))
    best = torch.cat(best) if best else torch.zeros(0)
    if len(best) == 0:
        return {"recall@0.5": 0.0, "recall@0.7": 0.0, "ABO": 0.0}
    return {"recall@0.5": float((best >= 0.5).float().mean()),
            "recall@0.7": float((best >= 0.7).float().mean()), "ABO": float(best.mean())}


INFERENCE_ONLY = {"nms_iou": 0.0, "top_k": 0}  # may differ from the checkpoint's: they do not shape training


def _initial_state(args, cfg, ckpt: str, train_targets) -> tuple[torch.Tensor, dict | None]:
    """(priors, checkpoint state): the checkpoint's with --resume, else k-means priors and None."""
    mcfg = cfg.multibox
    if args.resume and os.path.exists(ckpt):
        state = read_checkpoint(ckpt)
        if dataclasses.replace(state["config"], **INFERENCE_ONLY) != dataclasses.replace(mcfg, **INFERENCE_ONLY):
            raise InputError(f"{ckpt}: written with a different multibox config; use another --out "
                             "or the same config to resume")
        return state["priors"], state
    all_boxes = torch.cat(train_targets) if train_targets else torch.zeros(0, 4)
    try:
        return kmeans_priors(all_boxes, mcfg.num_priors, mcfg.prior_seed, mcfg.kmeans_iters), None
    except ValueError as err:
        raise InputError(f"{cfg.data.train}: {err}") from None


def _restore(state: dict | None, ckpt: str, model, optimizer) -> tuple[int, list]:
    """Load a resumed checkpoint into model and optimizer; returns (first epoch, history)."""
    if state is None:
        return 0, []
    load_state(model, state["model"], ckpt)
    if state["optimizer"]:
        optimizer.load_state_dict(state["optimizer"])
    log.info("resuming %s at epoch %d", ckpt, state["epoch"] + 1)
    return state["epoch"], list(state.get("history", []))


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", help="train split folder (overrides data.train)")
    parser.add_argument("--val", help="val split folder (overrides data.val)")
    parser.add_argument("--out", default="runs/multibox", help="output folder")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    parser.add_argument("--eval-only", action="store_true",
                        help="only log val recall of OUT/checkpoint.pt (e.g. to try --set multibox.nms_iou=...)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    add_config_args(parser)
    args = parser.parse_args(argv)
    cfg = load_config(Schema, args.config, args.overrides)
    data = dataclasses.replace(cfg.data, train=args.train or cfg.data.train,
                               val=cfg.data.val if args.val is None else args.val)
    return args, dataclasses.replace(cfg, data=data)


def evaluate_only(args, cfg) -> int:
    """Val recall of OUT/checkpoint.pt under the current inference settings (nms_iou, top_k)."""
    ckpt = os.path.join(args.out, "checkpoint.pt")
    proposer = load_multibox(ckpt, args.device)
    proposer.cfg = dataclasses.replace(proposer.cfg, nms_iou=cfg.multibox.nms_iou, top_k=cfg.multibox.top_k)
    val = read_split(cfg.data.val, cfg.train.val_images)
    images, _, sizes = load_split(val, proposer.cfg.input_size)
    row = {"nms_iou": proposer.cfg.nms_iou, "top_k": proposer.cfg.top_k, **val_recall(proposer, val, images, sizes)}
    log.info(_fmt(row))
    return 0


def main(argv=None) -> int:
    args, cfg = _parse(argv)
    if args.eval_only:
        return evaluate_only(args, cfg)
    mcfg, tcfg = cfg.multibox, cfg.train
    torch.manual_seed(tcfg.seed)
    train_images, train_targets, _ = load_split(read_split(cfg.data.train, tcfg.max_images), mcfg.input_size)
    val = read_split(cfg.data.val, tcfg.val_images) if cfg.data.val else None
    val_images, _, val_sizes = load_split(val, mcfg.input_size) if val else (None, None, None)
    ckpt = os.path.join(args.out, "checkpoint.pt")
    priors, state = _initial_state(args, cfg, ckpt, train_targets)
    model = build_net(mcfg, priors).to(args.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    start, history = _restore(state, ckpt, model, optimizer)
    priors = priors.to(args.device)
    save_config(cfg, os.path.join(args.out, "config.yaml"))  # after the resume check: never clobbered
    proposer = MultiBoxProposer(model, priors, mcfg, args.device)
    for epoch in tqdm(range(start, tcfg.epochs), desc="epochs", unit="epoch", initial=start, total=tcfg.epochs):
        for group in optimizer.param_groups:  # cosine decay, set per epoch so resume needs no scheduler
            group["lr"] = tcfg.lr * 0.5 * (1 + math.cos(math.pi * epoch / tcfg.epochs))
        row = {"epoch": epoch + 1, **train_epoch(model, optimizer, train_images, train_targets, priors,
                                                mcfg, tcfg, epoch)}
        if val is not None:
            row.update(val_recall(proposer, val, val_images, val_sizes))
        history.append(row)
        log.info(_fmt(row))
        save_checkpoint(ckpt, model, priors, mcfg, epoch + 1, optimizer,
                        extra={"train_config": dataclasses.asdict(tcfg), "history": history,
                               "commit": git_commit()})
        write_json(os.path.join(args.out, "history.json"), history, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
