"""configs/*.yaml: each spells out the defaults in code (one truth), and every tool its header names
loads it (skipping other stages' sections); out-of-range settings are refused in one line."""
import re
from pathlib import Path

import pytest
import yaml

from core.cli import run
from core.config import config_to_dict, load_config
from detector.config import DetectSchema
from proposals.build import ProposalsConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def schemas(load_tool) -> dict:
    """The --config schema of each tool that names a shipped config in its header."""
    return {"train": load_tool("train").Schema, "detect": DetectSchema, "test": DetectSchema,
            "train_multibox": load_tool("train_multibox").Schema, "propose": ProposalsConfig,
            "visualize_proposals": ProposalsConfig, "benchmark": ProposalsConfig,
            "pretrain": load_tool("pretrain").Schema}


# the tool that reads every section of each file
OWNER = {"detector.yaml": "train", "multibox.yaml": "train_multibox", "proposals.yaml": "propose",
         "pretrain.yaml": "pretrain"}


@pytest.mark.parametrize("name", sorted(OWNER))
def test_shipped_config_equals_the_defaults(load_tool, name):
    """Every section the file lists holds exactly the defaults' keys and values."""
    schema = schemas(load_tool)[OWNER[name]]
    listed = yaml.safe_load((CONFIGS / name).read_text())
    defaults = config_to_dict(schema())
    assert set(listed) <= set(defaults)
    for section, values in listed.items():
        assert values == defaults[section], section


@pytest.mark.parametrize("name", sorted(OWNER))
def test_every_tool_in_the_header_loads_it(load_tool, name):
    path = CONFIGS / name
    header = "".join(line for line in path.read_text().splitlines(True) if line.startswith("#"))
    tools = set(re.findall(r"tools/(\w+)\.py", header))
    assert OWNER[name] in tools
    for tool in tools:
        schema = schemas(load_tool)[tool]
        assert load_config(schema, path) == schema(), tool  # the file is the defaults


def test_train_without_config_is_the_readme_recipe(load_tool):
    cfg = load_tool("train").Schema()
    assert (cfg.train.epochs, cfg.train.lr, cfg.train.lr_steps, cfg.train.bbox_regression) == (4, 0.003, (3,), False)
    assert cfg.data.proposal_method == "ss2x" and cfg.detector.proposal_method == "merged"


def test_a_misspelt_key_in_a_section_the_tool_reads_is_refused(load_tool, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text((CONFIGS / "detector.yaml").read_text().replace("  top_k: 100", "  topk: 100"))
    code = run(load_tool("detect").main, [str(tmp_path), "--config", str(bad)])
    assert code == 2 and "detector.topk: unknown key" in capsys.readouterr().err


@pytest.mark.parametrize("setting,message", [
    ("detector.top_k=-1", "detector.top_k: -1 is out of range (1 <= value)"),
    ("detector.top_k=0", "detector.top_k: 0 is out of range (1 <= value)"),
    ("detector.nms_iou=7", "detector.nms_iou: 7.0 is out of range (0 < value <= 1)"),
    ("detector.score_threshold=-1", "detector.score_threshold: -1.0 is out of range (0 <= value <= 1)"),
    ("detector.proposal_method=sss", "detector.proposal_method: 'sss' is not one of ss, ss2x, multibox, merged"),
    ("proposals.ss2x.sigma=-1", "proposals.ss2x.sigma: -1.0 is out of range (0 <= value)"),
    ("proposals.merge.dedupe_iou=0", "proposals.merge.dedupe_iou: 0.0 is out of range (0 < value <= 1)"),
])
def test_out_of_range_settings_are_one_line_and_exit_2(load_tool, tmp_path, capsys, setting, message):
    code = run(load_tool("detect").main, [str(tmp_path), "--set", setting])
    err = capsys.readouterr().err
    assert code == 2 and err.strip() == f"error: {message}"
