"""Loading any checkpoint of ours safely: ``torch.load(weights_only=True)``, errors as one line.

A file whose unpickling would import or call anything (e.g. ``os.system``) is refused by PyTorch
before any of it runs; every failure becomes one :class:`InputError` naming the file, without
torch's advice to re-run with full unpickling.
"""
from __future__ import annotations

import os
import pickle
import subprocess
import warnings

from core.errors import InputError


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
