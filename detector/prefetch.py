"""Images and their proposals computed ahead in a worker process, in order.

Over a folder the detector's two halves can overlap: while the main process classifies image i,
a worker loads images i+1, i+2, ... and computes their selective search (OpenCV and numpy, no
torch: see :func:`proposals.build.build_background_proposer`; MultiBox is small and runs in the
main process, :func:`proposals.build.complete_proposals`), so a folder costs about
max(proposals, classification) per image instead of their sum. The worker imports no torch, so it
starts in well under a second and takes no memory for networks. Results come back in the order
of the paths; an image that fails comes back with its error, and the others go on.
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
    proposals: Proposals | None = None  # None when the worker's proposer was None
    error: str | None = None

    @property
    def pixels(self) -> np.ndarray | None:
        """uint8 ``[H, W, 3]`` RGB as decoded (reduced if the file exceeds ``WORK_PIXELS``)."""
        return None if self.image is None else self.image.pixels


def load_and_propose(path: str, proposer: Proposer | None) -> Prefetched:
    """Load ``path`` (at most ``WORK_PIXELS``, see :func:`core.image.load_image`) and compute its
    proposals (none if ``proposer`` is None); errors are returned."""
    try:
        image = load_image(path, WORK_PIXELS)
        return Prefetched(path, image, proposer(image.pixels) if proposer is not None else None)
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

    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    global _worker_proposer
    # One thread: the worker shares the machine with the classifying main process.
    cv2.setNumThreads(threads)
    _worker_proposer = build(*args)


def _work(path: str) -> Prefetched:
    return load_and_propose(path, _worker_proposer)


def prefetch(paths: list[str], build, args: tuple = (), ahead: int = 2, threads: int = 1) -> Prefetcher:
    """Every path's :class:`Prefetched`, in order, computed ``ahead`` images ahead in a worker.

    The worker is started and given its first images at once, so that its start overlaps with
    the caller's own (e.g. loading the networks) before the first result is asked for. Use the
    result as a context manager (or call ``close()``) so that the worker stops with the caller.

    Args:
        build: a picklable function returning the proposer or None (called once in the worker
            with ``args``), e.g. ``proposals.build.build_background_proposer``.
        ahead: images in flight; 0 computes each one in this process when it is asked for.
        threads: OpenCV threads of the worker.
    """
    return Prefetcher(paths, build, args, ahead, threads)


class Prefetcher:
    """The iterator :func:`prefetch` returns: :class:`Prefetched` items in the order of the paths."""

    def __init__(self, paths: list[str], build, args: tuple, ahead: int, threads: int) -> None:
        self.pool = None
        if ahead <= 0 or len(paths) < 2:
            self._items = self._in_process(paths, build, args)
            return
        context = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
        self.pool = concurrent.futures.ProcessPoolExecutor(1, context, _init_worker,
                                                           (build, args, threads, os.getpid()))
        pending = deque((path, self.pool.submit(_work, path)) for path in paths[:ahead + 1])
        self._items = self._ahead(pending, paths[ahead + 1:])

    def __iter__(self) -> Iterator[Prefetched]:
        return self._items

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker (images not yet taken are dropped)."""
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None

    @staticmethod
    def _in_process(paths: list[str], build, args: tuple) -> Iterator[Prefetched]:
        proposer = build(*args)
        for path in paths:
            yield load_and_propose(path, proposer)

    def _ahead(self, pending: deque, rest: list[str]) -> Iterator[Prefetched]:
        """Yield the pending results in order, submitting one of ``rest`` for each one taken."""
        for path in rest:
            yield _result(*pending.popleft())
            pending.append((path, self.pool.submit(_work, path)))
        while pending:
            yield _result(*pending.popleft())
        self.close()


def _result(path: str, future: concurrent.futures.Future) -> Prefetched:
    try:
        return future.result()
    except Exception as err:  # the worker died (e.g. out of memory): say so for this image
        return Prefetched(path, error=failure(path, err))
