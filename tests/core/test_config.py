"""core.config: YAML into frozen dataclasses; unknown keys and wrong types name the key."""
import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest
import yaml

from core.config import ConfigError, add_config_args, build_dataclass, load_config, parse_override, save_config


@dataclass(frozen=True)
class Search:
    scales: tuple[int, ...] = (100, 200)  # a variable-length tuple
    sigma: float = 0.8
    strategy: Literal["fast", "quality"] = "fast"
    top_k: Optional[int] = None


@dataclass(frozen=True)
class Train:
    epochs: int = 2
    lr: float = 0.01
    augment: bool = True
    name: str = "run"
    pair: tuple[int, float] = (1, 0.5)


@dataclass(frozen=True)
class Schema:
    search: Search = field(default_factory=Search)
    train: Train = field(default_factory=Train)


def _yaml(tmp_path, text: str):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_defaults_without_a_file():
    cfg = load_config(Schema)
    assert cfg == Schema()


def test_yaml_into_frozen_dataclasses(tmp_path):
    text = "search:\n  scales: [50, 60, 70]\n  sigma: 1\n  strategy: quality\ntrain:\n  epochs: 5\n  pair: [3, 2]\n"
    cfg = load_config(Schema, _yaml(tmp_path, text))
    assert cfg.search == Search(scales=(50, 60, 70), sigma=1.0, strategy="quality")
    assert isinstance(cfg.search.sigma, float) and isinstance(cfg.search.scales, tuple)
    assert cfg.train.epochs == 5 and cfg.train.pair == (3, 2.0) and cfg.train.lr == 0.01
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.epochs = 3


@pytest.mark.parametrize("text,key", [
    ("search:\n  sigmaa: 1.0\n", "search.sigmaa"),
    ("serch:\n  sigma: 1.0\n", "serch"),
    ("train:\n  epochs: 1\n  extra: 2\n", "train.extra"),
])
def test_unknown_key_names_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError, match="unknown key") as err:
        load_config(Schema, _yaml(tmp_path, text))
    assert str(err.value).startswith(key + ":")


@pytest.mark.parametrize("text,key", [
    ("train:\n  epochs: many\n", "train.epochs"),
    ("train:\n  epochs: 2.5\n", "train.epochs"),
    ("train:\n  augment: 1\n", "train.augment"),  # an int is not a bool
    ("train:\n  epochs: true\n", "train.epochs"),  # nor is a bool an int
    ("train:\n  name: 3\n", "train.name"),
    ("train:\n  pair: [1]\n", "train.pair"),
    ("search:\n  scales: [1, x]\n", "search.scales[1]"),
    ("search:\n  strategy: slow\n", "search.strategy"),
    ("search:\n  top_k: ten\n", "search.top_k"),
    ("search: 3\n", "search"),
])
def test_wrong_type_names_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError) as err:
        load_config(Schema, _yaml(tmp_path, text))
    assert str(err.value).startswith(key + ":")


def test_optional_accepts_none_and_value(tmp_path):
    assert load_config(Schema, _yaml(tmp_path, "search:\n  top_k: null\n")).search.top_k is None
    assert load_config(Schema, overrides=["search.top_k=7"]).search.top_k == 7


def test_set_overrides_file_values(tmp_path):
    path = _yaml(tmp_path, "train:\n  epochs: 5\n  lr: 0.1\n")
    cfg = load_config(Schema, path, ["train.epochs=9", "search.scales=[1, 2]", "train.name=a=b"])
    assert cfg.train.epochs == 9 and cfg.train.lr == 0.1 and cfg.search.scales == (1, 2)
    assert cfg.train.name == "a=b"  # only the first '=' splits


@pytest.mark.parametrize("text,key", [("train.epochs=x", "train.epochs"), ("train.nope=1", "train.nope"),
                                      ("train.epochs.deep=1", "train.epochs")])
def test_bad_override_names_the_key(text, key):
    with pytest.raises(ConfigError) as err:
        load_config(Schema, overrides=[text])
    assert key in str(err.value)


def test_parse_override():
    assert parse_override("a.b=1.5") == ("a.b", 1.5)
    assert parse_override("a.b=") == ("a.b", "")
    with pytest.raises(ConfigError):
        parse_override("a.b")
    with pytest.raises(ConfigError):
        parse_override("=3")


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="missing.yaml"):
        load_config(Schema, tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Schema, _yaml(tmp_path, "train: [unclosed\n"))
    with pytest.raises(ConfigError, match="mapping"):
        load_config(Schema, _yaml(tmp_path, "- a\n- b\n"))


def test_binary_file_is_a_config_error_naming_it(tmp_path):
    path = tmp_path / "weights.pt"
    path.write_bytes(b"PK\x03\x04\x80\x81\xfe\xff binary")
    with pytest.raises(ConfigError, match=r"weights.pt: not UTF-8 text"):
        load_config(Schema, path)


@dataclass(frozen=True)
class Checked:
    low: int = 1
    high: int = 2

    def __post_init__(self):
        if self.low > self.high:
            raise ConfigError(f"low: must be <= high ({self.high}), got {self.low}")


@dataclass(frozen=True)
class CheckedSchema:
    stage: Checked = field(default_factory=Checked)


def test_post_init_errors_get_the_stage_prefix():
    with pytest.raises(ConfigError, match=r"^stage\.low: must be <= high \(2\), got 5$"):
        load_config(CheckedSchema, overrides=["stage.low=5"])


def test_empty_file_gives_defaults(tmp_path):
    assert load_config(Schema, _yaml(tmp_path, "")) == Schema()


def test_save_config_round_trip(tmp_path):
    cfg = load_config(Schema, overrides=["train.epochs=7", "search.scales=[3, 4, 5]", "search.top_k=2"])
    save_config(cfg, tmp_path / "out" / "config.yaml")
    data = yaml.safe_load((tmp_path / "out" / "config.yaml").read_text())
    assert data["search"]["scales"] == [3, 4, 5]  # plain lists, not python tuples
    assert load_config(Schema, tmp_path / "out" / "config.yaml") == cfg
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".tmp")]


def test_build_dataclass_passes_instances_through():
    s = Search(sigma=2.0)
    assert build_dataclass(Search, s) is s
    assert build_dataclass(Search, None) == Search()


def test_add_config_args():
    parser = argparse.ArgumentParser()
    add_config_args(parser)
    args = parser.parse_args(["--config", "c.yaml", "--set", "a.b=1", "--set", "a.c=2"])
    assert args.config == "c.yaml" and args.overrides == ["a.b=1", "a.c=2"]
    assert parser.parse_args([]).overrides == []


def test_save_run_config_beside_each_output(tmp_path):
    from core.config import save_run_config

    @dataclasses.dataclass(frozen=True)
    class Stage:
        k: int = 3

    @dataclasses.dataclass(frozen=True)
    class Schema:
        stage: Stage = Stage()

    (tmp_path / "drawn").mkdir()
    save_run_config(Schema(), tmp_path / "drawn", tmp_path / "dets.json", None, tmp_path / "plots")
    for path in (tmp_path / "drawn" / "config.yaml", tmp_path / "dets.config.yaml", tmp_path / "plots" / "config.yaml"):
        assert "k: 3" in path.read_text()


def test_other_stages_sections_are_skipped_but_overrides_are_not(tmp_path, caplog):
    """One config file serves several tools: each reads its own sections and skips the rest."""
    import logging
    path = _yaml(tmp_path, "train:\n  epochs: 4\ndata:\n  anything: 1\nclassifier: {width: 2}\n")
    with caplog.at_level(logging.INFO):
        assert load_config(Schema, path).train.epochs == 4
    assert "skipping data, classifier" in caplog.text
    with pytest.raises(ConfigError, match="^data: unknown key"):
        load_config(Schema, path, ["data.anything=2"])


def test_range_checks_name_stage_key_value_and_range():
    from core.config import IOU, Range, check_ranges

    @dataclass(frozen=True)
    class Stage:
        iou: float = 0.5
        sizes: tuple[int, ...] = (1, 2)
        mode: str = "a"

        def __post_init__(self):
            check_ranges(self, iou=IOU, sizes=Range(1), mode=("a", "b"))

    @dataclass(frozen=True)
    class Root:
        stage: Stage = field(default_factory=Stage)

    assert load_config(Root, None, ["stage.iou=1"]).stage.iou == 1.0
    for setting, message in [("stage.iou=0", "stage.iou: 0.0 is out of range (0 < value <= 1)"),
                             ("stage.iou=.nan", "stage.iou: nan is out of range (0 < value <= 1)"),
                             ("stage.sizes=[3, 0]", "stage.sizes: [3, 0] is out of range (1 <= value)"),
                             ("stage.mode=c", "stage.mode: 'c' is not one of a, b")]:
        with pytest.raises(ConfigError) as err:
            load_config(Root, None, [setting])
        assert str(err.value) == message
