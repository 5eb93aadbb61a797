"""Images and their proposals computed ahead in a worker process, in order.

Over a folder the detector's two halves can overlap: while the main process classifies image i,
a worker loads images i+1, i+2, ... and computes their proposals (selective search runs in OpenCV
and MultiBox is small), so a folder costs about max(proposals, classification) per image instead
of their sum. Results come back in the order of the paths; an image that fails comes back with
its error, and the others go on.
"""
from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from core.image import WORK_PIXELS, ImageError, LoadedImage, load_image
from proposals.base import Proposals, Proposer

_worker_proposer: Proposer | None = None


@dataclass
class Prefetched:
    """One image: its path, and either its pixels and proposals or why it failed.

    ``error`` is one line, ``"<path>: <reason>"`` (a string, so it crosses processes as it is).
    """

    path: str
    image: LoadedImage | None = None
    proposals: Proposals | None = None
    error: str | None = None

    @property
    def pixels(self) -> np.ndarray | None:
        """uint8 ``[H, W, 3]`` RGB as decoded (reduced if the file exceeds ``WORK_PIXELS``)."""
        return None if self.image is None else self.image.pixels


def load_and_propose(path: str, proposer: Proposer) -> Prefetched:
    """Load ``path`` (at most ``WORK_PIXELS``, see :func:`core.image.load_image`) and compute its
    proposals; errors are returned."""
    try:
        image = load_image(path, WORK_PIXELS)
        return Prefetched(path, image, proposer(image.pixels))
    except ImageError as err:  # already "<path>: <reason>"
        return Prefetched(path, error=str(err))
    except Exception as err:  # one bad image must not stop the batch; say which and why
        return Prefetched(path, error=failure(path, err))


def failure(path: str, err: Exception) -> str:
    """The one-line report of an image whose detection failed with ``err``."""
    return f"{path}: detection failed ({type(err).__name__}: {err})"


def _exit_with_parent(parent: int) -> None:
    """Leave when the parent process is gone (killed mid-batch), instead of lingering."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _init_worker(build, args: tuple, threads: int, parent: int) -> None:
    import cv2
    import torch

    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    global _worker_proposer
    # One thread each: the worker shares the machine with the classifying main process.
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    _worker_proposer = build(*args)


def _work(path: str) -> Prefetched:
    return load_and_propose(path, _worker_proposer)


def prefetch(paths: list[str], build, args: tuple = (), ahead: int = 2, threads: int = 1
             ) -> Iterator[Prefetched]:
    """Yield every path's :class:`Prefetched`, in order, computed ``ahead`` images ahead in a worker.

    Args:
        build: a picklable function returning the proposer (called once in the worker with
            ``args``), e.g. ``detector.pipeline.build_detector_proposer``.
        ahead: images in flight; 0 computes each one in this process when it is asked for.
        threads: torch and OpenCV threads of the worker.
    """
    if ahead <= 0 or len(paths) < 2:
        proposer = build(*args)
        for path in paths:
            yield load_and_propose(path, proposer)
        return
    context = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
    with concurrent.futures.ProcessPoolExecutor(1, context, _init_worker,
                                                (build, args, threads, os.getpid())) as pool:
        pending: deque = deque()
        for path in paths:
            pending.append((path, pool.submit(_work, path)))
            if len(pending) > ahead:
                yield _result(*pending.popleft())
        while pending:
            yield _result(*pending.popleft())


def _result(path: str, future: concurrent.futures.Future) -> Prefetched:
    try:
        return future.result()
    except Exception as err:  # the worker died (e.g. out of memory): say so for this image
        return Prefetched(path, error=failure(path, err))
