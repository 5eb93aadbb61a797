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
"""
from __future__ import annotations

import datetime
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence, TypeVar

import torch

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


@contextmanager
def process_group(world: World, device: str = "cpu") -> Iterator[World]:
    """Join the ranks' process group for the block (nothing to join in a world of one).

    On CUDA each rank uses GPU ``local_rank``. The group is left on the way out, also on error.
    """
    if world.size == 1:
        yield world
        return
    import torch.distributed as dist

    if backend_for(device) == "nccl":
        torch.cuda.set_device(world.local_rank)
    dist.init_process_group(backend_for(device), timeout=COLLECTIVE_TIMEOUT)
    try:
        yield world
    finally:
        dist.destroy_process_group()


def rank_device(world: World, device: str) -> str:
    """``cuda`` becomes ``cuda:<local_rank>`` under torchrun (one GPU per rank); others unchanged."""
    if world.size > 1 and device == "cuda":
        return f"cuda:{world.local_rank}"
    return device


def gather(world: World, value) -> list:
    """Every rank's ``value`` (picklable), in rank order, on every rank; also a barrier."""
    if world.size == 1:
        return [value]
    import torch.distributed as dist

    out: list = [None] * world.size
    dist.all_gather_object(out, value)
    return out
