"""The one training loop: epochs of steps with progress, per-epoch evaluation, checkpoints, resume.

Every trainer (the region classifiers, MultiBox, the Faster R-CNN baseline) describes itself as a
:class:`Recipe` of plain callables and hands it to :func:`fit`; the engine owns what they share:

* **Seeds**: before epoch ``e`` the global torch generator is seeded with :func:`epoch_seed`
  ``(seed, e)``, and a recipe's batches draw from generators seeded the same way, so all the
  randomness of an epoch (order, augmentation, dropout) is fixed by the seed and the epoch: a
  run killed after epoch ``e`` and resumed equals an uninterrupted one.
* **Progress**: a tqdm bar over the epochs and one over each epoch's steps (running loss).
* **Evaluation**: ``recipe.evaluate(state)`` after each epoch, its numbers added to the history.
* **Checkpoints**: ``recipe.save(state)`` after each epoch, every ``save_every`` steps and when a
  wall-clock budget runs out; only rank 0 of a ``torch.distributed`` run calls it. The recipe's
  ``save`` writes with :func:`core.checkpoint.save_checkpoint` (atomic).
* **Resume**: :func:`resume` reads a checkpoint, refuses one trained under another recipe
  (:func:`core.checkpoint.check_same_recipe`), loads weights strictly and the optimizer, and
  returns the :class:`TrainState` to continue from.
* **Budget**: ``budget_seconds`` stops training when the training time, counted across resumes,
  reaches it (the baseline trains for a fixed time rather than a fixed number of epochs).

* **Ranks** (torchrun, DistributedDataParallel): every rank runs this loop over the same
  global minibatches; ``recipe.batches`` yields the rank's share of each one and ``recipe.step``
  steps a DDP model and returns the global minibatch's numbers (the same on every rank; see
  :mod:`core.distributed`). ``recipe.evaluate`` runs on rank 0, which sends its numbers to the
  others, so every rank keeps the same history; with a budget the ranks stop at the same step
  (the slowest rank's clock counts).
Modelled on DETR's ``engine.py`` (``train_one_epoch``, ``evaluate``) and detectron2's hooks,
with plain callables instead of a registry.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm import tqdm

from core.checkpoint import check_same_recipe, is_main_process, load_model_state, read_checkpoint
from core.distributed import max_over_ranks, on_main
from core.errors import InputError

log = logging.getLogger(__name__)


@dataclass
class TrainState:
    """Progress a checkpoint restores: finished epochs, steps taken, training seconds, history."""

    epoch: int = 0
    iteration: int = 0
    seconds: float = 0.0
    history: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        """The checkpoint's "train_state" entry (plain data)."""
        return {"epoch": self.epoch, "iteration": self.iteration, "seconds": self.seconds,
                "history": list(self.history)}

    @classmethod
    def from_dict(cls, entry: dict) -> "TrainState":
        return cls(int(entry.get("epoch", 0)), int(entry.get("iteration", 0)),
                   float(entry.get("seconds", 0.0)), list(entry.get("history", [])))


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """The seed of random stream ``stream`` in epoch ``epoch`` of a run seeded ``seed``."""
    return seed * 100003 + epoch + stream


def epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    """A CPU generator seeded with :func:`epoch_seed` (e.g. an epoch's order or its augmentations)."""
    return torch.Generator().manual_seed(epoch_seed(seed, epoch, stream))


@dataclass
class Recipe:
    """What one trainer brings to :func:`fit`.

    Attributes:
        epochs: train until ``state.epoch == epochs``.
        batches: ``batches(state)`` → the batches of epoch ``state.epoch`` from step
            ``state.iteration`` on (the sampler hook; a distributed run yields its rank's share).
        step: ``step(batch, state)`` → one optimisation step (it sets its own learning rate from
            ``state``); returns floats, at least ``"loss"``.
        save: ``save(state)`` writes a checkpoint (called on rank 0 only).
        evaluate: ``evaluate(state)`` → numbers for the history after each epoch (e.g. val mAP);
            called on rank 0 only.
        seed: the run's seed (see :func:`epoch_seed`).
        steps_per_epoch: for the progress bar (None if unknown).
        budget_seconds: stop when this much training time is spent (0 = no budget).
        save_every: also save every this many steps (0 = only after epochs and at the budget).
        name: the progress bars' label.
        clock: what the budget counts, in seconds: ``time.monotonic`` (wall-clock, the default) or
            ``time.process_time`` (this process's CPU time: a budget in CPU-minutes that a shared
            or paused machine does not eat into).
    """

    epochs: int
    batches: Callable[[TrainState], Iterable[Any]]
    step: Callable[[Any, TrainState], dict[str, float]]
    save: Callable[[TrainState], None]
    evaluate: Callable[[TrainState], dict] | None = None
    seed: int = 0
    steps_per_epoch: int | None = None
    budget_seconds: float = 0.0
    save_every: int = 0
    name: str = "train"
    clock: Callable[[], float] = time.monotonic


def _out_of_time(recipe: Recipe, state: TrainState) -> bool:
    return recipe.budget_seconds > 0 and state.seconds >= recipe.budget_seconds


def _save(recipe: Recipe, state: TrainState) -> None:
    if is_main_process():
        recipe.save(state)


def train_one_epoch(recipe: Recipe, state: TrainState) -> tuple[dict[str, float], bool]:
    """Run the steps of epoch ``state.epoch``; returns (mean of each step output, finished?).

    An epoch ends unfinished only when the budget runs out (the checkpoint then holds the
    step reached, and ``recipe.batches`` continues from it).
    """
    torch.manual_seed(epoch_seed(recipe.seed, state.epoch))  # dropout etc.: per epoch, resumable
    totals: dict[str, float] = {}
    steps, recent = 0, []
    bar = tqdm(recipe.batches(state), total=recipe.steps_per_epoch, desc=f"{recipe.name} epoch {state.epoch + 1}",
               leave=False, dynamic_ncols=True)
    tick = recipe.clock()
    for batch in bar:
        parts = recipe.step(batch, state)
        now = recipe.clock()  # the budget counts loading the batch as well as the step
        state.seconds, tick = state.seconds + now - tick, now
        if recipe.budget_seconds > 0:
            state.seconds = max_over_ranks(state.seconds)  # every rank stops at the same step
        if not math.isfinite(parts["loss"]):
            raise FloatingPointError(f"loss became {parts['loss']} at epoch {state.epoch + 1}, step "
                                     f"{state.iteration + 1}; lower the learning rate")
        state.iteration += 1
        steps += 1
        for key, value in parts.items():
            totals[key] = totals.get(key, 0.0) + float(value)
        recent = (recent + [parts["loss"]])[-20:]
        bar.set_postfix(loss=f"{sum(recent) / len(recent):.3f}")
        if recipe.save_every and state.iteration % recipe.save_every == 0:
            _save(recipe, state)
        if _out_of_time(recipe, state):
            bar.close()
            return {k: v / steps for k, v in totals.items()}, False
    return {k: v / max(1, steps) for k, v in totals.items()}, True


def fit(recipe: Recipe, state: TrainState | None = None) -> TrainState:
    """Train from ``state`` (a fresh run if None) to ``recipe.epochs`` or the budget.

    After each epoch: ``recipe.evaluate``, one history row (``epoch``, the steps' means and the
    evaluation's numbers), ``recipe.save``. Returns the final state.
    """
    state = state or TrainState()
    bar = tqdm(range(state.epoch, recipe.epochs), desc=f"{recipe.name} epochs", initial=state.epoch,
               total=recipe.epochs, dynamic_ncols=True)
    for _ in bar:
        if _out_of_time(recipe, state):
            break
        means, finished = train_one_epoch(recipe, state)
        if not finished:
            log.info("%s: training budget of %.0f s spent at step %d", recipe.name, recipe.budget_seconds,
                     state.iteration)
            _save(recipe, state)
            break
        row = {"epoch": state.epoch + 1, **means}
        if recipe.evaluate is not None:
            row.update(on_main(lambda: recipe.evaluate(state)))
        state.epoch += 1
        state.history.append(row)
        _save(recipe, state)
        log.info("%s epoch %d: %s", recipe.name, row["epoch"],
                 " ".join(f"{k}={v:.4f}" for k, v in row.items() if isinstance(v, float)))
    bar.close()
    return state


def resume(path, kind: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
           config: dict, may_change: tuple[str, ...] = (), upgrade=None) -> tuple[TrainState, dict]:
    """Continue from the checkpoint in ``path``: (its :class:`TrainState`, the checkpoint dict).

    Args:
        kind, upgrade: as :func:`core.checkpoint.read_checkpoint`.
        config: the current run's effective config; it must equal the stored one except for the
            dotted keys or sections in ``may_change``.

    Raises:
        InputError: a missing, damaged or foreign file, or weights that do not fit ``model``.
        ConfigError: the recipe changed.
    """
    blob = read_checkpoint(path, kind, upgrade)
    check_same_recipe(path, blob["config"], config, may_change)
    load_model_state(model, blob["model"], path)
    if optimizer is not None and blob["optimizer"]:
        try:
            optimizer.load_state_dict(blob["optimizer"])
        except (ValueError, KeyError, TypeError) as err:
            raise InputError(f"{path}: optimizer state does not fit ({err})") from None
    if not isinstance(blob["train_state"], dict):
        raise InputError(f"{path}: damaged checkpoint (train_state is not a dict)")
    state = TrainState.from_dict(blob["train_state"])
    log.info("resuming %s after epoch %d (step %d)", path, state.epoch, state.iteration)
    return state, blob
