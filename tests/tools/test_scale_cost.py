"""tools/scale_cost.py: measured rates and the projections made from them, on a tiny configuration."""
import json

import numpy as np
import pytest
from PIL import Image


def test_projections_follow_from_the_measured_rates(load_tool, tmp_path):
    (tmp_path / "img").mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), np.uint8)).save(tmp_path / "img" / "a.png")
    args = ["--images", str(tmp_path / "img"), "--crops", "2", "--train-images", "80", "--val-images", "10",
            "--regions", "100", "--members", "3", "--gpu-tflops", "1", "--json", str(tmp_path / "cost.json"),
            "--set", "classifier.width=0.125", "--set", "classifier.input_size=32", "--set", "classifier.padding=2",
            "--set", "detector.batch_regions=4", "--set", "sampler.images_per_batch=8", "--set", "sampler.batch_size=16"]
    assert load_tool("scale_cost").main(args) == 0
    cost = json.loads((tmp_path / "cost.json").read_text())
    assert cost["epoch_minibatches"] == 10 and cost["flops_per_region"] > 0
    assert cost["epoch_hours"] == pytest.approx(10 * 16 * cost["step_seconds_per_crop"] / 3600)
    val = 10 * cost["ss2x_seconds_per_image"] + 10 * 100 * 3 / cost["regions_per_second"]
    assert cost["val_pass_hours"] == pytest.approx(val / 3600)
    assert cost["gpu_epoch_hours"] == pytest.approx(3 * 160 * cost["flops_per_region"] / 1e12 / 3600)
