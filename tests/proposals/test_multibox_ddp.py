"""tools/train_multibox.py under torchrun: two gloo ranks train MultiBox as one process does."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.synthetic import SyntheticConfig, generate_split

ROOT = Path(__file__).resolve().parents[2]


def test_two_ranks_give_one_process_losses_and_rank_0_validates(load_tool, tmp_path):
    generate_split(tmp_path / "split", 8, seed=3, cfg=SyntheticConfig(min_long_side=64, max_long_side=96))
    args = ["--train", str(tmp_path / "split"), "--val", str(tmp_path / "split")]
    for setting in ("multibox.width=0.125", "multibox.input_size=32", "multibox.num_priors=8",
                    "multibox.head_channels=8", "multibox.head_grid=1", "multibox.hidden=32",
                    "multibox.dropout=0.5", "train.batch_size=4", "train.epochs=2", "train.lr=0.001"):
        args += ["--set", setting]
    assert load_tool("train_multibox").main(args + ["--out", str(tmp_path / "one")]) == 0
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          str(ROOT / "tools" / "train_multibox.py"), *args, "--out", str(tmp_path / "two")],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    one, two = [json.loads((tmp_path / d / "history.json").read_text()) for d in ("one", "two")]
    assert [row["matched"] for row in two] == [row["matched"] for row in one]  # the whole batch's matches
    # the whole batch's loss and recall on every rank, as one process has them (dropout 0.5 included)
    for key in ("loss", "loc", "conf", "recall@0.5"):
        assert [row[key] for row in two] == pytest.approx([row[key] for row in one], rel=1e-3), key
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["checkpoint.pt", "config.yaml", "history.json"]
