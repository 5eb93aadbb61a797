"""Pretrain a region classifier on an endless stream of rendered object crops (the ImageNet step).

    python tools/pretrain.py --config configs/pretrain.yaml --out runs/pretrain [--resume]
        [--device cpu|cuda] [--set train.epochs=30] [--set classifier.width=0.5]

The network is the members' own (nets/inception.py through detector.classifier, any width and
input size); the stream renders fresh synthetic images (never a train or val image) and warps
their objects (15 classes) and background boxes (clutter, distractors, parts of objects, badly
centred crops) with context, in ``stream.workers`` processes (detector/pretrain.py).
Writes, after every epoch (``train.steps_per_epoch`` steps), OUT/pretrain.pt (atomically; a
region-classifier checkpoint), OUT/pretrain_history.json (loss and held-out top-1, overall, per
class and how often an object is called background) and OUT/pretrain.yaml; OUT/stream.png shows
the first crops of the stream. --resume continues from OUT/pretrain.pt (same config, except
train.epochs and stream.workers). Members and MultiBox start from it with
``tools/train.py --pretrained OUT/pretrain.pt`` and ``tools/train_multibox.py --pretrained OUT/pretrain.pt``.

Under ``torchrun --nproc_per_node N tools/pretrain.py ...`` (same arguments) the N ranks share each
minibatch (DistributedDataParallel, BatchNorm and dropout synchronised as in tools/train.py): every
rank renders the whole minibatch and trains on its block, so the run equals one process's within
float tolerance; rank 0 evaluates and writes the files.

    python tools/pretrain.py --heldout CHECKPOINT [CHECKPOINT ...] [--json OUT.json] [--config ...]

trains nothing: it scores each region-classifier checkpoint (a pretraining run's pretrain.pt or an
ensemble member, exported or not) on the held-out crops a pretraining run reports (the stream and
seed of --config; warped with each checkpoint's own input size and context), one line per
checkpoint: objects named, objects called background, background called background. A
checkpoint that cannot be scored costs one stderr line and the others go on (exit status 1).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys

import numpy as np
import torch

from core.cli import run
from core.config import add_config_args, config_to_dict, load_config, save_config
from core.distributed import ddp_model, trainer_world
from core.draw import contact_sheet, save_image
from core.engine import fit
from core.engine import resume as engine_resume
from core.errors import InputError
from core.io import write_json
from detector.checkpoint import KIND, load_member, save_checkpoint, upgrade
from detector.classifier import RegionClassifier
from detector.config import ClassifierConfig
from detector.pretrain import (RESUMABLE, TRAIN_SPLIT, CropStream, PretrainConfig, StreamConfig, crop_batch,
                               heldout_accuracy, heldout_set, pretrain_recipe, stream_classes)


@dataclasses.dataclass(frozen=True)
class Schema:
    classifier: ClassifierConfig = ClassifierConfig()
    stream: StreamConfig = StreamConfig()
    train: PretrainConfig = PretrainConfig()


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/pretrain", help="output folder")
    p.add_argument("--resume", action="store_true", help="continue from OUT/pretrain.pt")
    p.add_argument("--device", default="cpu")
    p.add_argument("--heldout", nargs="+", metavar="CHECKPOINT",
                   help="score these checkpoints on the held-out crops instead of training")
    p.add_argument("--json", help="with --heldout: write every score (per class too) to this file")
    add_config_args(p)
    return p.parse_args(argv)


def stream_preview(classifier: ClassifierConfig, stream: StreamConfig, seed: int, path: str, count: int = 32) -> None:
    """A contact sheet of the stream's first ``count`` crops, each titled with its label."""
    crops, labels = crop_batch(seed, TRAIN_SPLIT, 0, classifier, stream)
    names = ["background"] + stream_classes()
    mean, std = torch.tensor(classifier.mean)[:, None, None], torch.tensor(classifier.std)[:, None, None]
    tiles = [np.ascontiguousarray((((c * std + mean).clamp(0, 1) * 255).byte().permute(1, 2, 0)).numpy())
             for c in crops[:count]]
    save_image(path, contact_sheet(tiles, [names[int(t)] for t in labels[:count]], cols=8, cell=96), colors=256)


def heldout_scores(paths: list[str], cfg: Schema, device: str) -> tuple[dict, int]:
    """Each checkpoint's :func:`heldout_accuracy` on the held-out crops (one set per input size and
    context, cached); ``({path: row}, failures)``, every failure said in one stderr line."""
    sets, rows, failed = {}, {}, 0
    for path in paths:
        try:
            model = load_member(path, device, expect_classes=stream_classes()).model.float()
            if model.cfg not in sets:
                sets[model.cfg] = heldout_set(cfg.train.seed, model.cfg, cfg.stream)
            crops, labels = sets[model.cfg]
            with torch.inference_mode():
                rows[path] = heldout_accuracy(model, crops.to(device), labels.to(device))
        except InputError as err:
            print(f"error: {err}", file=sys.stderr)
            failed += 1
            continue
        r = rows[path]
        print(f"{path}: objects named {100 * r['object_top1']:.1f}%, called background "
              f"{100 * r['object_called_background']:.1f}%; background right {100 * r['background_top1']:.1f}%")
    return rows, failed


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = load_config(Schema, args.config, args.overrides)
    if args.heldout:
        rows, failed = heldout_scores(args.heldout, cfg, args.device)
        if args.json:
            write_json(args.json, rows, indent=1)
        return 1 if failed else 0
    world, args.device = trainer_world(args.device)
    torch.manual_seed(cfg.train.seed)
    model = RegionClassifier(stream_classes(), cfg.classifier).to(args.device)
    stream = CropStream(cfg.train.seed, cfg.classifier, cfg.stream)
    # only rank 0 evaluates (core.engine), so only it renders the held-out crops
    heldout = heldout_set(cfg.train.seed, cfg.classifier, cfg.stream) if world.is_main else None
    path = os.path.join(args.out, "pretrain.pt")
    os.makedirs(args.out, exist_ok=True)
    if world.is_main:
        save_config(cfg, os.path.join(args.out, "pretrain.yaml"))
        stream_preview(cfg.classifier, cfg.stream, cfg.train.seed, os.path.join(args.out, "stream.png"))

    def evaluate(state) -> dict:
        return heldout_accuracy(model, heldout[0].to(args.device), heldout[1].to(args.device))

    def save(state) -> None:
        save_checkpoint(path, model, config_to_dict(cfg), -1, state.epoch, optimizer.state_dict(),
                        train_state=state.to_dict())
        write_json(os.path.join(args.out, "pretrain_history.json"), state.history, indent=1)

    net = ddp_model(model.to(memory_format=torch.channels_last), world, args.device)
    recipe, optimizer = pretrain_recipe(model, stream, cfg.train, save, evaluate, args.device, world, net)
    state = None
    if args.resume and os.path.isfile(path):
        state, _ = engine_resume(path, KIND, model, optimizer, config_to_dict(cfg), RESUMABLE, upgrade)
    fit(recipe, state)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
