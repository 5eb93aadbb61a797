"""Running one command as several processes under ``torchrun`` (``torch.distributed``).

``torchrun --nproc_per_node N tool.py ARGS`` starts N copies of ``tool.py ARGS`` and tells each
who it is through the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``LOCAL_WORLD_SIZE``, plus ``MASTER_ADDR``/``MASTER_PORT`` for the rendezvous). Without torchrun
those variables are absent and the command is one process of a world of one, with no process
group at all. The backend is gloo on CPU and nccl on CUDA; ``--nnodes`` spreads the ranks over
several machines, and nothing here depends on where a rank runs.

Dataset runs split their image list with :func:`shard` (a fixed stride, so each rank's part
depends only on the list, the rank and the world size) and each rank takes
:func:`threads_per_rank` of its machine's cores, so N ranks on one machine do not oversubscribe it.

Training (DistributedDataParallel) splits every global minibatch instead: each rank takes a
contiguous :func:`block` of it, :func:`ddp_model` wraps the network (its BatchNorm layers
synchronised, so batch statistics are those of the global minibatch; its dropout masks the
global minibatch's rows, see :class:`BlockDropout`), and the trainers weight
each rank's loss so that DDP's average of the ranks' gradients is the gradient of the global
minibatch; :func:`mean_over_ranks` and :func:`sum_over_ranks` give every rank the minibatch's
numbers, :func:`on_main` runs a step (validation) on rank 0 and hands its result to all.
"""
from __future__ import annotations

import atexit
import datetime
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

log = logging.getLogger(__name__)
T = TypeVar("T")

# A collective waits this long for the slowest rank: a rank whose part was done by an earlier,
# interrupted run waits at the barrier for ranks that still compute (hours on ILSVRC val).
COLLECTIVE_TIMEOUT = datetime.timedelta(days=7)


@dataclass(frozen=True)
class World:
    """This process's place among the ranks: ``rank`` of ``size`` in all, ``local_rank`` of
    ``local_size`` on this machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0 merges, scores and writes what the run reports."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def world_from_env() -> World:
    """The world torchrun describes in the environment; a world of one without torchrun."""
    size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_size = _env_int("LOCAL_WORLD_SIZE", size)
    local_rank = _env_int("LOCAL_RANK", rank)
    if not (0 <= rank < size and 0 <= local_rank < local_size):
        raise ValueError(f"RANK={rank} WORLD_SIZE={size} LOCAL_RANK={local_rank} "
                         f"LOCAL_WORLD_SIZE={local_size} are inconsistent")
    return World(rank, size, local_rank, local_size)


def shard(items: Sequence[T], world: World) -> list[T]:
    """This rank's part of ``items``: every ``world.size``-th item from position ``world.rank``.

    A stride rather than contiguous blocks: neighbouring images of a split tend to be alike in
    size and content, so striding spreads the slow ones over the ranks. The parts are disjoint and
    their union is ``items``.
    """
    return list(items[world.rank::world.size])


def threads_per_rank(world: World, cores: int | None = None) -> int:
    """``cores // local_size`` (at least 1): this machine's cores split evenly over its ranks."""
    cores = cores or os.cpu_count() or 1
    return max(1, cores // world.local_size)


def backend_for(device: str) -> str:
    """nccl for CUDA devices, gloo otherwise."""
    return "nccl" if str(device).startswith("cuda") else "gloo"


def _init_group(world: World, device: str) -> None:
    if backend_for(device) == "nccl":
        torch.cuda.set_device(world.local_rank)
    dist.init_process_group(backend_for(device), timeout=COLLECTIVE_TIMEOUT)


@contextmanager
def process_group(world: World, device: str = "cpu") -> Iterator[World]:
    """Join the ranks' process group for the block (nothing to join in a world of one).

    On CUDA each rank uses GPU ``local_rank``. The group is left on the way out, also on error.
    """
    if world.size == 1:
        yield world
        return
    _init_group(world, device)
    try:
        yield world
    finally:
        dist.destroy_process_group()


def join_process_group(world: World, device: str = "cpu") -> None:
    """Join the ranks' process group for the rest of the process (a trainer's whole run); it is
    left when the process exits. Nothing happens in a world of one or if already joined."""
    if world.size == 1 or dist.is_initialized():
        return
    _init_group(world, device)
    atexit.register(lambda: dist.is_initialized() and dist.destroy_process_group())


def trainer_world(device: str) -> tuple[World, str]:
    """This process's world and device for a trainer's whole run: under torchrun each rank takes its
    share of the machine's cores and its own GPU and joins the process group (DDP needs it for the
    whole run); without torchrun a world of one and ``device`` unchanged."""
    world = world_from_env()
    if world.size > 1:
        set_threads(world)
        device = rank_device(world, device)
        join_process_group(world, device)
    return world, device


def set_threads(world: World) -> None:
    """Each rank takes :func:`threads_per_rank` of this machine's cores (torch and OpenCV)."""
    threads = threads_per_rank(world)
    torch.set_num_threads(threads)
    import cv2

    cv2.setNumThreads(threads)


def rank_device(world: World, device: str) -> str:
    """``cuda`` becomes ``cuda:<local_rank>`` under torchrun (one GPU per rank); others unchanged."""
    if world.size > 1 and device == "cuda":
        return f"cuda:{world.local_rank}"
    return device


def gather(world: World, value) -> list:
    """Every rank's ``value`` (picklable), in rank order, on every rank; also a barrier."""
    return gather_rows(value) if world.size > 1 else [value]


def gather_rows(rows) -> list:
    """Every rank's ``rows`` (picklable), in rank order, on every rank of the joined process group
    (``[rows]`` without one)."""
    if ranks() == 1:
        return [rows]
    out: list = [None] * ranks()
    dist.all_gather_object(out, rows)
    return out


def ranks() -> int:
    """The number of ranks of the joined process group (1 when none is joined)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def block(n: int, world: World) -> slice:
    """This rank's contiguous part of ``n`` items (a global minibatch): sizes differ by at most one,
    and the parts in rank order make up the whole."""
    return slice(world.rank * n // world.size, (world.rank + 1) * n // world.size)


def _reduce_scalar(value: float, op: str) -> float:
    """``value`` reduced over the ranks with ``op`` ("SUM", "MAX"; itself without a process group)."""
    if ranks() == 1:
        return value
    out = torch.tensor(float(value), dtype=torch.float64)
    dist.all_reduce(out, op=getattr(dist.ReduceOp, op))
    return float(out)


def sum_over_ranks(value: float) -> float:
    """The sum of ``value`` over the ranks (``value`` itself without a process group)."""
    return _reduce_scalar(value, "SUM")


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """Each number's mean over the ranks, in one collective (unchanged without a process group)."""
    if ranks() == 1:
        return values
    keys = sorted(values)
    total = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    dist.all_reduce(total)
    return {k: float(v) / ranks() for k, v in zip(keys, total)}


def max_over_ranks(value: float) -> float:
    """The largest ``value`` of any rank (so all ranks take the same decision, e.g. a time budget)."""
    return _reduce_scalar(value, "MAX")


def on_main(fn: Callable[[], Any]) -> Any:
    """``fn()`` run on rank 0 only; every rank returns its (picklable) result. The other ranks wait
    for it (validation of a whole split on one rank takes as long as it takes: the group's timeout
    is :data:`COLLECTIVE_TIMEOUT`)."""
    if ranks() == 1:
        return fn()
    box = [fn() if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class _SumOverRanks(torch.autograd.Function):
    """All-reduce (sum) whose backward all-reduces the gradient: the gradient of the ranks' summed
    loss reaches every rank's input."""

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class CpuSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm whose training statistics are those of the global minibatch over all ranks.

    ``torch.nn.SyncBatchNorm`` does this on GPUs only (DistributedDataParallel refuses it for CPU
    modules and its forward for CPU tensors), so on CPU (gloo) this layer does it with an
    all-reduce whose backward all-reduces the gradients: per channel, the ranks' counts, sums and
    squared deviations are added in float64 (Chan's pairwise combination), and the input is
    normalised with the global mean and biased variance; the running statistics are updated with
    the unbiased one, as ``F.batch_norm`` does. (Its statistics in float64 are closer to exact
    than ``F.batch_norm``'s float32 ones: where a BatchNorm gradient is ill-conditioned, the two
    differ by float32 rounding, amplified.)
    A rank with no samples contributes zeros. In eval mode, or without a process group, it is
    ``nn.BatchNorm2d``. Its state dict is ``BatchNorm2d``'s.
    """

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, H, W]`` → the same shape, in any memory format."""
        if not (self.training and ranks() > 1):
            return super().forward(x)
        dims = [0, 2, 3]
        n = x.numel() // x.shape[1]
        local_sum = x.sum(dims, dtype=torch.float64)
        local_mean = local_sum / max(n, 1)
        squares = ((x - local_mean.to(x.dtype)[None, :, None, None]) ** 2).sum(dims, dtype=torch.float64)
        count = torch.full_like(local_sum, n)
        # Σ squared deviations about the global mean = Σ_r (M2_r + sum_r² / n_r) - total² / N
        stats = _SumOverRanks.apply(torch.stack([count, local_sum, squares + local_sum * local_mean]))
        total_n, total_sum, total_sq = stats[0], stats[1], stats[2]
        mean = total_sum / total_n
        var = (total_sq - total_sum * mean).clamp(min=0) / total_n
        self._update_running(mean.detach(), var.detach(), total_n[0].item())
        scale = torch.rsqrt(var + self.eps).to(x.dtype)
        if self.affine:
            scale = scale * self.weight
        out = (x - mean.to(x.dtype)[None, :, None, None]) * scale[None, :, None, None]
        return out + self.bias[None, :, None, None] if self.affine else out

    @torch.no_grad()
    def _update_running(self, mean: Tensor, var: Tensor, count: float) -> None:
        if not self.track_running_stats:
            return
        self.num_batches_tracked += 1
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        unbiased = var * count / max(count - 1, 1)
        self.running_mean.mul_(1 - factor).add_(mean.to(self.running_mean.dtype), alpha=factor)
        self.running_var.mul_(1 - factor).add_(unbiased.to(self.running_var.dtype), alpha=factor)


_MINIBATCH: list[int] = []  # the global minibatch's size while a rank's share of it is stepped


@contextmanager
def global_minibatch(total: int) -> Iterator[None]:
    """Within the block, the module's input is this rank's :func:`block` of a minibatch of
    ``total`` samples (what :class:`BlockDropout` needs to draw the minibatch's masks)."""
    _MINIBATCH.append(total)
    try:
        yield
    finally:
        _MINIBATCH.pop()


class BlockDropout(nn.Dropout):
    """Dropout whose mask is this rank's rows of the mask one process would draw for the whole
    minibatch, so ranks and one process train alike with dropout too.

    ``F.dropout`` on a CPU tensor fills an empty tensor like its input with ``bernoulli_(1 - p)``
    (one draw from the global generator, which the engine seeds per epoch identically on every
    rank); this layer draws that tensor for the whole minibatch (``[total · m, ...]`` for a rank
    input ``[n · m, ...]``, samples outermost) and keeps the rows of this rank's block. Outside
    :func:`global_minibatch`, in eval mode or without a process group it is ``nn.Dropout``.
    (On CUDA ``F.dropout`` draws differently, so there the ranks agree with each other for any
    rank count, not with one process.)
    """

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and _MINIBATCH and ranks() > 1 and 0 < self.p < 1):
            return super().forward(x)
        total = _MINIBATCH[-1]
        share = block(total, World(dist.get_rank(), ranks()))
        n = share.stop - share.start
        per = x.shape[0] // n if n else 0  # rows per sample (e.g. one per prior)
        if n == 0 or per * n != x.shape[0]:
            raise ValueError(f"BlockDropout: input of {x.shape[0]} rows is not {n} samples of a block")
        noise = torch.empty((total * per, *x.shape[1:]), dtype=x.dtype, device=x.device).bernoulli_(1 - self.p)
        return x * noise[share.start * per:share.stop * per].div_(1 - self.p)


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with every ``nn.BatchNorm2d`` replaced by a :class:`CpuSyncBatchNorm` holding the
    same parameter and buffer objects (an optimizer built before keeps working)."""
    if type(module) is nn.BatchNorm2d:
        sync = CpuSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                module.track_running_stats)
        for name, tensor in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
            setattr(sync, name, tensor)
        return sync.train(module.training)
    for name, child in module.named_children():
        module.add_module(name, convert_sync_batchnorm(child))
    return module


def convert_block_dropout(module: nn.Module) -> nn.Module:
    """``module`` with every ``nn.Dropout`` replaced by a :class:`BlockDropout` of the same rate."""
    for name, child in module.named_children():
        if type(child) is nn.Dropout:
            module.add_module(name, BlockDropout(child.p, child.inplace).train(child.training))
        else:
            convert_block_dropout(child)
    return module


def ddp_model(model: nn.Module, world: World, device: str = "cpu") -> nn.Module:
    """``model`` ready for one rank's steps: itself in a world of one; under torchrun (process
    group joined) wrapped in ``DistributedDataParallel`` with synchronised BatchNorm
    (``torch.nn.SyncBatchNorm`` on CUDA, :class:`CpuSyncBatchNorm` otherwise) and
    :class:`BlockDropout` (steps run inside :func:`global_minibatch`). The layers are converted
    in place, keeping their parameters, so ``model`` itself stays usable for validation and
    checkpoints; DDP starts every rank from rank 0's weights.
    """
    if world.size == 1:
        return model
    if not dist.is_initialized():
        raise RuntimeError("ddp_model needs the process group (core.distributed.join_process_group)")
    cuda = str(device).startswith("cuda")
    if cuda:
        nn.SyncBatchNorm.convert_sync_batchnorm(model)
    else:
        convert_sync_batchnorm(model)
    convert_block_dropout(model)
    # Synchronised BatchNorm keeps the running statistics equal on every rank: buffers are synced
    # when wrapping (rank 0's), not before every forward.
    return nn.parallel.DistributedDataParallel(model, device_ids=[world.local_rank] if cuda else None,
                                               forward_sync_buffers=False)
