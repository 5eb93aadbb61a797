"""Every checkpoint of ours: one format, written atomically, loaded safely and strictly.

A checkpoint is a plain dict saved with ``torch.save``::

    {"format": "inception-rcnn/<kind>", "config": the run's effective config (plain data),
     "model": state dict, "optimizer": state dict or None, "train_state": {"epoch", "iteration",
     "seconds", "history", ...}, "commit": the training commit, ...entries of the kind}

Loading uses ``torch.load(weights_only=True)``: a file whose unpickling would import or call
anything (e.g. ``os.system``) is refused by PyTorch before any of it runs; every failure becomes
one :class:`InputError` naming the file, without torch's advice to re-run with full unpickling.
Weights load strictly: every missing, unexpected and mis-shaped key is reported in one line.
"""
from __future__ import annotations

import os
import pickle
import subprocess
import warnings

from core.errors import InputError
from core.io import atomic_path


def git_commit() -> str:
    """The repository's HEAD commit (``-dirty`` if tracked files changed), or "unknown"."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def refusal(path: str, err: Exception) -> InputError:
    """The one-line error for a file ``torch.load(weights_only=True)`` rejected."""
    text = str(err)
    if not (isinstance(err, pickle.UnpicklingError) and "weights only load failed" in text.lower()):
        return InputError(f"{path}: not a PyTorch checkpoint ({type(err).__name__})")
    # Keep torch's reason ("unsupported GLOBAL posix.system ...", "Unsupported operand 110");
    # drop its advice to re-run with full unpickling.
    reasons = [ln.strip() for ln in text.splitlines() if "unsupported" in ln.lower()]
    reason = reasons[0].split("error: ")[-1].split(" was not an allowed")[0].rstrip(".") if reasons else "?"
    if "GLOBAL" in reason:  # the pickle imports something: loading it fully could run code
        return InputError(f"{path}: refused: not a weights-only checkpoint; loading it would need "
                          f"full unpickling, which can run code (nothing from it was executed; {reason})")
    return InputError(f"{path}: refused: not a weights-only checkpoint ({reason})")


def load_weights_only(path):
    """``torch.load(path, weights_only=True)`` on the CPU; any failure is an :class:`InputError`."""
    import torch  # late: core stays importable without loading torch

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such checkpoint file")
    try:
        with warnings.catch_warnings():  # e.g. pickle-protocol warnings: the refusal says enough
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for foreign files; all mean "refuse"
        raise refusal(path, err) from None


# ---------------------------------------------------------------- one format for every trainer

FORMAT_PREFIX = "inception-rcnn/"
KEYS = ("format", "config", "model", "optimizer", "train_state", "commit")


def is_main_process() -> bool:
    """True unless this is a non-zero rank of a ``torch.distributed`` run (only rank 0 writes files)."""
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def plain_state(state: dict, half: bool = False) -> dict:
    """A state dict on the CPU, contiguous (channels-last weights are stored in the default layout),
    optionally with floating-point tensors as float16."""
    out = {}
    for key, value in state.items():
        value = value.detach().cpu().contiguous()
        out[key] = value.half() if half and value.is_floating_point() else value
    return out


def save_checkpoint(path, kind: str, model_state: dict, config: dict, optimizer: dict | None = None,
                    train_state: dict | None = None, half: bool = False, commit: str | None = None,
                    extra: dict | None = None) -> None:
    """Write ``{format, config, model, optimizer, train_state, commit, **extra}`` atomically.

    Args:
        kind: what the weights are ("region-classifier", "multibox", "faster-rcnn"); stored as
            ``format = "inception-rcnn/<kind>"`` and checked by :func:`read_checkpoint`.
        model_state: the network's state dict; ``half`` stores its floating-point tensors as fp16.
        config: the run's effective config as plain data (it rebuilds the network and is compared
            on resume).
        optimizer: the optimizer's state dict (None in exported copies).
        train_state: plain progress data (epoch, iteration, seconds, history).

    Only rank 0 of a distributed run writes; other ranks return without touching the file.
    """
    import torch

    if not is_main_process():
        return
    blob = {"format": FORMAT_PREFIX + kind, "config": config, "model": plain_state(model_state, half),
            "optimizer": optimizer, "train_state": dict(train_state or {}),
            "commit": commit or git_commit(), **(extra or {})}
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)


def read_checkpoint(path, kind: str, upgrade=None, label: str | None = None) -> dict:
    """The checkpoint dict in ``path`` (``weights_only=True``), checked to be one of ``kind``.

    Args:
        upgrade: maps a dict in an earlier layout of this kind to the current one, or returns
            None when there is nothing to change; files written before the common format (e.g.
            the bundled weights) load through it.
        label: how messages name the kind (default ``kind``).

    Raises:
        InputError: unreadable, unsafe, damaged, another kind, or missing one of :data:`KEYS`.
    """
    path = os.fspath(path)
    blob = load_weights_only(path)
    if isinstance(blob, dict) and upgrade is not None:
        blob = upgrade(blob) or blob
    label = label or kind
    if not isinstance(blob, dict) or blob.get("format") != FORMAT_PREFIX + kind:
        found = blob.get("format") if isinstance(blob, dict) else None
        raise InputError(f"{path}: not a {label} checkpoint"
                         + (f" (it is {found!r})" if isinstance(found, str) else ""))
    missing = [k for k in KEYS if k not in blob]
    if missing or not isinstance(blob["model"], dict) or not isinstance(blob["config"], dict):
        raise InputError(f"{path}: damaged {label} checkpoint (missing or malformed "
                         f"{', '.join(missing) or 'model/config'})")
    return blob


def _names(keys: list[str], limit: int = 3) -> str:
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def state_mismatch(own: dict, state: dict, optional=lambda key: False) -> str:
    """What keeps ``state`` from loading into a model whose state dict is ``own`` ("" if it fits).

    Lists missing, unexpected and mis-shaped keys in one line, as fvcore's ``Checkpointer``
    reports them; keys for which ``optional(key)`` holds may be missing.
    """
    missing = [k for k in own if k not in state and not optional(k)]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in state and tuple(getattr(state[k], "shape", ())) != tuple(own[k].shape)]
    parts = [f"{label} {len(keys)} ({_names(keys)})" for label, keys in
             (("missing", missing), ("unexpected", unexpected), ("mis-shaped (file vs model)", shapes)) if keys]
    return "; ".join(parts)


def load_model_state(model, state: dict, path, what: str = "the network", optional=lambda key: False):
    """Load ``state`` into ``model`` strictly (fp16 tensors back to the model's dtype).

    Raises:
        InputError: one line naming ``path`` and every missing, unexpected and mis-shaped key.
    """
    own = model.state_dict()
    if not isinstance(state, dict) or not all(hasattr(v, "shape") for v in state.values()):
        raise InputError(f"{os.fspath(path)}: 'model' is not a state dict of tensors")
    problem = state_mismatch(own, state, optional)
    if problem:
        raise InputError(f"{os.fspath(path)}: does not fit {what}: {problem}")
    fitted = {k: v.to(own[k].dtype) if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(fitted, strict=not any(optional(k) for k in own if k not in state))
    return model


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def recipe_changes(stored: dict, current: dict, may_change: tuple[str, ...] = ()) -> list[str]:
    """Settings that differ between two configs, as ``"section.key: old -> new"``.

    ``may_change`` lists dotted keys or whole sections ("data", "train.epochs") that a resume
    may change (where to read data, how far to train, how to validate).
    """
    def free(key: str) -> bool:
        return any(key == m or key.startswith(m + ".") for m in may_change)

    old, new = _flatten(stored), _flatten(current)
    return [f"{k}: {old.get(k, '(unset)')} -> {new.get(k, '(unset)')}"
            for k in sorted(set(old) | set(new)) if not free(k) and old.get(k) != new.get(k)]


def check_same_recipe(path, stored: dict, current: dict, may_change: tuple[str, ...] = ()) -> None:
    """Refuse to resume ``path`` under another recipe (one line naming what changed)."""
    from core.config import ConfigError

    changes = recipe_changes(stored, current, may_change)
    if changes:
        raise ConfigError(f"{os.fspath(path)}: was trained with another config ({_names(changes)}); "
                          "resume with the same --config/--set, or train into another --out")
