"""The bundled model (assets/model) and samples (assets/samples): what `make demo` runs on a fresh clone."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from core.checkpoint import load_weights_only
from core.image import load_image
from bench.synthetic import CLASSES, generate_image
from detector.pipeline import load_members, member_paths, multibox_path

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "assets" / "model"
SAMPLES = ROOT / "assets" / "samples"
# The samples are images 0, 1, 2 and 4 of the synthetic val split of seed 3 (a seed never trained on).
SAMPLE_INDEX = {"sample_1.jpg": 0, "sample_2.jpg": 1, "sample_3.jpg": 2, "sample_4.jpg": 4}


def test_bundled_members_are_six_with_provenance():
    paths = member_paths(str(MODEL))
    assert [Path(p).name for p in paths] == [f"member_{i}.pt" for i in range(6)]
    assert multibox_path(str(MODEL)) is not None
    members = load_members(str(MODEL))
    assert all(m.classes == list(CLASSES) for m in members)
    for i, path in enumerate(paths):
        blob = load_weights_only(path)
        assert blob["member"] == i and len(blob["commit"]) >= 7 and blob["config"]["classifier"]
    size = sum(p.stat().st_size for p in MODEL.iterdir())
    assert size < 40 * 2 ** 20


@pytest.mark.parametrize("name", ["sample_1.jpg"])
def test_sample_is_the_documented_synthetic_image(name):
    truth = generate_image(3, SAMPLE_INDEX[name], "val")
    pixels = load_image(str(SAMPLES / name)).pixels
    assert pixels.shape == truth.pixels.shape
    assert np.abs(pixels.astype(np.int16) - truth.pixels).mean() < 4  # JPEG, quality 95


def test_detect_with_the_bundled_model_finds_the_planted_objects(tmp_path):
    """`tools/detect.py` without --weights, as `make demo` runs it: a true positive of each sample."""
    out = tmp_path / "dets.json"
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "detect.py"), str(SAMPLES), "--json", str(out),
                           "--out", str(tmp_path / "png")], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    results = {Path(r["image"]).name: r for r in json.loads(out.read_text())}
    assert sorted(results) == sorted(SAMPLE_INDEX)
    assert len(list((tmp_path / "png").glob("*.png"))) == len(SAMPLE_INDEX)
    found = 0
    for name, index in SAMPLE_INDEX.items():
        truth = generate_image(3, index, "val")
        dets = results[name]["detections"][:10]
        if not dets or not len(truth.boxes):
            continue
        iou = box_iou(torch.tensor([d["box"] for d in dets]), torch.as_tensor(truth.boxes))
        same = torch.tensor([d["label"] for d in dets])[:, None] == torch.as_tensor(truth.labels)[None]
        found += int(((iou >= 0.5) & same).any())
    assert found >= 3  # a true positive among the top 10 on at least three of the four samples
