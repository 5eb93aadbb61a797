"""Region-classifier checkpoints: save atomically, load safely (core.checkpoint's format).

A member checkpoint is core.checkpoint's dict (``format = "inception-rcnn/region-classifier"``,
``config`` whose "classifier" section rebuilds the network, ``model``, ``optimizer``,
``train_state``, ``commit``) plus ``"classes"`` (K names), ``"member"``, ``"epoch"`` and
``"bbox_regressor"`` (dict of tensors or None). Files written before ``train_state`` was
common to every checkpoint (the bundled members among them) load unchanged (:func:`upgrade`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from core import checkpoint as common
from core.config import ConfigError, build_dataclass
from core.errors import InputError
from detector.bbox_regression import BoxRegressor
from detector.classifier import RegionClassifier
from detector.config import ClassifierConfig

KIND = "region-classifier"
FORMAT = common.FORMAT_PREFIX + KIND
REQUIRED = ("classes", "member", "epoch")


def save_checkpoint(path, model: RegionClassifier, config: dict, member: int, epoch: int,
                    optimizer: dict | None = None, bbox_regressor: dict | None = None,
                    half: bool = False, commit: str | None = None, train_state: dict | None = None) -> None:
    """Write a checkpoint atomically (a crash never leaves a half-written file).

    Args:
        config: the effective training config as a plain dict; its "classifier" section is
            replaced by the model's own.
        half: store floating-point weights as float16 (halves the file; loaded back as float32).
        train_state: the engine's progress (:meth:`core.engine.TrainState.to_dict`); default
            ``{"epoch": epoch}``.
    """
    common.save_checkpoint(path, KIND, model.state_dict(), {**config, "classifier": model.config_dict()},
                           optimizer, train_state or {"epoch": int(epoch)}, half, commit,
                           extra={"classes": list(model.classes), "member": int(member), "epoch": int(epoch),
                                  "bbox_regressor": bbox_regressor})


def upgrade(blob: dict) -> dict | None:
    """A member file of the earlier layout (no ``train_state`` or no epoch in it) in today's."""
    if blob.get("format") != FORMAT or isinstance(blob.get("train_state"), dict) and "epoch" in blob["train_state"]:
        return None
    entry = blob.get("train_state") if isinstance(blob.get("train_state"), dict) else {}
    return {"optimizer": None, "commit": "unknown", **blob,
            "train_state": {**entry, "epoch": blob.get("epoch", 0)}}


def read_checkpoint(path) -> dict:
    """The checkpoint dict in ``path``, loaded with ``weights_only=True`` and checked for its keys.

    Raises:
        InputError: missing file, not a torch file, an unsafe pickle, or not a detector checkpoint.
    """
    path = os.fspath(path)
    blob = common.read_checkpoint(path, KIND, upgrade)
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
    problem = common.state_mismatch(model.state_dict(), blob["model"])
    if problem:
        raise InputError(f"{path}: weights do not fit the architecture it declares "
                         f"({len(classes)} classes, width {model.cfg.width}): {problem}")
    return common.load_model_state(model, blob["model"], path)


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
