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
