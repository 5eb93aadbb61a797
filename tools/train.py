"""Train one ensemble member (a region classifier) on a COCO-format split.

    python tools/train.py --config configs/detector.yaml --member I [--out runs/detector]
        [--resume] [--device cpu|cuda] [--set train.epochs=3] [--export assets/model/member_I.pt]
        [--pretrained googlenet.pth] [--proposals-only] [--mine WEIGHTS]

A split folder holds annotations.json (COCO) and images/ (tools/make_synthetic.py writes them).
Member I differs from the others as GLN's six did (detector.config.member_variant): seed
(initialisation and image order), context padding and crop jitter. Proposals of the train and
val splits come from the proposal cache (computed once, shared by all members). Writes
OUT/member_I.pt after every epoch (atomically), OUT/member_I.yaml (effective config) and
OUT/member_I_history.json (loss, val loss, val mAP per epoch). --resume continues from
OUT/member_I.pt (same config required). --export FILE also writes a slim copy (no optimizer
state, fp16 weights) for assets/model/. --proposals-only fills the proposal cache and stops (so that
members started side by side do not compute the same proposals twice). --mine WEIGHTS scores the
training split's background windows with a trained member (or a folder's ensemble), writes the
highest-scoring ones (mining.min_score, mining.per_image) to OUT/hard_negatives.npz and stops;
training with ``--set data.hard_negatives=OUT/hard_negatives.npz --set sampler.hard_fraction=F``
then draws F of every minibatch's background from them (R-CNN's hard-negative mining,
detector.hard_negatives).

Under ``torchrun --nproc_per_node N tools/train.py ...`` (same arguments) one member trains with
DistributedDataParallel: each rank warps its block of every minibatch's regions, BatchNorm is
synchronised, the losses are the global minibatch's; rank 0 validates and writes the files; each
rank fills its share of the proposal cache; threads are split over the ranks of a machine.

--pretrained PATH starts from a network pretrained by tools/pretrain.py on rendered crops (the
whole network when its classes are the split's, else its trunk; its preprocessing is kept), or
from torchvision's ImageNet GoogLeNet: a state-dict file you have
(nothing is downloaded; online, make one with ``torch.save(torchvision.models.googlenet(
weights="IMAGENET1K_V1").state_dict(), "googlenet.pth")``). It needs ``classifier.width=1.0``;
the classifier layers are left new (other class count) and the preprocessing becomes the one
those weights expect (mean = std = 0.5, nets.inception.TORCHVISION_GOOGLENET_MEAN/STD), recorded
in the member's config so detection uses it too.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import os
import sys

import torch

from core.cli import run
from core.config import (COUNT, add_config_args, check_ranges, config_to_dict, load_config,
                         save_config)
from core.distributed import World, gather, shard, trainer_world
from core.errors import InputError
from core.formats.coco import read_split
from core.io import write_json
from detector.bbox_regression import train_box_regressor
from detector.checkpoint import save_checkpoint
from detector.classifier import RegionClassifier
from detector.config import (BBoxRegressionConfig, ClassifierConfig, DetectorConfig, SamplerConfig,
                             TrainConfig, member_variant)
from detector.hard_negatives import MiningConfig, load_negatives, mine, save_negatives
from detector.pipeline import load_members
from detector.pretrain import load_pretrained, read_pretrained
from detector.sampler import RegionSampler
from detector.train import ImageStore, TrainState, fit, make_optimizer, make_validation, resume
from nets.inception import TORCHVISION_GOOGLENET_MEAN, TORCHVISION_GOOGLENET_STD, load_torchvision_googlenet
from proposals.build import METHODS, ProposalsConfig, build_proposer, proposer_key
from proposals.cache import dataset_proposals

log = logging.getLogger("train")

@dataclasses.dataclass(frozen=True)
class DataConfig:
    train: str = "data/train"  # split folder: annotations.json + images/
    val: str = "data/val"  # split for the per-epoch val loss and mAP ("" to skip)
    proposal_method: str = "ss2x"  # training windows: ss2x + the GT boxes, as R-CNN trained on selective
    # search; detection adds MultiBox (merged). Keeps members independent of the MultiBox weights.
    multibox_weights: str = ""  # "" = proposals.build's default, assets/model/multibox.pt
    cache_dir: str = "cache/proposals"  # proposal cache, keyed by image content and parameters
    workers: int = 2  # processes computing proposals
    max_images: int = 0  # use only the first N training images (0 = all)
    hard_negatives: str = ""  # mined hard negatives (--mine) for sampler.hard_fraction ("" = none)

    def __post_init__(self):
        check_ranges(self, proposal_method=METHODS, workers=COUNT, max_images=COUNT)


@dataclasses.dataclass(frozen=True)
class Schema:
    data: DataConfig = DataConfig()
    proposals: ProposalsConfig = dataclasses.field(default_factory=ProposalsConfig)
    classifier: ClassifierConfig = ClassifierConfig()
    sampler: SamplerConfig = SamplerConfig()
    train: TrainConfig = TrainConfig()
    bbox_regression: BBoxRegressionConfig = BBoxRegressionConfig()
    mining: MiningConfig = MiningConfig()  # --mine
    detector: DetectorConfig = DetectorConfig()  # for the per-epoch val mAP


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--member", type=int, required=True, help="ensemble member index (0..5)")
    p.add_argument("--out", default="runs/detector", help="output folder")
    p.add_argument("--resume", action="store_true", help="continue from OUT/member_I.pt")
    p.add_argument("--device", default="cpu")
    p.add_argument("--export", help="also write a slim fp16 checkpoint here when done")
    p.add_argument("--proposals-only", action="store_true",
                   help="only compute the splits' proposals into the cache (data.workers processes), then stop")
    p.add_argument("--mine", metavar="WEIGHTS",
                   help="mine the training split's hard negatives with these member weights (a file or a folder) "
                        "into OUT/hard_negatives.npz, then stop")
    p.add_argument("--pretrained", metavar="PATH",
                   help="start from a tools/pretrain.py checkpoint, or from torchvision's GoogLeNet ImageNet "
                        "state dict (needs classifier.width=1.0)")
    add_config_args(p)
    return p.parse_args(argv)


def split_proposals(dataset, cfg: Schema, world: World = World()) -> dict:
    """Cached proposals of a split for the configured method (under torchrun each rank first fills
    the cache for its share of the images)."""
    mb = cfg.data.multibox_weights or None
    method = cfg.data.proposal_method
    factory = functools.partial(build_proposer, method, cfg.proposals, mb)
    key = proposer_key(method, cfg.proposals, mb)
    if world.size > 1:
        part = dataclasses.replace(dataset, images=shard(dataset.images, world))
        dataset_proposals(part, factory, cfg.data.cache_dir, key, cfg.data.workers)
        gather(world, None)  # every part is in the cache
    return dataset_proposals(dataset, factory, cfg.data.cache_dir, key, cfg.data.workers)


def split_boxes(dataset, cfg: Schema, world: World = World()) -> dict:
    """``image_id -> [P, 4]`` boxes of :func:`split_proposals`."""
    return {k: p.boxes for k, p in split_proposals(dataset, cfg, world).items()}


def member_config(schema: Schema, member: int) -> Schema:
    """The schema with member ``member``'s classifier, sampler and train variants."""
    classifier, sampler, train = member_variant(member, schema.classifier, schema.sampler, schema.train)
    return dataclasses.replace(schema, classifier=classifier, sampler=sampler, train=train)


def pretrained_config(cfg: Schema, blob: dict | None) -> Schema:
    """The preprocessing the pretrained weights were trained with: a pretraining checkpoint's
    (``blob``), or torchvision's GoogLeNet's (``blob`` None)."""
    own = blob["config"].get("classifier", {}) if blob is not None else {}
    classifier = dataclasses.replace(cfg.classifier, mean=tuple(own.get("mean", TORCHVISION_GOOGLENET_MEAN)),
                                     std=tuple(own.get("std", TORCHVISION_GOOGLENET_STD)))
    return dataclasses.replace(cfg, classifier=classifier)


def mine_negatives(weights: str, train_set, cfg: Schema, out: str, device="cpu") -> str:
    """Mine ``train_set``'s hard negatives with ``weights`` into ``out``/hard_negatives.npz."""
    members = load_members(weights, device)
    boxes = split_boxes(train_set, cfg)
    mined = mine(train_set, boxes, ImageStore(train_set, cache=False).get, members, cfg.sampler, cfg.mining)
    path = os.path.join(out, "hard_negatives.npz")
    save_negatives(path, mined)
    count = sum(len(b) for b, _ in mined.values())
    log.info("%s: %d hard negatives in %d of %d images", path, count,
             sum(len(b) > 0 for b, _ in mined.values()), len(mined))
    return path


def hard_negatives(cfg: Schema, train_set) -> dict | None:
    """The mined windows ``data.hard_negatives`` names (None if none); sampler.hard_fraction needs them."""
    if cfg.sampler.hard_fraction > 0 and not cfg.data.hard_negatives:
        raise InputError(f"sampler.hard_fraction: {cfg.sampler.hard_fraction} needs data.hard_negatives "
                         "(a file tools/train.py --mine writes)")
    if not cfg.data.hard_negatives:
        return None
    mined = load_negatives(cfg.data.hard_negatives)
    if not any(ann.file_name in mined for ann in train_set.images):
        raise InputError(f"{cfg.data.hard_negatives}: none of its images is in {cfg.data.train} "
                         "(mined on another split?)")
    return mined


def main(argv=None) -> int:
    args = parse_args(argv)
    world, args.device = trainer_world(args.device)
    cfg = member_config(load_config(Schema, args.config, args.overrides), args.member)
    blob = read_pretrained(args.pretrained) if args.pretrained else None
    if args.pretrained:
        cfg = pretrained_config(cfg, blob)
    torch.manual_seed(cfg.train.seed)
    train_set = read_split(cfg.data.train, cfg.data.max_images)
    val_set = read_split(cfg.data.val) if cfg.data.val else None
    if args.proposals_only:  # fills the shared cache once, before members train side by side
        for dataset in [d for d in (train_set, val_set) if d is not None]:
            split_proposals(dataset, cfg, world)
        return 0
    if args.mine:
        if world.size > 1:
            raise InputError("--mine runs in one process, not under torchrun")
        mine_negatives(args.mine, train_set, cfg, args.out, args.device)
        return 0
    hard = hard_negatives(cfg, train_set)
    model = RegionClassifier(train_set.classes, cfg.classifier)
    if blob is not None:
        log.info("%s: starting from its %s", args.pretrained, load_pretrained(model.net, blob, args.pretrained,
                                                                               train_set.classes))
    elif args.pretrained:
        load_torchvision_googlenet(model.net, args.pretrained, load_classifier=False)
    model = model.to(args.device)
    optimizer = make_optimizer(model, cfg.train)
    stem = os.path.join(args.out, f"member_{args.member}")
    state = TrainState()
    if args.resume and os.path.isfile(stem + ".pt"):
        state = resume(stem + ".pt", model, optimizer, config_to_dict(cfg))
    save_config(cfg, stem + ".yaml")
    boxes = split_boxes(train_set, cfg, world)
    sampler = RegionSampler(train_set, boxes, cfg.sampler, seed=cfg.train.seed, hard=hard)
    val = make_validation(val_set, split_proposals(val_set, cfg, world), cfg.sampler, cfg.train) if val_set else None

    def save(s: TrainState, regressor=None) -> None:
        save_checkpoint(stem + ".pt", model, config_to_dict(cfg), args.member, s.epoch,
                        optimizer.state_dict(), regressor, train_state=s.to_dict())
        write_json(stem + "_history.json", s.history, indent=1)

    fit(model, optimizer, sampler, ImageStore(train_set, cfg.train.cache_images), cfg.train,
        cfg.sampler.jitter, state, save, val, cfg.detector, args.device, world)
    regressor = None
    if cfg.train.bbox_regression and world.is_main:
        regressor = train_box_regressor(model, train_set, boxes, cfg.bbox_regression).to_dict()
        save(state, regressor)
    if args.export:
        save_checkpoint(args.export, model, config_to_dict(cfg), args.member, state.epoch,
                        bbox_regressor=regressor, half=True)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
