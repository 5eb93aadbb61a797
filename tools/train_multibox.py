"""Train the MultiBox proposal network on a COCO-format split (e.g. the synthetic benchmark).

    python tools/train_multibox.py --config configs/multibox.yaml [--set train.epochs=5] \\
        [--train DIR] [--val DIR] [--out runs/multibox] [--resume] [--device cpu|cuda]

A split folder holds annotations.json (COCO) and images/ (tools/make_synthetic.py writes them).
Writes OUT/config.yaml (the effective config), OUT/checkpoint.pt after every epoch (atomically;
load it with proposals.multibox.load_multibox) and OUT/history.json (loss and val proposal recall
per epoch). --resume continues from OUT/checkpoint.pt with the same config (more epochs, another
val split and the inference settings multibox.nms_iou / top_k may change). --pretrained PATH starts
the trunk from a tools/pretrain.py checkpoint of the same width (its classes are not used).

Under ``torchrun --nproc_per_node N tools/train_multibox.py ...`` (same arguments) the network
trains with DistributedDataParallel: each rank takes a block of every batch's images (every rank
loads the whole split), BatchNorm is synchronised, the losses are the whole batch's; rank 0
computes the val recall and writes the files; threads are split over the ranks of a machine.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys

import torch

from core.cli import run
from core.config import add_config_args, config_to_dict, load_config, save_config
from core.distributed import trainer_world
from core.engine import fit
from core.errors import InputError
from core.formats.coco import read_split
from core.io import write_json
from detector.pretrain import load_pretrained, read_pretrained
from proposals.multibox import (MultiBoxConfig, MultiBoxProposer, build_net, kmeans_priors, load_multibox,
                                read_checkpoint, save_checkpoint)
from proposals.multibox_train import MultiBoxTrainConfig, load_split, make_optimizer, multibox_recipe, resume

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
    """Mean proposals per image, recall at IoU 0.5 and 0.7 and ABO of the top-k boxes on a split
    (eval.recall's definitions)."""
    from eval.recall import proposal_recall

    props = {}
    for start in range(0, len(images), 64):
        batch = proposer.propose_resized(images[start:start + 64], sizes[start:start + 64])
        for ann, p in zip(dataset.images[start:start + 64], batch):
            props[ann.image_id] = p.boxes
    report = proposal_recall(dataset, props)
    return {"proposals": report.mean_proposals, "recall@0.5": report.coverage,
            "recall@0.7": report.recall_07, "ABO": report.abo}


def _fmt(row: dict) -> str:
    return " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())


def _priors(args, cfg, ckpt: str, train_targets) -> torch.Tensor:
    """The checkpoint's priors with --resume, else k-means priors of the training boxes."""
    mcfg = cfg.multibox
    if args.resume and os.path.exists(ckpt):
        return read_checkpoint(ckpt)[0]["model"]["priors"].float()
    all_boxes = torch.cat(train_targets) if train_targets else torch.zeros(0, 4)
    try:
        return kmeans_priors(all_boxes, mcfg.num_priors, mcfg.prior_seed, mcfg.kmeans_iters)
    except ValueError as err:
        raise InputError(f"{cfg.data.train}: {err}") from None


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", help="train split folder (overrides data.train)")
    parser.add_argument("--val", help="val split folder (overrides data.val)")
    parser.add_argument("--out", default="runs/multibox", help="output folder")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    parser.add_argument("--eval-only", action="store_true",
                        help="only log val recall of OUT/checkpoint.pt (e.g. to try --set multibox.nms_iou=...)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--pretrained", metavar="PATH",
                        help="start the trunk from a tools/pretrain.py checkpoint (same width)")
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
    world, args.device = trainer_world(args.device)
    torch.manual_seed(tcfg.seed)
    train_images, train_targets, _ = load_split(read_split(cfg.data.train, tcfg.max_images), mcfg.input_size)
    val = read_split(cfg.data.val, tcfg.val_images) if cfg.data.val else None
    val_images, _, val_sizes = load_split(val, mcfg.input_size) if val else (None, None, None)
    ckpt = os.path.join(args.out, "checkpoint.pt")
    model = build_net(mcfg, _priors(args, cfg, ckpt, train_targets))
    if args.pretrained and not (args.resume and os.path.exists(ckpt)):
        blob = read_pretrained(args.pretrained)
        if blob is None:
            raise InputError(f"{args.pretrained}: not a tools/pretrain.py checkpoint")
        load_pretrained(model.trunk, blob, args.pretrained)
    model = model.to(args.device)
    optimizer = make_optimizer(model, tcfg)
    config = config_to_dict(cfg)
    state = resume(ckpt, model, optimizer, config) if args.resume and os.path.exists(ckpt) else None
    save_config(cfg, os.path.join(args.out, "config.yaml"))  # after the resume check: never clobbered
    proposer = MultiBoxProposer(model, model.priors, mcfg, args.device)

    def evaluate(_state) -> dict:
        return val_recall(proposer, val, val_images, val_sizes) if val is not None else {}

    def save(s) -> None:
        save_checkpoint(ckpt, model, mcfg, config, optimizer.state_dict(), s.to_dict())
        write_json(os.path.join(args.out, "history.json"), s.history, indent=2)

    fit(multibox_recipe(model, optimizer, train_images, train_targets, mcfg, tcfg, save, evaluate, world), state)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
