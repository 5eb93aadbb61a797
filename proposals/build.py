"""Build a proposer by method name: ``ss``, ``ss2x``, ``multibox`` or ``merged``.

The method names are the command line's ``--method`` choices; this is the one place that turns a
name into a proposer (plain ``if``s, no registry). :func:`proposer_key` lists everything that
shapes a proposer's output, for the on-disk cache key (:mod:`proposals.cache`).
"""
from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.digest import sha256_file
from core.errors import InputError
from proposals.base import Proposals, Proposer
from proposals.merge import MergeConfig, MergedProposer, merge_proposals
from proposals.selective_search import PRESETS, SelectiveSearch, SelectiveSearchConfig

METHODS = ("ss", "ss2x", "multibox", "merged")
# The bundled MultiBox model (detector issue): repo-relative, so tools work from any folder.
DEFAULT_MULTIBOX_WEIGHTS = Path(__file__).resolve().parents[1] / "assets" / "model" / "multibox.pt"


@dataclass(frozen=True)
class ProposalsConfig:
    """The ``ss``, ``ss2x`` and ``merge`` sections of ``configs/proposals.yaml``."""

    ss: SelectiveSearchConfig = field(default_factory=lambda: PRESETS["ss"])  # method "ss"
    ss2x: SelectiveSearchConfig = field(default_factory=lambda: PRESETS["ss2x"])  # "ss2x" and "merged"
    merge: MergeConfig = field(default_factory=MergeConfig)  # "merged"


def multibox_weights_path(multibox_weights=None) -> str:
    """The weights file to use; raises :class:`InputError` naming it when it does not exist."""
    path = os.fspath(multibox_weights) if multibox_weights else str(DEFAULT_MULTIBOX_WEIGHTS)
    if not os.path.isfile(path):
        raise InputError(f"{path}: MultiBox weights not found (train them with tools/train_multibox.py "
                         "or pass --multibox-weights FILE)")
    return path


def build_proposer(method: str, cfg: ProposalsConfig | None = None, multibox_weights=None,
                   device: str = "cpu") -> Proposer:
    """The proposer for ``method``.

    Args:
        method: one of :data:`METHODS`.
        cfg: the selective search and merge parameters (defaults: the presets).
        multibox_weights: checkpoint for ``multibox``/``merged``; default ``assets/model/multibox.pt``.
        device: where MultiBox runs.

    Raises:
        InputError: unknown method, or the MultiBox weights file is missing or unreadable.
    """
    cfg = cfg or ProposalsConfig()
    if method == "ss":
        return SelectiveSearch(cfg.ss)
    if method == "ss2x":
        return SelectiveSearch(cfg.ss2x)
    if method not in ("multibox", "merged"):
        raise InputError(f"--method: unknown proposal method {method!r} (known: {', '.join(METHODS)})")
    from proposals.multibox import load_multibox  # torch model code, only when needed

    multibox = load_multibox(multibox_weights_path(multibox_weights), device)
    if method == "multibox":
        return multibox
    return MergedProposer(SelectiveSearch(cfg.ss2x), multibox, cfg.merge)


def build_background_proposer(method: str, cfg: ProposalsConfig | None = None) -> Proposer | None:
    """The part of ``method``'s proposer that needs no torch, for a worker process: selective
    search for ``ss``, ``ss2x`` and ``merged``; None for ``multibox`` (it all runs in torch).

    :func:`complete_proposals` turns its output into the full method's proposals.
    """
    if method == "multibox":
        return None
    return build_proposer("ss2x" if method == "merged" else method, cfg)


def complete_proposals(proposer: Proposer, image: np.ndarray, partial: Proposals | None) -> Proposals:
    """``proposer(image)`` given the output of its background part (:func:`build_background_proposer`)
    for the same image: MultiBox is run and merged in for ``merged``; None computes everything."""
    if partial is None:
        return proposer(image)
    if isinstance(proposer, MergedProposer):
        return merge_proposals(partial, proposer.multibox(image), proposer.cfg)
    return partial


@functools.lru_cache(maxsize=8)
def _file_sha256(path: str, mtime: float, size: int) -> str:
    """sha256 of a weights file, remembered per (path, mtime, size) so a rewrite is seen."""
    return sha256_file(path)


def proposer_key(method: str, cfg: ProposalsConfig | None = None, multibox_weights=None) -> dict:
    """Everything that shapes ``build_proposer(method, cfg, multibox_weights)``'s output, as plain data.

    The MultiBox weights enter by content hash, so retrained weights never hit a stale cache.
    """
    cfg = cfg or ProposalsConfig()
    key: dict = {"method": method}
    if method == "ss":
        key["ss"] = dataclasses.asdict(cfg.ss)
    if method in ("ss2x", "merged"):
        key["ss2x"] = dataclasses.asdict(cfg.ss2x)
    if method == "merged":
        key["merge"] = dataclasses.asdict(cfg.merge)
    if method in ("multibox", "merged"):
        path = multibox_weights_path(multibox_weights)
        stat = os.stat(path)
        key["multibox_weights_sha256"] = _file_sha256(path, stat.st_mtime, stat.st_size)
    return key
