"""detector.checkpoint: round trip, fp16 storage, and every refusal is one line naming the file."""
import os
import pickle

import pytest
import torch

from core.errors import InputError
from detector.bbox_regression import BoxRegressor
from detector.checkpoint import load_member, read_checkpoint, save_checkpoint
from detector.classifier import RegionClassifier
from detector.config import ClassifierConfig

TINY = ClassifierConfig(width=0.125, input_size=32, padding=2)
MARKER = "pwned.txt"


class Evil:
    """Unpickling this would create a file (the stand-in for arbitrary code)."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture
def model():
    torch.manual_seed(0)
    return RegionClassifier(["cat", "dog"], TINY).eval()


def test_round_trip(tmp_path, model):
    path = tmp_path / "m.pt"
    reg = BoxRegressor(torch.randn(2, model.regression_channels + 1, 4), torch.zeros(2, 4), 0.5)
    save_checkpoint(path, model, {"train": {"lr": 0.1}}, member=3, epoch=7, optimizer={"state": {}},
                    bbox_regressor=reg.to_dict(), commit="abc")
    loaded = load_member(path)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(loaded.model(x), model(x))
    assert loaded.meta["member"] == 3 and loaded.meta["epoch"] == 7 and loaded.meta["commit"] == "abc"
    assert loaded.meta["classes"] == ["cat", "dog"] and loaded.meta["config"]["train"] == {"lr": 0.1}
    assert loaded.model.cfg == TINY
    assert torch.equal(loaded.model.box_regressor.weights, reg.weights)
    assert not loaded.model.training
    assert read_checkpoint(path)["optimizer"] == {"state": {}}


def test_half_storage_is_smaller_and_close(tmp_path, model):
    save_checkpoint(tmp_path / "f.pt", model, {}, 0, 1)
    save_checkpoint(tmp_path / "h.pt", model, {}, 0, 1, half=True)
    assert os.path.getsize(tmp_path / "h.pt") < 0.6 * os.path.getsize(tmp_path / "f.pt")
    half = load_member(tmp_path / "h.pt").model
    assert next(half.parameters()).dtype == torch.float32
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(torch.softmax(half(x), 1), torch.softmax(model(x), 1), atol=1e-2)


def refuse(path, match):
    with pytest.raises(InputError, match=match) as err:
        load_member(path)
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    return message


def test_missing_and_foreign_files(tmp_path):
    refuse(tmp_path / "nope.pt", "no such checkpoint")
    (tmp_path / "text.pt").write_text("hello")
    refuse(tmp_path / "text.pt", "not a PyTorch checkpoint")
    (tmp_path / "empty.pt").write_bytes(b"")
    refuse(tmp_path / "empty.pt", "not a PyTorch checkpoint")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "dict.pt")
    refuse(tmp_path / "dict.pt", "not a region-classifier checkpoint")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    refuse(tmp_path / "tensor.pt", "not a region-classifier checkpoint")


@pytest.mark.parametrize("how", ["torch", "pickle"])
def test_code_executing_pickle_is_refused_and_nothing_runs(tmp_path, how, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    if how == "torch":
        torch.save({"model": Evil(MARKER)}, path)
    else:
        path.write_bytes(pickle.dumps(Evil(MARKER)))
    assert not (tmp_path / MARKER).exists()
    message = refuse(path, "refused: not a weights-only checkpoint")
    if how == "torch":
        assert "can run code" in message and "GLOBAL" in message
    assert not (tmp_path / MARKER).exists()


def test_wrong_architecture_or_classes(tmp_path, model):
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, {}, 0, 1)
    blob = torch.load(path, weights_only=True)
    blob["classes"] = ["cat", "dog", "bird"]  # class count no longer fits the weights
    torch.save(blob, tmp_path / "classes.pt")
    refuse(tmp_path / "classes.pt", r"do not fit .*3 classes")
    blob = torch.load(path, weights_only=True)
    blob["config"]["classifier"]["width"] = 0.25  # another architecture
    torch.save(blob, tmp_path / "width.pt")
    refuse(tmp_path / "width.pt", "do not fit")
    blob = torch.load(path, weights_only=True)
    blob["config"]["classifier"]["depth"] = 3
    torch.save(blob, tmp_path / "cfg.pt")
    refuse(tmp_path / "cfg.pt", "does not describe a classifier")
    with pytest.raises(InputError, match="classes differ"):
        load_member(path, expect_classes=["cat", "bird"])
