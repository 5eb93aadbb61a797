"""detector.dataset_run and tools/test.py: a split run with cached proposals, the 30k-per-class cap,
result files; per-image results that a rerun reuses; torchrun ranks; the layouts as they ship."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.formats.coco import write_coco
from core.formats.ilsvrc import read_submission, write_det_split
from core.structures import Detections
from detector.config import DetectorConfig
from detector.dataset_run import ResultStore, cap_per_class, run_detector, write_results

ROOT = Path(__file__).resolve().parents[2]


def test_cap_keeps_best_per_class_over_the_split():
    dets = {7: Detections([[0, 0, 1, 1]] * 3, [0.9, 0.5, 0.8], [0, 0, 1]),
            3: Detections([[0, 0, 2, 2]] * 2, [0.7, 0.95], [0, 1]),
            4: Detections()}
    out = cap_per_class(dets, cap=1)
    assert out[7].scores.tolist() == [np.float32(0.9)] and out[3].scores.tolist() == [np.float32(0.95)]
    assert len(out[4]) == 0
    assert sum(len(d) for d in cap_per_class(dets, cap=2).values()) == 4


def test_run_with_cached_proposals_and_write_both_formats(kit, tiny_model, easy_split, tmp_path):
    model, _, _ = tiny_model
    small = type(easy_split)(easy_split.classes, easy_split.images[:3], image_root=easy_split.image_root)
    props = {a.image_id: kit.grid_boxes() for a in small.images[:2]}  # image 3: no proposals
    dets = run_detector(small, [model], DetectorConfig(), proposals=props, progress=False)
    assert list(dets) == [1, 2, 3] and len(dets[1]) > 0 and len(dets[3]) == 0
    write_results(tmp_path / "r.json", small, dets, "coco")
    rows = json.loads((tmp_path / "r.json").read_text())
    assert len(rows) == len(dets[1]) + len(dets[2]) and set(rows[0]) == {"image_id", "category_id", "bbox", "score"}
    write_results(tmp_path / "sub.txt", small, dets, "ilsvrc")
    sub = read_submission(tmp_path / "sub.txt")
    assert len(sub.score) == len(rows) and set(sub.det_id.tolist()) <= {1, 2}


# ----------------------------------------------------------------------------- resumable, sharded runs


def test_result_store_round_trip_and_refuses_other_keys(kit, tmp_path):
    kit.make_split(tmp_path, 1, seed=3)
    image = tmp_path / "img000.png"
    store = ResultStore(str(tmp_path / "store"), {"weights_sha256": "w", "settings": {"nms": 0.3}})
    dets = Detections([[1, 2, 3, 4]], [0.5], [1])
    assert store.load(str(image)) is None
    store.save(str(image), dets)
    back = store.load(str(image))
    assert back.boxes.tolist() == dets.boxes.tolist() and back.labels.tolist() == [1]
    assert ResultStore(store.folder, {"weights_sha256": "v", "settings": {"nms": 0.3}}).load(str(image)) is None
    path, _ = store.entry(str(image))
    blob = bytearray(open(path, "rb").read())  # a flipped byte: the entry's checksum fails
    blob[-5] ^= 0xFF
    with open(path, "wb") as f:
        f.write(bytes(blob))
    assert store.load(str(image)) is None
    assert store.load(str(tmp_path / "missing.png")) is None  # the detector reports the missing image


def coco_layout(kit, root, n=4, seed=5):
    """An easy split as COCO ships: annotations/instances_val2017.json beside val2017/."""
    dataset = kit.make_split(root / "val2017", n, seed=seed)
    write_coco(dataset, root / "annotations" / "instances_val2017.json")
    return root / "annotations" / "instances_val2017.json"


def run_test_tool(kit, weights, gt, out, *more):
    args = ["--weights", str(weights), "--out", str(out), "--proposals", "ss", *map(str, more)]
    assert kit.load_tool("test").main(args + (["--gt", str(gt)] if str(gt).endswith(".json") else
                                             ["--gt-dir", str(gt)])) == 0
    return json.loads((out / "report.json").read_text())


def test_rerun_reuses_finished_images_and_gives_the_same_results(kit, tiny_model, tmp_path):
    _, _, weights = tiny_model
    gt = coco_layout(kit, tmp_path / "coco")
    first = run_test_tool(kit, weights, gt, tmp_path / "out")  # images found beside the JSON
    assert first["world_size"] == 1 and first["images_reused"] == 0 and first["images"] == 4
    results = (tmp_path / "out" / "results.json").read_bytes()
    entries = sorted((tmp_path / "out" / "images").glob("*.entry"))
    assert len(entries) == 4
    for entry in entries[:2]:  # as if killed after two images
        entry.unlink()
    again = run_test_tool(kit, weights, gt, tmp_path / "out")
    assert again["images_reused"] == 2 and (tmp_path / "out" / "results.json").read_bytes() == results
    assert again["scores"] == first["scores"]
    other = run_test_tool(kit, weights, gt, tmp_path / "out", "--set", "detector.nms_iou=0.5")
    assert other["images_reused"] == 0  # another setting never reads the stored detections


def test_torchrun_two_processes_write_what_one_process_writes(kit, tiny_model, tmp_path):
    _, _, weights = tiny_model
    gt = coco_layout(kit, tmp_path / "coco", n=5, seed=6)
    run_test_tool(kit, weights, gt, tmp_path / "one")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "tools" / "test.py"), "--weights", str(weights), "--gt", str(gt),
           "--out", str(tmp_path / "two"), "--proposals", "ss"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads((tmp_path / "two" / "report.json").read_text())
    assert report["world_size"] == 2 and report["images_reused"] == 0 and report["images"] == 5
    assert (tmp_path / "two" / "results.json").read_bytes() == (tmp_path / "one" / "results.json").read_bytes()
    assert len(list((tmp_path / "two" / "images").glob("*.entry"))) == 5


@pytest.mark.parametrize("layout", ["coco", "ilsvrc"])
def test_a_member_trains_and_is_scored_from_the_layout_as_it_ships(kit, tmp_path, layout):
    if layout == "coco":
        train, val = coco_layout(kit, tmp_path / "coco", n=6, seed=10), coco_layout(kit, tmp_path / "cval", 3, 11)
    else:
        root = tmp_path / "ILSVRC"
        for split, n, seed in (("train", 6, 10), ("val", 3, 11)):
            ds = kit.make_split(root / "Data" / "DET" / split / "batch0", n, seed=seed)
            for img in ds.images:
                img.file_name = "batch0/" + img.file_name
            write_det_split(ds, root, split)
        train, val = root / "Data" / "DET" / "train", root
    run = tmp_path / "run"
    args = ["--member", "0", "--out", str(run), "--set", f"data.train={train}", "--set", "data.val=",
            "--set", "data.proposal_method=ss", "--set", "data.workers=0",
            "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "classifier.width=0.125",
            "--set", "classifier.input_size=32", "--set", "classifier.padding=2",
            "--set", "train.epochs=1", "--set", "sampler.batch_size=32", "--set", "train.bbox_regression=false"]
    assert kit.load_tool("train").main(args) == 0
    report = run_test_tool(kit, run / "member_0.pt", val, tmp_path / "test")
    assert report["images"] == 3 and 0.0 <= report["scores"]["ilsvrc"]["mAP"] <= 1.0
    written = "results.json" if layout == "coco" else "submission.txt"
    assert (tmp_path / "test" / written).is_file()


def test_the_paper_config_loads_in_the_tools_its_header_names(kit):
    from core.config import load_config
    for name in ("train", "test"):
        cfg = load_config(kit.load_tool(name).Schema, ROOT / "configs" / "ilsvrc2014.yaml")
        assert cfg.detector.proposal_method == "merged" and cfg.proposals.merge.multibox_top_k == 200
    assert (cfg.classifier["width"], cfg.classifier["input_size"], cfg.classifier["padding"]) == (1.0, 224, 16)
