"""The ensemble: every member scores every region; their softmax probabilities are averaged.

Shape letters: M members, R regions, K classes (+1 for background at index 0), C features.
GLN §7 averaged softmax probabilities over models (and crops); the detection paper does not say
how its six models were combined, so we do the same (docs/method.md §1.1, §1.5).
"""
from __future__ import annotations

import concurrent.futures
import contextlib
from collections.abc import Callable
from typing import ContextManager

import numpy as np
import torch
from torch import Tensor

from core.errors import InputError
from detector.classifier import RegionClassifier

# Forward batches hold a multiple of this many regions (when the batch cap allows): oneDNN builds
# and caches its convolution kernels per input shape, and batch sizes that followed every image's
# region count would ask it for new ones image after image (README, Speed, measures the gain).
BATCH_MULTIPLE = 16


def average_probabilities(probs: Tensor) -> Tensor:
    """``[M, R, K+1]`` per-member probabilities → ``[R, K+1]`` their mean."""
    if probs.dim() != 3 or probs.shape[0] == 0:
        raise ValueError(f"expected [M>0, R, K+1] probabilities, got {tuple(probs.shape)}")
    return probs.mean(dim=0)


def check_members(members: list[RegionClassifier]) -> list[str]:
    """The members' shared class list; raises InputError if they disagree or there are none."""
    if not members:
        raise InputError("the ensemble has no members")
    classes = members[0].classes
    for i, m in enumerate(members[1:], 1):
        if m.classes != classes:
            raise InputError(f"ensemble member {i} has other classes than member 0")
    return classes


def warp_groups(members: list[RegionClassifier]) -> dict[tuple, list[int]]:
    """Members that see identical crops, by (S, p, mean, std, device) → member indices.

    At test time a crop depends only on these (jitter is for training), and the six members
    share three paddings, so each distinct crop is warped once and fed to every member that
    takes it.
    """
    groups: dict[tuple, list[int]] = {}
    for i, m in enumerate(members):
        key = (m.cfg.input_size, m.cfg.padding, tuple(m.cfg.mean), tuple(m.cfg.std),
               str(next(m.parameters()).device))
        groups.setdefault(key, []).append(i)
    return groups


def member_probabilities(image: np.ndarray, boxes: Tensor, members: list[RegionClassifier],
                         batch: int = 256, with_features: bool = False,
                         watch: Callable[[str], ContextManager] = lambda stage: contextlib.nullcontext(),
                         dtype: torch.dtype | None = None, first_index: int = 0, streams: int = 1
                         ) -> tuple[Tensor, list[Tensor | None]]:
    """Each member's probabilities for the regions of one image.

    Each member warps with its own S, p and normalisation (members may differ in context);
    identical crops are warped once (:func:`warp_groups`), ``batch`` regions at a time, so memory
    holds one batch of crops per group and stream, whatever R.

    Args:
        image: uint8 ``[H, W, 3]`` RGB.
        boxes: ``[R, 4]`` xyxy in the image's pixels.
        batch: regions per forward pass.
        with_features: also return each member's pooled features ``[R, C_m]``.
        watch: times the stages ("warping", "member I forward"), see
            ``detector.pipeline.detect_regions`` (with several streams: thread-seconds).
        dtype: autocast dtype of the networks (None: float32), see ``RegionClassifier.classify``.
        first_index: the first member's number in the stage names.
        streams: batches warped and classified side by side in this many threads, each with one
            torch thread (see :func:`parallel_streams`); 1 runs them in turn with torch's threads.

    Returns:
        (``[M, R, K+1]`` float32 probabilities on the CPU, per-member features or Nones).
    """
    check_members(members)
    groups = warp_groups(members)
    prepared = {}
    with watch("warping"):
        for key, group in groups.items():
            prepared[key] = (members[group[0]].prepare_image(image, key[-1]), boxes.to(key[-1]))

    def run(job: tuple[tuple, int]) -> list[tuple[int, Tensor, Tensor | None]]:
        """Warp one batch of one group's regions and classify it with each member of the group."""
        key, start = job
        pixels, on_device = prepared[key]
        chunk = on_device[start:start + batch]
        with watch("warping"):
            crops = members[groups[key][0]].warp(pixels, padded(chunk, multiple))
        out = []
        for i in groups[key]:
            with watch(f"member {first_index + i} forward"):
                p, f = members[i].classify(crops, with_features, dtype)
            out.append((i, p[:len(chunk)].cpu(), f[:len(chunk)].cpu() if f is not None else None))
        return out

    multiple = batch_multiple(batch)
    batch = balanced_batch(len(boxes), batch, len(groups), streams, multiple)
    jobs = [(key, start) for key in groups for start in range(0, len(boxes), batch)]
    probs: list[list[Tensor]] = [[] for _ in members]
    feats: list[list[Tensor]] = [[] for _ in members]
    with parallel_streams(streams if len(jobs) > 1 else 1) as run_all:
        for results in run_all(run, jobs):  # in job order, so the rows come back in region order
            for i, p, f in results:
                probs[i].append(p)
                feats[i].append(f)
    return torch.stack([_joined(p, len(boxes), m.num_classes + 1) for p, m in zip(probs, members)]), \
        [_joined(f, len(boxes), m.regression_channels) if with_features else None
         for f, m in zip(feats, members)]


def balanced_batch(regions: int, batch: int, groups: int, streams: int, multiple: int = 1) -> int:
    """Regions per batch: at most ``batch``, a multiple of ``multiple`` (when ``batch`` allows one),
    and, where such a size exists, one whose ``groups`` x batches jobs split evenly over
    ``streams`` (with 9 jobs on 2 streams one stream would idle through the last job of every
    image). Otherwise the largest size. A region's outputs do not depend on its batch, so this
    changes no result."""
    if regions == 0:
        return batch
    step = batch_multiple(batch, multiple)
    cap = batch // step * step
    first = None
    for chunks in range(_ceil_div(regions, cap), regions + 1):
        size = min(_ceil_div(_ceil_div(regions, chunks), step) * step, cap)
        if streams <= 1 or groups * _ceil_div(regions, size) % streams == 0:
            return size
        first = first or size
        if size == step:  # more chunks give this same smallest size
            break
    return first


def batch_multiple(batch: int, multiple: int = BATCH_MULTIPLE) -> int:
    """The multiple the batches of a ``batch`` cap are padded to: ``multiple``, or 1 below it."""
    return multiple if batch >= multiple else 1


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def padded(boxes: Tensor, multiple: int) -> Tensor:
    """``boxes`` with copies of the last row appended up to a multiple of ``multiple`` rows (the
    last batch of an image then has a shape the earlier images have built kernels for; the
    copies' outputs are dropped)."""
    missing = -len(boxes) % multiple
    return torch.cat([boxes, boxes[-1:].expand(missing, 4)]) if missing and len(boxes) else boxes


@contextlib.contextmanager
def parallel_streams(streams: int):
    """A ``map(fn, jobs)`` that runs jobs in ``streams`` threads of one torch thread each.

    The members' networks are small (width 0.25 on 64 px crops), so two single-threaded forward
    passes side by side do more work per second on a 2-core CPU than one pass split over two
    threads (README, Speed), whose threads wait for each other at every layer. Torch's thread
    count is process-wide, so it is 1 while the streams run and restored after. A region's
    outputs do not depend on the thread count or on the other regions of its batch, so the
    results are those of one stream (tests/detector/test_ensemble.py holds them equal).
    """
    if streams <= 1:
        yield map
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with concurrent.futures.ThreadPoolExecutor(streams, thread_name_prefix="stream") as pool:
            yield pool.map
    finally:
        torch.set_num_threads(threads)


def resolve_streams(streams: int, members: list[RegionClassifier]) -> int:
    """The streams ``detector.streams`` asks for; 0: on CPU one per torch thread this process was
    given (so a torchrun rank with one thread keeps one), on a GPU one."""
    if streams or not members:
        return max(streams, 1)
    on_cpu = next(members[0].parameters()).device.type == "cpu"
    return torch.get_num_threads() if on_cpu else 1


def _joined(parts: list[Tensor], rows: int, columns: int) -> Tensor:
    """The batches' rows in order, ``[rows, columns]`` (empty when there were no regions)."""
    return torch.cat(parts) if parts else torch.zeros((rows, columns))


def cascade_probabilities(image: np.ndarray, boxes: Tensor, members: list[RegionClassifier], top: int,
                          batch: int = 256, watch: Callable[[str], ContextManager] = lambda stage: contextlib.nullcontext(),
                          dtype: torch.dtype | None = None, streams: int = 1) -> Tensor:
    """Averaged probabilities ``[R, K+1]`` where only member 0 scores every region.

    The other members score the ``top`` regions member 0 finds least likely to be background;
    those regions get the average of every member, the rest member 0's probabilities alone.
    """
    first = member_probabilities(image, boxes, members[:1], batch, watch=watch, dtype=dtype, streams=streams)[0][0]
    if len(members) == 1 or len(boxes) == 0:
        return first
    chosen = torch.argsort(first[:, 0], stable=True)[:top]
    others = member_probabilities(image, boxes[chosen], members[1:], batch, watch=watch, dtype=dtype,
                                  first_index=1, streams=streams)[0]
    out = first.clone()
    out[chosen] = (first[chosen] + others.sum(dim=0)) / len(members)
    return out
