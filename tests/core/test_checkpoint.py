"""core.checkpoint.load_weights_only: nothing in a file runs, and every refusal is one clear line."""
import pickle

import pytest
import torch

from core.checkpoint import load_weights_only
from core.errors import InputError


class Touch:
    """Unpickling this would create a file (the stand-in for arbitrary code)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def refused(path) -> str:
    with pytest.raises(InputError) as info:
        load_weights_only(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message
    assert "weights_only` set to `False`" not in message  # torch's advice is not repeated
    return message


def test_code_running_files_are_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"model": Touch(marker)}, tmp_path / "torch.pt")
    (tmp_path / "raw.pt").write_bytes(pickle.dumps(Touch(marker)))
    for name in ("torch.pt", "raw.pt"):
        assert "refused: not a weights-only checkpoint" in refused(tmp_path / name)
    assert "GLOBAL" in refused(tmp_path / "torch.pt")
    assert not marker.exists()


def test_foreign_and_missing_files(tmp_path):
    (tmp_path / "text.pt").write_text("not a checkpoint")
    assert "refused: not a weights-only checkpoint (Unsupported" in refused(tmp_path / "text.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    assert "not a PyTorch checkpoint" in refused(tmp_path / "empty.pt")
    assert "no such checkpoint file" in refused(tmp_path / "missing.pt")
    torch.save({"w": torch.ones(2)}, tmp_path / "ok.pt")
    assert torch.equal(load_weights_only(tmp_path / "ok.pt")["w"], torch.ones(2))


# ---------------------------------------------------------------- one format, strict loading, resume policy

from core.checkpoint import (check_same_recipe, load_model_state, read_checkpoint,  # noqa: E402
                             save_checkpoint)
from core.config import ConfigError  # noqa: E402


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Conv2d(4, 2, 1))


def test_save_and_read_the_common_format(tmp_path):
    net = _net().to(memory_format=torch.channels_last)
    save_checkpoint(tmp_path / "c.pt", "toy", net.state_dict(), {"train": {"lr": 0.1}}, {"state": {}},
                    {"epoch": 2}, commit="abc", extra={"classes": ["a"]})
    blob = read_checkpoint(tmp_path / "c.pt", "toy")
    assert blob["format"] == "inception-rcnn/toy" and blob["train_state"] == {"epoch": 2}
    assert blob["commit"] == "abc" and blob["classes"] == ["a"] and blob["config"]["train"]["lr"] == 0.1
    assert blob["model"]["0.weight"].is_contiguous()  # channels-last weights stored in the default layout
    other = load_model_state(_net(), blob["model"], tmp_path / "c.pt")
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), other.state_dict().values()))
    with pytest.raises(InputError, match=r"c.pt: not a other checkpoint \(it is 'inception-rcnn/toy'\)"):
        read_checkpoint(tmp_path / "c.pt", "other")
    torch.save({"format": "inception-rcnn/toy", "model": {}}, tmp_path / "part.pt")
    with pytest.raises(InputError, match=r"part.pt: damaged toy checkpoint \(missing or malformed config, optimizer, train_state, commit\)"):
        read_checkpoint(tmp_path / "part.pt", "toy")


def test_strict_loader_names_every_missing_unexpected_and_misshaped_key_in_one_line():
    state = _net().state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["1.running_mean"]
    state["2.weight"] = torch.zeros(5, 4, 1, 1)
    with pytest.raises(InputError) as err:
        load_model_state(_net(), state, "w.pt", what="the toy")
    message = str(err.value)
    assert "\n" not in message
    assert message == ("w.pt: does not fit the toy: missing 1 (1.running_mean); unexpected 1 (extra.weight); "
                       "mis-shaped (file vs model) 1 (2.weight (5, 4, 1, 1) vs (2, 4, 1, 1))")
    many = {f"k{i}": torch.zeros(1) for i in range(5)}
    with pytest.raises(InputError, match=r"unexpected 5 \(k0, k1, k2 and 2 more\)"):
        load_model_state(_net(), {**_net().state_dict(), **many}, "w.pt")
    half = {k: v.half() if v.is_floating_point() else v for k, v in _net().state_dict().items()}
    assert next(load_model_state(_net(), half, "w.pt").parameters()).dtype == torch.float32


def test_resume_policy_refuses_another_recipe_and_allows_what_may_change():
    stored = {"train": {"lr": 0.1, "epochs": 3, "seed": 0}, "data": {"train": "a"}}
    check_same_recipe("r.pt", stored, {"train": {"lr": 0.1, "epochs": 9, "seed": 0}, "data": {"train": "b"}},
                      may_change=("data", "train.epochs"))
    with pytest.raises(ConfigError) as err:
        check_same_recipe("r.pt", stored, {"train": {"lr": 0.2, "epochs": 3, "seed": 1, "new": 1}, "data": {}},
                          may_change=("data",))
    assert str(err.value).startswith("r.pt: was trained with another config (train.lr: 0.1 -> 0.2, "
                                     "train.new: (unset) -> 1, train.seed: 0 -> 1)")
