"""Detector speed, stage by stage, beside the bare speed of its own networks.

    python tools/benchmark.py detect [--images DIR] [--json OUT] [--weights PATH] [--max-images N]
        [--settings bundled,paper] [--paper-regions 1400] [--paper-sample 256] [--rounds 3]

For each setting it runs the detector over the images, timing every stage (image loading,
selective search, MultiBox, merging, warping, each member's forward, averaging, NMS), and reports
seconds per image, regions per image and the peak memory (resident set) of the process that ran
the setting. In the same run it measures each member's *bare* forward rate on random crops of its
own size, in every memory layout and dtype this machine offers (contiguous and channels-last
float32, channels-last bfloat16 where supported): the fastest float32 rate over the image's regions
is what the networks alone would cost, the yardstick of the detector's own overhead.

This machine's speed drifts by 10-20% from minute to minute, so the yardstick is also measured
side by side with what it judges: right after each image (one image at a time), and just before
and after each of ``--rounds`` folder runs (the median ratio is reported). The work outside the
members' forwards (selective search, MultiBox, warps) is reported with its share of the cores,
which is what a folder costs beyond the bare forward even when pipelined.

Settings:

* ``bundled``: the weights given (default ``assets/model``), merged proposals.
* ``paper``: six members of full-width GoogLeNet at 224 px (R-CNN's p = 16, the members' padding
  varied as the bundled ones), random weights (timing does not depend on them), each image's merged
  proposals topped up with random boxes to ``--paper-regions`` (GLN's ~1,400 per image). At ~60
  regions/s per member on a 2-core CPU the full setting takes minutes per image, so by default the
  warps and forwards run on the first ``--paper-sample`` regions and their times are scaled to the
  full count (they are linear in it: fixed-size batches); ``--paper-sample 0`` runs every region.
  The detector settings (batch of regions, NMS, ...) are the ``detector`` section of
  ``configs/ilsvrc2014.yaml``, the paper's setting.

* ``training``: SGD steps per second of one bundled-size member (minibatch of 128 random
  64 px crops, auxiliary heads on) with its network in the contiguous layout and in channels-last,
  alternated in rounds so that both see the same machine.

Each setting runs in its own spawned process, so each peak memory is its own.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import copy
import dataclasses
import logging
import multiprocessing
import os
import resource
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from core.config import load_config
from core.errors import InputError
from core.image import load_image
from detector.classifier import RegionClassifier
from detector.config import (
    ClassifierConfig,
    DetectorConfig,
    DetectSchema,
    SamplerConfig,
    TrainConfig,
    member_variant,
)
from detector.api import Detector
from detector.ensemble import parallel_streams, resolve_streams
from detector.pipeline import build_detector_proposer, detect_regions, load_members
from detector.prefetch import prefetch
from detector.train import region_loss
from nets.inception import fold_batchnorm
from proposals.base import SOURCE_SS, Proposals
from proposals.build import build_background_proposer, complete_proposals
from proposals.merge import MergedProposer, merge_proposals

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]
SETTINGS = ("bundled", "paper", "training")
PAPER_CLASSIFIER = ClassifierConfig(width=1.0, input_size=224, padding=16, aux_logits=False)
# Stages scaled from the sample to the full region count at the paper setting.
PER_REGION_STAGES = ("warping", "forward")


class Stopwatch:
    """Seconds spent per stage name: ``with watch("nms"): ...`` adds to ``watch.seconds["nms"]``.

    ``watch.cpu_seconds`` adds up the process's CPU seconds the same way; it means what it says
    only for stages that run alone in the process (proposals), not for those run in streams.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.cpu_seconds: dict[str, float] = defaultdict(float)
        self._lock = threading.Lock()  # stages run in several streams (threads) at once

    @contextlib.contextmanager
    def __call__(self, stage: str):
        start, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            with self._lock:
                self.seconds[stage] += time.perf_counter() - start
                self.cpu_seconds[stage] += time.process_time() - cpu


def peak_memory_mib() -> float:
    """Peak resident set of this process so far, MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def layouts(device: torch.device) -> list[tuple[str, torch.memory_format, torch.dtype | None]]:
    """(name, memory format, autocast dtype or None) of every layout/dtype worth timing here."""
    found = [("fp32 contiguous", torch.contiguous_format, None),
             ("fp32 channels-last", torch.channels_last, None)]
    bf16 = (torch.cuda.is_bf16_supported() if device.type == "cuda"
            else torch.ops.mkldnn._is_mkldnn_bf16_supported())
    if bf16:
        found.append(("bf16 channels-last", torch.channels_last, torch.bfloat16))
    return found


def forward_rate(member: RegionClassifier, batch: int, repeats: int, memory_format, dtype) -> float:
    """Regions per second of the member's bare network on random crops ``[batch, 3, S, S]``.

    A copy of the network is converted, so the member itself keeps its layout.
    """
    device = next(member.parameters()).device
    net = copy.deepcopy(member.net).eval().to(memory_format=memory_format)
    size = member.cfg.input_size
    crops = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    crops = crops.to(device).contiguous(memory_format=memory_format)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)
    with torch.inference_mode(), autocast:
        net(crops)  # warm-up: oneDNN picks its kernels on the first call
        _sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            net(crops)
        _sync(device)
    return batch * repeats / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_forward(members: list[RegionClassifier], batch: int, repeats: int) -> list[dict[str, float]]:
    """Per member, regions/s in each layout of :func:`layouts`."""
    device = next(members[0].parameters()).device
    return [{name: forward_rate(m, batch, repeats, fmt, dtype) for name, fmt, dtype in layouts(device)}
            for m in members]


def streams_forward_seconds(members: list[RegionClassifier], batch: int, repeats: int, streams: int) -> float:
    """Seconds per region of the bare networks of all members (fp32 channels-last, the members'
    own layout), their forwards spread over ``streams`` single-threaded streams as the detector
    spreads its batches (``detector.ensemble.parallel_streams``): summed over the members."""
    size = members[0].cfg.input_size
    crops = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    crops = crops.to(next(members[0].parameters()).device).contiguous(memory_format=torch.channels_last)

    def forward(net) -> None:
        with torch.inference_mode():  # per thread: the mode is thread-local
            net(crops)

    with parallel_streams(streams) as run_all:
        list(run_all(forward, [m.net for m in members] * streams))  # warm-up in every stream
        start = time.perf_counter()
        list(run_all(forward, [m.net for m in members for _ in range(repeats)]))
        elapsed = time.perf_counter() - start
    return elapsed / (batch * repeats)


def paper_members(classes: list[str], count: int = 6, device="cpu") -> list[RegionClassifier]:
    """``count`` full-width GoogLeNet region classifiers at 224 px with random weights (eval mode)."""
    members = []
    for i in range(count):
        cfg = member_variant(i, PAPER_CLASSIFIER, SamplerConfig(), TrainConfig())[0]
        torch.manual_seed(i)
        members.append(fold_batchnorm(RegionClassifier(classes, cfg).eval().to(device)))  # as load_members
    return members


def topped_up(proposals: Proposals, count: int, size: tuple[int, int], seed: int = 0) -> Proposals:
    """The first ``count`` proposals, random boxes (>= 20 px, seeded) appended if there are fewer."""
    boxes = proposals.boxes[:count]
    missing = count - len(boxes)
    if missing > 0:
        h, w = size
        rng = np.random.default_rng(seed)
        x1 = rng.uniform(0, max(w - 20, 1), missing)
        y1 = rng.uniform(0, max(h - 20, 1), missing)
        x2 = np.minimum(w, x1 + rng.uniform(20, max(w, 21), missing))
        y2 = np.minimum(h, y1 + rng.uniform(20, max(h, 21), missing))
        boxes = np.concatenate([boxes, np.stack([x1, y1, x2, y2], 1).astype(np.float32)])
    return Proposals(boxes=boxes, sources=np.full(len(boxes), SOURCE_SS, np.uint8))


def propose(pixels: np.ndarray, proposer, watch: Stopwatch) -> Proposals:
    """The image's proposals, selective search and MultiBox timed apart when merged."""
    if isinstance(proposer, MergedProposer):
        with watch("selective search"):
            ss = proposer.ss(pixels)
        with watch("multibox"):
            mb = proposer.multibox(pixels)
        with watch("merge"):
            return merge_proposals(ss, mb, proposer.cfg)
    with watch("proposals"):
        return proposer(pixels)


@dataclasses.dataclass(frozen=True)
class Options:
    """What one setting's run needs (picklable, for the spawned process)."""

    paths: tuple[str, ...]
    weights: str = str(REPO / "assets" / "model")
    threads: int = 0  # 0: torch's default
    paper_regions: int = 1400
    paper_sample: int = 256  # 0: every region
    paper_members: int = 6
    rounds: int = 3  # folder runs, each between two bare forwards; the median ratio is reported


def _scaled(seconds: dict[str, float], factor: float) -> dict[str, float]:
    """Per-region stages (warps and forwards) times ``factor``, the rest unchanged."""
    return {k: v * factor if any(s in k for s in PER_REGION_STAGES) else v for k, v in seconds.items()}


def time_images(paths, proposer, members, cfg: DetectorConfig, regions: int = 0, sample: int = 0,
                bare_per_region=None):
    """Run the detector over ``paths``; per-image stage seconds (and CPU seconds), totals, region
    counts and, if ``bare_per_region`` is given, the bare forward's seconds per image.

    Args:
        regions: top every image's proposals up to this many (0: its own proposals).
        sample: warp and classify only the first ``sample`` regions, scaling those stages' times
            to the full count (0: all).
        bare_per_region: called right after each image, returns the bare networks' seconds per
            region then, so that each image has its yardstick measured beside it (the machine's
            speed drifts; a ratio taken side by side holds where two separate figures do not).
    """
    stages: dict[str, float] = defaultdict(float)
    cpu: dict[str, float] = defaultdict(float)
    totals, counts, bare = [], [], []
    for path in paths:
        watch, start = Stopwatch(), time.perf_counter()
        with watch("image loading"):
            pixels = load_image(path).pixels
        proposals = propose(pixels, proposer, watch)
        if regions:
            proposals = topped_up(proposals, regions, pixels.shape[:2])
        run_cfg = dataclasses.replace(cfg, max_proposals=sample) if sample else cfg
        with torch.no_grad():
            detect_regions(pixels, proposals, members, run_cfg, watch)
        elapsed = time.perf_counter() - start
        count = len(proposals)
        factor = count / min(sample, count) if sample and count else 1.0
        seconds = _scaled(watch.seconds, factor)
        for k, v in seconds.items():
            stages[k] += v
        for k, v in watch.cpu_seconds.items():
            cpu[k] += v
        totals.append(elapsed + sum(seconds.values()) - sum(watch.seconds.values()))
        counts.append(count)
        if bare_per_region is not None:
            bare.append(count * bare_per_region())
    return stages, cpu, totals, counts, bare


def time_folder(paths, detector: Detector, method: str, ahead: int = 2) -> float:
    """Seconds per image of the detector over ``paths`` as ``tools/detect.py`` runs a folder: the
    selective search of the next images in a worker process (``detector.prefetch``), MultiBox,
    warps and forwards here.

    The clock starts when the first image's proposals arrive: ``tools/detect.py`` starts the
    worker before it imports torch and loads the networks, so the worker's start and the first
    selective search are over by the time the networks are ready (model loading excluded).
    """
    start = None
    with prefetch(list(paths), build_background_proposer, (method, None), ahead=ahead) as items:
        for item in items:
            start = start if start is not None else time.perf_counter()
            if item.error is not None:
                raise InputError(item.error)
            proposals = complete_proposals(detector.proposer, item.pixels, item.proposals)
            detector.detect_proposals(item.pixels, proposals)
    return (time.perf_counter() - start) / len(paths)


def training_rates(steps: int = 4, rounds: int = 3, batch: int = 128) -> dict[str, float]:
    """SGD steps/s of a bundled-size member per layout (contiguous, channels-last) and, where the CPU
    has it, channels-last under bfloat16 autocast (``train.dtype``), best round."""
    torch.manual_seed(0)
    crops = torch.randn(batch, 3, 64, 64)
    labels = torch.randint(0, 16, (batch,))
    best: dict[str, float] = defaultdict(float)
    for _ in range(rounds):
        for name, fmt, dtype in layouts(torch.device("cpu")):
            net = RegionClassifier([str(k) for k in range(15)], ClassifierConfig()).net.to(memory_format=fmt).train()
            optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
            x = crops.contiguous(memory_format=fmt)
            start = time.perf_counter()
            for _ in range(steps):
                with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
                    outputs = net(x)
                loss = region_loss(outputs, labels, TrainConfig().aux_weight)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            best[name] = max(best[name], steps / (time.perf_counter() - start))
    return dict(best)


def paper_detector_config() -> DetectorConfig:
    """The ``detector`` section of configs/ilsvrc2014.yaml (the paper's setting)."""
    return load_config(DetectSchema, REPO / "configs" / "ilsvrc2014.yaml").detector


def run_setting(setting: str, opts: Options) -> dict:
    """Time one setting (``bundled``, ``paper`` or ``training``) in this process; the report as a dict."""
    if opts.threads:
        torch.set_num_threads(opts.threads)
    if setting == "training":
        return {"setting": setting, "threads": torch.get_num_threads(),
                "train_steps_per_s": training_rates(), "peak_memory_mib": peak_memory_mib()}
    paper = setting == "paper"
    cfg = paper_detector_config() if paper else DetectorConfig()
    members = load_members(opts.weights)
    proposer = build_detector_proposer(cfg, opts.weights)
    if paper:
        members = paper_members(members[0].classes, opts.paper_members)
    regions = opts.paper_regions if paper else 0
    sample = opts.paper_sample if paper and opts.paper_sample < opts.paper_regions else 0
    batch = 32 if paper else cfg.batch_regions
    streams = resolve_streams(cfg.streams, members)

    def bare_per_region() -> float:  # the members' own layout, spread over the detector's streams
        return streams_forward_seconds(members, batch, 1, streams)

    stages, cpu, totals, counts, paired = time_images(opts.paths, proposer, members, cfg, regions, sample,
                                                      bare_per_region)
    n = len(opts.paths)
    rates = bare_forward(members, batch, 1 if paper else 3)
    fp32 = [max(v for k, v in r.items() if k.startswith("fp32")) for r in rates]
    per_image = {k: v / n for k, v in stages.items()}
    regions_per_image = float(np.mean(counts))
    bare = {"fastest fp32 layout, one stream": regions_per_image * sum(1 / r for r in fp32)}
    if streams > 1:
        bare[f"fp32 channels-last, {streams} streams"] = regions_per_image * streams_forward_seconds(
            members, batch, 1 if paper else 3, streams)
    fastest = min(bare.values())
    proposal_keys = ("selective search", "multibox", "merge", "proposals")
    report = {
        "setting": setting, "images": n, "threads": torch.get_num_threads(), "streams": streams,
        "members": [dataclasses.asdict(m.cfg) for m in members],
        "regions_per_image": regions_per_image, "sampled_regions": sample,
        "stages_s_per_image": per_image,
        "proposals_s_per_image": sum(v for k, v in per_image.items() if k in proposal_keys),
        "total_s_per_image": float(np.mean(totals)),
        "peak_memory_mib": peak_memory_mib(),
        "bare_forward_regions_per_s": rates,
        "bare_forward_s_per_image": fastest,
        "bare_forward_s_per_image_by_way": bare,
        "total_over_bare_forward": float(np.mean(totals)) / fastest,
        "paired_bare_forward_s_per_image": float(np.mean(paired)),
        "total_over_paired_bare": float(np.median([_ratio(t, b) for t, b in zip(totals, paired)])),
    }
    # Classification (warps, forwards, averaging, NMS) as wall-clock: the stages run in streams
    # side by side, so their per-stage seconds are thread-seconds and do not add up to it.
    report["classification_s_per_image"] = (report["total_s_per_image"] - report["proposals_s_per_image"]
                                            - per_image.get("image loading", 0.0))
    # the pipeline's own overhead: warps, batching, threads, NMS over the networks measured beside it
    report["classification_over_paired_bare"] = _ratio(report["classification_s_per_image"],
                                                       report["paired_bare_forward_s_per_image"])
    report.update(outside_classifiers(per_image, {k: v / n for k, v in cpu.items()},
                                   report["paired_bare_forward_s_per_image"]))
    if not paper and n > 1:
        report.update(folder_report(opts.paths, Detector(members, proposer, cfg), report,
                                    lambda: regions_per_image * bare_per_region(), opts.rounds))
    return report


def outside_classifiers(per_image: dict[str, float], cpu_per_image: dict[str, float], bare: float) -> dict:
    """The work outside the members' forwards that pipelining cannot hide, only move to another core.

    The proposals (process CPU seconds of selective search and MultiBox, timed one image at a
    time) and the warps (thread-seconds in the streams) take cores the members would otherwise
    use; their sum over the machine's cores (this process's CPU affinity), as a share of the
    bare forward, is what a folder costs beyond the bare forward even with nothing else in the
    way (an estimate: the two are timed apart).
    """
    proposals = {k: v for k, v in cpu_per_image.items() if k in ("selective search", "multibox", "proposals")}
    outside = {**proposals, "warping": per_image.get("warping", 0.0)}
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return {"cores": cores, "outside_classifiers_s_per_image": outside,
            "outside_share_of_bare": _ratio(sum(outside.values()), cores * bare)}


def _ratio(a: float, b: float) -> float:
    """a / b, NaN when b is 0 (no regions in any image: there is no yardstick)."""
    return a / b if b else float("nan")


def folder_report(paths, detector: Detector, report: dict, bare_per_image, rounds: int) -> dict:
    """Folder runs as ``tools/detect.py`` does them (:func:`time_folder`), each over the bare forward
    measured just before and just after it (the median over ``rounds``) and over the slower of
    the two stages measured one image at a time."""
    folders, ratios = [], []
    for _ in range(rounds):
        before = bare_per_image()
        folders.append(time_folder(paths, detector, detector.cfg.proposal_method))
        ratios.append(_ratio(folders[-1], (before + bare_per_image()) / 2))
    folder = float(np.median(folders))
    return {"folder_s_per_image": folder, "folder_rounds": folders,
            "folder_over_bare_forward": folder / report["bare_forward_s_per_image"],
            "folder_over_paired_bare": float(np.median(ratios)), "folder_over_paired_bare_rounds": ratios,
            "folder_over_max_stage": folder / max(report["proposals_s_per_image"],
                                                  report["classification_s_per_image"])}


def format_report(r: dict) -> str:
    """A setting's report as text lines."""
    if r["setting"] == "training":
        return (f"training, one bundled-size member, minibatch 128, {r['threads']} threads: "
                + ", ".join(f"{k} {v:.2f} steps/s" for k, v in r["train_steps_per_s"].items()))
    m = r["members"][0]
    lines = [f"{r['setting']} settings: {r['images']} images, {r['regions_per_image']:.0f} regions/image, "
             f"{len(r['members'])} members (width {m['width']}, {m['input_size']} px), "
             f"{r['threads']} threads"
             + (f"; warps and forwards timed on {r['sampled_regions']} regions/image and scaled"
                if r["sampled_regions"] else ""),
             f"  {'stage':<24}{'s/image':>9}{'share':>8}"]
    total = r["total_s_per_image"]
    stages = dict(r["stages_s_per_image"])
    stages["other"] = total - sum(stages.values())
    for name, sec in stages.items():
        lines.append(f"  {name:<24}{sec:>9.3f}{100 * sec / total:>7.1f}%")
    lines.append(f"  {'total':<24}{total:>9.3f}")
    lines.append(f"  proposals {r['proposals_s_per_image']:.3f} s/image, classification "
                 f"{r['classification_s_per_image']:.3f} s/image, peak memory {r['peak_memory_mib']:.0f} MiB")
    for i, rates in enumerate(r["bare_forward_regions_per_s"]):
        lines.append(f"  bare forward, member {i}: "
                     + ", ".join(f"{k} {v:,.0f}" for k, v in rates.items()) + " regions/s")
    for way, sec in r["bare_forward_s_per_image_by_way"].items():
        lines.append(f"  bare forward of all members over the image's regions ({way}): {sec:.3f} s/image")
    lines.append(f"  total (one image at a time) / fastest bare forward = {r['total_over_bare_forward']:.2f}")
    lines.append(f"  bare forward measured beside each image: {r['paired_bare_forward_s_per_image']:.3f} s/image; "
                 f"total / it = {r['total_over_paired_bare']:.2f} (median over images); "
                 f"classification / it = {r['classification_over_paired_bare']:.2f}")
    if "folder_s_per_image" in r:
        lines.append(f"  folder as tools/detect.py runs it (selective search of the next images in a worker): "
                     f"{r['folder_s_per_image']:.3f} s/image; / fastest bare forward = "
                     f"{r['folder_over_bare_forward']:.2f}; / max(proposals, classification) = "
                     f"{r['folder_over_max_stage']:.2f}")
        lines.append(f"  folder / bare forward measured just before and after it: "
                     f"{r['folder_over_paired_bare']:.2f} (median of "
                     + ", ".join(f"{v:.2f}" for v in r["folder_over_paired_bare_rounds"]) + ")")
    outside = r["outside_classifiers_s_per_image"]
    lines.append("  work outside the members' forwards (proposals: CPU s, warping: thread-s): "
                 + ", ".join(f"{k} {v:.3f}" for k, v in outside.items())
                 + f" s/image; shared over {r['cores']} cores, {r['outside_share_of_bare']:.2f} of the bare forward")
    return "\n".join(lines)


def run_benchmark(paths: list[str], settings: list[str], opts: Options, paper_images: int = 2,
                  printer=None) -> list[dict]:
    """Run each setting in its own spawned process over ``paths``; the reports, in order.

    Args:
        paper_images: images used at the paper setting (its first ones; 0 = all).
        printer: called with each report's text as soon as it is ready (e.g. ``print``).
    """
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        raise InputError(f"--settings: unknown {unknown[0]!r} (known: {', '.join(SETTINGS)})")
    if not paths:
        raise InputError("no images to time")
    reports = []
    for setting in settings:
        chosen = paths[:paper_images] if setting == "paper" and paper_images > 0 else paths
        run_opts = dataclasses.replace(opts, paths=tuple(chosen))
        # A fresh process per setting: its peak memory is its own, not the previous setting's.
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            reports.append(pool.submit(run_setting, setting, run_opts).result())
        if printer is not None:
            printer(format_report(reports[-1]))
    return reports
