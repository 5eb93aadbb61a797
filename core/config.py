"""YAML configuration into frozen dataclasses, one per stage.

A tool declares its schema as a frozen dataclass whose fields are stage dataclasses (each with
defaults in code: the defaults are the recipe, and ``configs/*.yaml`` spell them out). :func:`load_config`
reads an optional YAML file and ``stage.key=value`` overrides (values parsed as YAML) into that
schema. A file's sections for other tools' stages are skipped (one config file serves training and
detection); an unknown key inside a section the tool reads, a misspelt section, a wrong type or a
value out of its range (each stage's ``__post_init__``, :func:`check_ranges`) raise
:class:`ConfigError` naming ``stage.key``. :func:`save_config` writes the effective config so
every run leaves it beside its outputs.
"""
from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import types
import typing
from typing import Any, Literal, Union

import yaml

from core.io import write_text

log = logging.getLogger(__name__)

class ConfigError(ValueError):
    """A config file cannot be read, or a key is unknown or its value has the wrong type or range.

    A stage dataclass's ``__post_init__`` may raise it as ``"key: reason"``;
    :func:`build_dataclass` adds the stage, ``"stage.key: reason"``.
    """


@dataclasses.dataclass(frozen=True)
class Range:
    """A closed or half-open interval of valid numbers, e.g. ``Range(0, 1, lo_open=True)`` = (0, 1]."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, value) -> bool:
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            return False  # a NaN is in no range
        if self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo)):
            return False
        return self.hi is None or not (value > self.hi or (self.hi_open and value == self.hi))

    def __str__(self) -> str:
        left = "" if self.lo is None else f"{self.lo} {'<' if self.lo_open else '<='} "
        right = "" if self.hi is None else f" {'<' if self.hi_open else '<='} {self.hi}"
        return f"{left}value{right}"


POSITIVE = Range(0, lo_open=True)  # > 0
COUNT = Range(0)  # >= 0 (0 usually meaning "all" or "off")
AT_LEAST_ONE = Range(1)
FRACTION = Range(0, 1)  # [0, 1]
IOU = Range(0, 1, lo_open=True)  # (0, 1]: IoU 0 would suppress or match everything


def check_ranges(cfg, **ranges) -> None:
    """Raise :class:`ConfigError` ``"key: value is out of range (lo <= value <= hi)"`` for the first
    field of ``cfg`` outside its :class:`Range` (a list field: any item) or set of allowed values;
    ``None`` (an Optional field left unset) is always allowed.

    Called by a stage dataclass's ``__post_init__``; :func:`build_dataclass` prefixes the stage.
    """
    for key, allowed in ranges.items():
        value = getattr(cfg, key)
        if value is None:  # only an Optional field holds None (the types are checked first)
            continue
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        shown = items if isinstance(value, (list, tuple)) else value  # as the user wrote it in YAML
        if isinstance(allowed, Range):
            if any(item not in allowed for item in items):
                raise ConfigError(f"{key}: {shown!r} is out of range ({allowed})")
        elif any(item not in allowed for item in items):
            raise ConfigError(f"{key}: {shown!r} is not one of {', '.join(map(str, allowed))}")


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it in the declared type."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        for arm in typing.get_args(tp):
            if arm is type(None) and value is None:
                return None
            try:
                return _coerce(value, arm, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise ConfigError(f"{key}: expected one of {list(typing.get_args(tp))}, got {value!r}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{key}: expected {len(args)} items, got {len(value)}")
            items = [_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args))]
        else:
            arm = args[0] if args else Any
            items = [_coerce(v, arm, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if dataclasses.is_dataclass(tp):
        return build_dataclass(tp, value, key)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")


def build_dataclass(cls, data, where: str = ""):
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types."""
    if isinstance(data, cls):
        return data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            full = f"{where}.{key}" if where else str(key)
            raise ConfigError(f"{full}: unknown key (known: {', '.join(sorted(names))})")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError as err:  # a range check in __post_init__ names the key without its stage
        if not where:
            raise
        raise ConfigError(f"{where}.{err}") from None


def _set_path(tree: dict, dotted: str, value) -> None:
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        child = node.setdefault(p, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{dotted}: {p} is not a section")
        node = child
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``"stage.key=value"`` → ``("stage.key", value)`` with the value parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"{text}: an override must look like stage.key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"{text}: an override needs a key before '='")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"{key}: cannot parse value {raw!r} ({err})") from None
    return key, value


def _own_sections(schema, tree: dict, path) -> dict:
    """The sections of a config file's ``tree`` that ``schema`` reads.

    Sections of other tools' stages are skipped with one log line; a section one typo away from a
    stage of ``schema`` (``detecter``) is refused, since the user meant this tool to read it.
    """
    names = [f.name for f in dataclasses.fields(schema)]
    others = [k for k in tree if k not in names]
    for key in others:
        close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.8)
        if close:
            raise ConfigError(f"{key}: unknown key (did you mean {close[0]}?)")
    if others:
        log.info("%s: this tool reads %s; skipping %s", path, ", ".join(names), ", ".join(map(str, others)))
    return {k: v for k, v in tree.items() if k in names}


def load_config(schema, path=None, overrides=()):
    """Load ``schema`` (a frozen dataclass of stage dataclasses) from YAML plus overrides.

    Sections of ``path`` that ``schema`` does not have are skipped (see :func:`_own_sections`);
    an override naming a stage or key the schema does not have is refused.
    """
    tree: dict = {}
    if path is not None:
        try:
            with open(path, encoding="utf-8") as f:
                tree = yaml.safe_load(f) or {}
        except OSError as err:
            raise ConfigError(f"{path}: cannot read config ({err.strerror})") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({err})") from None
        except UnicodeDecodeError as err:  # a binary file (weights, an image) given as --config
            raise ConfigError(f"{path}: not UTF-8 text, not a YAML config ({err.reason})") from None
        if not isinstance(tree, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of stages")
        tree = _own_sections(schema, tree, path)
    for text in overrides:
        key, value = parse_override(text)
        _set_path(tree, key, value)
    return build_dataclass(schema, tree)


def config_to_dict(cfg) -> dict:
    """A plain dict (lists, not tuples) suitable for YAML or JSON."""
    def plain(v):
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return plain(dataclasses.asdict(cfg))


def save_config(cfg, path) -> None:
    """Write the effective config as YAML (atomically)."""
    write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


def save_run_config(cfg, *outputs) -> None:
    """Save the effective config beside each output a run wrote.

    An output folder gets ``DIR/config.yaml``; an output file ``F.json`` gets ``F.config.yaml``
    beside it (so a run that writes only one file does not clobber a shared ``config.yaml``).
    ``None`` entries (outputs not asked for) are skipped.
    """
    for out in outputs:
        if not out:
            continue
        out = os.fspath(out)
        stem, ext = os.path.splitext(out)
        folder = os.path.isdir(out) or not ext  # an output folder not made yet (nothing written)
        save_config(cfg, os.path.join(out, "config.yaml") if folder else stem + ".config.yaml")


def add_config_args(parser) -> None:
    """The ``--config`` / ``--set`` flags every tool shares."""
    parser.add_argument("--config", help="YAML file with stage sections")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="STAGE.KEY=VALUE", help="override one config value (repeatable)")
