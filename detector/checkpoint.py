"""Region-classifier checkpoints: save atomically, load safely.

A checkpoint is a plain dict saved with ``torch.save``::

    {"format": "inception-rcnn/region-classifier", "model": state dict, "config": plain dict
     (its "classifier" section rebuilds the network), "classes": [K names], "member": int,
     "epoch": int, "optimizer": state dict or None, "commit": str,
     "bbox_regressor": dict of tensors or None}

Loading uses ``torch.load(weights_only=True)``: a file whose unpickling would import or call
anything (e.g. ``os.system``) is refused by PyTorch before any of it runs, and we turn every
refusal into one :class:`InputError` line naming the file.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from core.checkpoint import git_commit, load_weights_only
from core.config import ConfigError, build_dataclass
from core.errors import InputError
from core.io import atomic_path
from detector.bbox_regression import BoxRegressor
from detector.classifier import RegionClassifier
from detector.config import ClassifierConfig

FORMAT = "inception-rcnn/region-classifier"
REQUIRED = ("model", "config", "classes", "member", "epoch")


def save_checkpoint(path, model: RegionClassifier, config: dict, member: int, epoch: int,
                    optimizer: dict | None = None, bbox_regressor: dict | None = None,
                    half: bool = False, commit: str | None = None, extra: dict | None = None) -> None:
    """Write a checkpoint atomically (a crash never leaves a half-written file).

    Args:
        config: the effective training config as a plain dict; its "classifier" section is
            replaced by the model's own.
        half: store floating-point weights as float16 (halves the file; loaded back as float32).
        extra: more plain entries (e.g. the trainer's "train_state": iteration and history).
    """
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    blob = {"format": FORMAT, "model": state, "config": {**config, "classifier": model.config_dict()},
            "classes": list(model.classes), "member": int(member), "epoch": int(epoch),
            "optimizer": optimizer, "commit": commit or git_commit(),
            "bbox_regressor": bbox_regressor, **(extra or {})}
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)


def read_checkpoint(path) -> dict:
    """The checkpoint dict in ``path``, loaded with ``weights_only=True`` and checked for its keys.

    Raises:
        InputError: missing file, not a torch file, an unsafe pickle, or not a detector checkpoint.
    """
    path = os.fspath(path)
    blob = load_weights_only(path)
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        missing = [k for k in REQUIRED if not isinstance(blob, dict) or k not in blob]
        raise InputError(f"{path}: not a region-classifier checkpoint"
                         + (f" (missing {', '.join(missing)})" if missing else ""))
    missing = [k for k in REQUIRED if k not in blob]
    if missing:
        raise InputError(f"{path}: incomplete checkpoint (missing {', '.join(missing)})")
    return blob


@dataclass
class LoadedMember:
    """A region classifier (eval mode) with its checkpoint's metadata (everything but weights)."""

    model: RegionClassifier
    meta: dict
    path: str


def _classifier_config(path: str, blob: dict) -> ClassifierConfig:
    try:
        return build_dataclass(ClassifierConfig, blob["config"].get("classifier"), "classifier")
    except (ConfigError, AttributeError, TypeError) as err:
        raise InputError(f"{path}: checkpoint config does not describe a classifier ({err})") from None


def build_from_checkpoint(path, blob: dict) -> RegionClassifier:
    """Rebuild the network a checkpoint describes and load its weights (shape-checked first)."""
    classes = blob["classes"]
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise InputError(f"{path}: checkpoint has no class list")
    model = RegionClassifier(classes, _classifier_config(path, blob))
    own, state = model.state_dict(), blob["model"]
    if not isinstance(state, dict):
        raise InputError(f"{path}: checkpoint 'model' is not a state dict")
    bad = [k for k in own if k not in state or tuple(state[k].shape) != tuple(own[k].shape)]
    extra = [k for k in state if k not in own]
    if bad or extra:
        key = (bad or extra)[0]
        got = tuple(state[key].shape) if key in state else "missing"
        want = tuple(own[key].shape) if key in own else "absent"
        raise InputError(f"{path}: weights do not fit the architecture it declares "
                         f"({len(classes)} classes, width {model.cfg.width}): {key} is {got}, "
                         f"expected {want}")
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return model


def load_member(path, device="cpu", expect_classes: list[str] | None = None) -> LoadedMember:
    """Load one ensemble member for inference.

    Args:
        expect_classes: if given, the checkpoint's classes must equal these (same order).

    Raises:
        InputError: see :func:`read_checkpoint`; weights that do not fit; other classes.
    """
    path = os.fspath(path)
    blob = read_checkpoint(path)
    model = build_from_checkpoint(path, blob)
    if expect_classes is not None and list(expect_classes) != model.classes:
        raise InputError(f"{path}: its {model.num_classes} classes differ from the other members' "
                         f"{len(expect_classes)} ({model.classes[:3]}... vs {list(expect_classes)[:3]}...)")
    if isinstance(blob.get("bbox_regressor"), dict):
        try:
            model.box_regressor = BoxRegressor.from_dict(blob["bbox_regressor"])
        except (KeyError, AttributeError, TypeError) as err:
            raise InputError(f"{path}: malformed bbox_regressor entry ({err})") from None
    meta = {k: v for k, v in blob.items() if k not in ("model", "optimizer", "bbox_regressor")}
    return LoadedMember(model.to(device).eval(), meta, path)
