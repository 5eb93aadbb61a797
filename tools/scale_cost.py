"""What one training epoch and one val pass of a configuration cost, projected from measured rates.

    python tools/scale_cost.py --config configs/ilsvrc2014.yaml --images data/val/images \\
        [--max-images 4] [--crops 16] [--train-images 456567] [--val-images 20121] \\
        [--regions 1400] [--members 6] [--gpu-tflops 20] [--device cpu] [--json FILE]

Measured here, on --device, in CPU seconds of this process (so that other programs on a shared
machine do not inflate them; the classifier's are divided by its threads): seconds of one SGD step of a region classifier of the config's width
and input size on --crops crops (scaled linearly to sampler.batch_size), regions per second of its
forward pass (detector.batch_regions at a time), selective search (ss2x, the config's parameters)
seconds per image on --images, and the classifier's multiply-adds per region (counted by
torch.utils.flop_counter). Projected from them: an epoch = ceil(train images / images_per_batch)
steps (+ the one-time ss2x cache fill of the train images); a val pass = val images x (ss2x +
regions x members / regions per second). One GPU is projected by dividing the counted operations
by --gpu-tflops, a sustained rate you assume (nothing here measures a GPU); N processes or GPUs
divide either time by N (the ranks share nothing but the final merge).
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import sys
import time
from typing import Any

import torch

from core.cli import run
from core.config import add_config_args, load_config
from core.errors import InputError
from core.image import list_images, load_image
from core.io import write_json
from detector.config import ClassifierConfig, DetectorConfig, SamplerConfig, TrainConfig
from proposals.build import ProposalsConfig

log = logging.getLogger("scale_cost")


@dataclasses.dataclass(frozen=True)
class Schema:
    """A member's training config (configs/ilsvrc2014.yaml); data and box regression are unused."""

    data: Any = None
    proposals: ProposalsConfig = dataclasses.field(default_factory=ProposalsConfig)
    classifier: ClassifierConfig = ClassifierConfig()
    sampler: SamplerConfig = SamplerConfig()
    train: TrainConfig = TrainConfig()
    bbox_regression: Any = None
    detector: DetectorConfig = DetectorConfig()


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", required=True, help="folder of images to time selective search on")
    p.add_argument("--max-images", type=int, default=4)
    p.add_argument("--crops", type=int, default=16, help="crops in the timed SGD step")
    p.add_argument("--train-images", type=int, default=456567, help="ILSVRC 2014 DET train")
    p.add_argument("--val-images", type=int, default=20121, help="ILSVRC 2014 DET val")
    p.add_argument("--regions", type=int, default=1400, help="proposals per image (GoogLeNet: ~60%% of 2,403)")
    p.add_argument("--members", type=int, default=6)
    p.add_argument("--gpu-tflops", type=float, default=20.0, help="assumed sustained GPU rate")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", help="write the figures here")
    add_config_args(p)
    return p.parse_args(argv)


def time_it(fn, device: str = "cpu", repeats: int = 2) -> float:
    """Seconds of ``fn`` on this machine when it is not shared: the fastest of ``repeats`` calls
    (after an untimed warm-up). On CPU, in CPU seconds of this process divided by its threads
    (wall time would count the time other programs on a shared machine take from it); on CUDA,
    wall seconds to the end of the GPU's work."""
    cuda = str(device).startswith("cuda")
    clock = time.perf_counter if cuda else time.process_time
    fn()
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        if cuda:
            torch.cuda.synchronize()
        times.append(clock() - start)
    return min(times) if cuda else min(times) / torch.get_num_threads()


def classifier_rates(cfg, crops: int, device: str) -> dict:
    """Seconds per SGD step on ``crops`` crops, regions per second forward, multiply-adds per region."""
    from torch.utils.flop_counter import FlopCounterMode
    from detector.classifier import RegionClassifier
    from detector.train import make_optimizer, train_step

    model = RegionClassifier([f"c{k}" for k in range(200)], cfg.classifier).to(device)
    optimizer = make_optimizer(model, cfg.train)
    size = cfg.classifier.input_size
    x = torch.randn(crops, 3, size, size, device=device)
    y = torch.randint(0, 201, (crops,), device=device)
    step = time_it(lambda: train_step(model, optimizer, x, y, cfg.train.aux_weight), device)
    model.eval()
    batch = torch.randn(cfg.detector.batch_regions, 3, size, size, device=device)
    with torch.no_grad():
        forward = time_it(lambda: model(batch), device)
        with FlopCounterMode(display=False) as counter:
            model(batch[:1])
    return {"step_seconds_per_crop": step / crops, "regions_per_second": len(batch) / forward,
            "flops_per_region": counter.get_total_flops()}


def ss2x_seconds(cfg, images: list[str]) -> float:
    """Mean seconds of ss2x (the config's parameters) per image."""
    import cv2
    from proposals.build import build_proposer
    cv2.setNumThreads(1)  # so its CPU seconds are its wall seconds on an idle core
    proposer = build_proposer("ss2x", cfg.proposals)
    pixels = [load_image(p).pixels for p in images]
    start = time.process_time()
    for image in pixels:
        proposer(image)
    return (time.process_time() - start) / len(pixels)


def project(args, cfg, rates: dict, ss: float) -> dict:
    """Epoch and val-pass hours on this device and on one GPU at ``--gpu-tflops``."""
    steps = math.ceil(args.train_images / cfg.sampler.images_per_batch)
    crops = steps * cfg.sampler.batch_size
    regions = args.val_images * args.regions * args.members
    gpu = args.gpu_tflops * 1e12
    return {
        "epoch_minibatches": steps,
        "epoch_hours": crops * rates["step_seconds_per_crop"] / 3600,
        "train_proposals_hours": args.train_images * ss / 3600,
        "val_pass_hours": (args.val_images * ss + regions / rates["regions_per_second"]) / 3600,
        # training: forward + backward is about 3 forward passes of the counted operations
        "gpu_epoch_hours": 3 * crops * rates["flops_per_region"] / gpu / 3600,
        "gpu_val_classification_hours": regions * rates["flops_per_region"] / gpu / 3600,
        "val_proposals_hours": args.val_images * ss / 3600,
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = load_config(Schema, args.config, args.overrides)
    images = list_images([args.images])[:args.max_images]
    if not images:
        raise InputError(f"{args.images}: no images to time selective search on")
    torch.manual_seed(0)
    rates = classifier_rates(cfg, args.crops, args.device)
    ss = ss2x_seconds(cfg, images)
    report = {"device": args.device, "threads": torch.get_num_threads(), **rates,
              "ss2x_seconds_per_image": ss, **project(args, cfg, rates, ss),
              "assumed_gpu_tflops": args.gpu_tflops}
    if args.json:
        write_json(args.json, report, indent=1)
    for key, value in report.items():
        print(f"{key}: {value:.4g}" if isinstance(value, float) else f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
