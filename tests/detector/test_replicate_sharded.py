"""bench/replicate.py under torchrun: ranks share the per-image work, rank 0 gets one process's rows."""
import copy
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import torch

from bench import replicate
from core.distributed import World
from detector.checkpoint import save_checkpoint
from detector.pipeline import load_members

ROOT = Path(__file__).resolve().parents[2]

WORKER = """
import json, pickle
from bench import replicate
from core.distributed import gather, process_group, world_from_env
from detector.pipeline import load_members

world = world_from_env()
with open({inputs!r}, "rb") as f:
    dataset, proposals = pickle.load(f)
members = load_members({weights!r})
replicate.time_classification = lambda *args: 0.0  # timing is not what is compared
saved = []
with process_group(world):
    rows = replicate.detector_rows(dataset, members, proposals, [None], {{"ss": 0.0, "merged": 0.0}}, {{}},
                                   saved.append, world)
    rows.update(replicate.leave_one_out_rows(dataset, members, proposals, {{}}, saved.append, world))
with open({out!r} + str(world.rank), "w") as f:
    json.dump({{"rows": rows, "saves": len(saved)}}, f)
"""


def without_seconds(rows: dict) -> dict:
    return {name: {k: v for k, v in row.items() if k != "seconds"} for name, row in rows.items()}


def two_members(tiny_model, folder: Path) -> str:
    """A weights folder of the tiny model and a second member that disagrees with it."""
    model, _, _ = tiny_model
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.net.fc.bias[1] += 2.0
    folder.mkdir()
    for i, member in enumerate((model, other)):
        save_checkpoint(folder / f"member_{i}.pt", member, {"note": "test"}, member=i, epoch=1, commit="test")
    return str(folder)


def test_two_ranks_give_the_rows_of_one_process(kit, tiny_model, easy_split, tmp_path, monkeypatch):
    weights = two_members(tiny_model, tmp_path / "weights")
    small = type(easy_split)(easy_split.classes, easy_split.images[:5], image_root=easy_split.image_root)
    grid = {a.image_id: kit.grid_boxes() for a in small.images}
    proposals = {"ss": grid, "merged": {k: v[::2] for k, v in grid.items()}}
    with open(tmp_path / "inputs.pkl", "wb") as f:
        pickle.dump((small, proposals), f)
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(inputs=str(tmp_path / "inputs.pkl"), weights=weights, out=str(tmp_path / "rank")))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    main, other = [json.loads((tmp_path / f"rank{r}").read_text()) for r in range(2)]
    # one process: the detections of every image, each scored once
    members = load_members(weights)
    monkeypatch.setattr(replicate, "time_classification", lambda *a: 0.0)
    saved = []
    one = replicate.detector_rows(small, members, proposals, [None], {"ss": 0.0, "merged": 0.0}, {}, saved.append)
    one.update(replicate.leave_one_out_rows(small, members, proposals, {}, saved.append))
    assert list(main["rows"]) == list(one) == ["single, ss", "single, merged", "ensemble, merged",
                                               "ensemble without member 0", "ensemble without member 1"]
    assert without_seconds(main["rows"]) == json.loads(json.dumps(without_seconds(one)))
    assert main["saves"] == len(saved) == 5
    assert one["ensemble, merged"]["mAP"] > 0.1  # real detections are compared, not empty ones
    assert other == {"rows": {}, "saves": 0}  # rank 1 neither scores nor saves


def test_each_rank_fills_the_proposal_cache_for_its_shard(monkeypatch, easy_split):
    small = type(easy_split)(easy_split.classes, easy_split.images[:5], image_root=easy_split.image_root)
    filled, barriers = [], []

    def fake_cache(dataset, factory, cache_dir, key, workers):
        filled.append([a.image_id for a in dataset.images])
        return {a.image_id: a.image_id for a in dataset.images}

    monkeypatch.setattr(replicate, "dataset_proposals", fake_cache)
    monkeypatch.setattr(replicate, "gather", lambda world, value: barriers.append(world.rank) or [value] * world.size)
    methods = len(replicate.METHODS)
    second = replicate.all_proposals(small, "weights", "cache", 0, World(1, 2))
    assert filled == [[2, 4]] * methods and barriers == [1]
    assert all(props == {2: 2, 4: 4} for props in second.values())  # its shard's, read from the cache
    filled.clear()
    first = replicate.all_proposals(small, "weights", "cache", 0, World(0, 2))
    assert filled == [[1, 3, 5]] * methods + [[1, 2, 3, 4, 5]] * methods  # its shard, then every image
    assert all(list(props) == [1, 2, 3, 4, 5] for props in first.values())
