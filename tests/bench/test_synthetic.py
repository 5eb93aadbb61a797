"""The synthetic benchmark: determinism, ground-truth validity, and its COCO / ILSVRC outputs."""
import hashlib
import json
import os

import numpy as np
import pytest

from core.formats.coco import read_coco
from core.formats.ilsvrc import read_ilsvrc
from core.image import load_image
from bench.synthetic import CLASSES, SyntheticConfig, generate_image, generate_split


def _digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    out = tmp_path_factory.mktemp("syn")
    return out, generate_split(out, 5, seed=3, split="val")




def test_classes_are_fixed_and_many():
    assert len(CLASSES) >= 10 and len(set(CLASSES)) == len(CLASSES)


def test_same_seed_same_image_and_other_seed_differs():
    a, b = generate_image(7, 2, "train"), generate_image(7, 2, "train")
    assert np.array_equal(a.pixels, b.pixels) and np.array_equal(a.boxes, b.boxes)
    assert np.array_equal(a.labels, b.labels)
    c = generate_image(8, 2, "train")
    assert a.pixels.shape != c.pixels.shape or not np.array_equal(a.pixels, c.pixels)
    d = generate_image(7, 2, "val")
    assert a.pixels.shape != d.pixels.shape or not np.array_equal(a.pixels, d.pixels)


@pytest.mark.parametrize("index", range(12))
def test_image_size_instances_and_boxes(index):
    image = generate_image(11, index, "train")
    h, w = image.pixels.shape[:2]
    assert image.pixels.dtype == np.uint8 and image.pixels.shape[2] == 3
    assert 256 <= max(h, w) <= 512 and min(h, w) >= 0.6 * max(h, w) - 1
    assert 0 <= len(image.labels) <= 10 and len(image.boxes) == len(image.labels)
    b = image.boxes
    assert np.all(b[:, 0] >= 0) and np.all(b[:, 1] >= 0) and np.all(b[:, 2] <= w) and np.all(b[:, 3] <= h)
    assert np.all(b[:, 2] > b[:, 0]) and np.all(b[:, 3] > b[:, 1])
    assert np.array_equal(b, np.round(b))  # integer-valued: ILSVRC's inclusive pixels are exact
    assert np.all((image.labels >= 0) & (image.labels < len(CLASSES)))


def test_instances_cover_the_range():
    boxes = [generate_image(0, i).boxes for i in range(30)]
    counts = [len(b) for b in boxes]
    assert min(counts) <= 2 and max(counts) >= 6
    sizes = np.sqrt(np.prod(np.concatenate(boxes)[:, 2:] - np.concatenate(boxes)[:, :2], 1))
    assert sizes.min() < 25 and sizes.max() > 150  # from about 12 px to most of the image


def test_image_does_not_depend_on_count(tmp_path, split):
    out, _ = split
    small = generate_split(tmp_path, 3, seed=3, split="val")
    for a in small.images:
        assert _digest(tmp_path / "images" / a.file_name) == _digest(out / "images" / a.file_name)
    big = read_coco(out / "annotations.json")
    for a, b in zip(small.images, big.images):
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.labels, b.labels)


def test_workers_give_the_same_files(tmp_path, split):
    out, _ = split
    generate_split(tmp_path, 5, seed=3, split="val", workers=2)
    assert _digest(tmp_path / "annotations.json") == _digest(out / "annotations.json")
    for name in sorted(os.listdir(out / "images")):
        assert _digest(tmp_path / "images" / name) == _digest(out / "images" / name)


def test_coco_and_ilsvrc_read_back(split):
    out, ds = split
    assert sorted(os.listdir(out / "images")) == [f"val_{i:06d}.jpg" for i in range(5)]
    coco = read_coco(out / "annotations.json", image_root=str(out / "images"))
    ils = read_ilsvrc(out / "ilsvrc" / "Annotations", str(out / "ilsvrc" / "image_list.txt"),
                      str(out / "ilsvrc" / "meta_det.mat"), image_root=str(out / "images"))
    categories = json.loads((out / "annotations.json").read_text())["categories"]
    assert [c["id"] for c in categories] == list(range(1, len(CLASSES) + 1))
    assert coco.classes == list(CLASSES) and ils.classes == list(CLASSES)
    for a, c, i in zip(ds.images, coco.images, ils.images):
        assert a.file_name == c.file_name == i.file_name
        assert (a.width, a.height) == (c.width, c.height) == (i.width, i.height)
        pixels = load_image(out / "images" / a.file_name).pixels
        assert pixels.shape[:2] == (a.height, a.width)
        for other in (c, i):
            np.testing.assert_array_equal(other.labels, a.labels)
            np.testing.assert_allclose(other.boxes, a.boxes, atol=1e-4)


def test_png_format(tmp_path):
    ds = generate_split(tmp_path, 1, seed=0, cfg=SyntheticConfig(image_format="png"))
    pixels = load_image(tmp_path / "images" / ds.images[0].file_name).pixels
    np.testing.assert_array_equal(pixels, generate_image(0, 0).pixels)  # lossless


def test_zero_images(tmp_path):
    ds = generate_split(tmp_path, 0, seed=0)
    assert ds.images == [] and read_coco(tmp_path / "annotations.json").images == []


def test_cli_writes_everything(tmp_path, load_tool):
    tool = load_tool("make_synthetic")
    out, preview = tmp_path / "out", tmp_path / "sheet.png"
    argv = ["--out", str(out), "--images", "2", "--seed", "1", "--split", "train", "--preview", str(preview),
            "--set", "synthetic.max_instances=3"]
    assert tool.main(argv) == 0
    assert (out / "images" / "train_000001.jpg").exists() and (out / "ilsvrc" / "meta_det.txt").exists()
    assert "max_instances: 3" in (out / "config.yaml").read_text()
    assert load_image(preview).width > 0
    assert all(len(a.labels) <= 3 for a in read_coco(out / "annotations.json").images)


def test_cli_user_errors(tmp_path, capsys, load_tool):
    import core.cli
    tool = load_tool("make_synthetic")
    argv = ["--out", str(tmp_path), "--images", "1", "--set", "synthetic.max_instance=3"]
    assert core.cli.run(tool.main, argv) == 2
    assert "synthetic.max_instance" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert core.cli.run(tool.main, ["--out", str(tmp_path / "file"), "--images", "1"]) == 2


def test_cli_rejects_negative_seed_and_count(tmp_path, capsys, load_tool):
    tool = load_tool("make_synthetic")
    for flag, value in (("--seed", "-5"), ("--images", "-1")):
        argv = ["--out", str(tmp_path), "--images", "1", flag, value]
        with pytest.raises(SystemExit) as exc:
            tool.main(argv)
        assert exc.value.code == 2 and f"argument {flag}: expected a number >= 0" in capsys.readouterr().err


@pytest.mark.parametrize("override,key", [
    ("max_instances=-1", "max_instances"), ("min_long_side=0", "min_long_side"),
    ("max_long_side=100", "max_long_side"), ("min_aspect=0", "min_aspect"), ("min_aspect=1.5", "min_aspect"),
    ("min_object_size=0", "min_object_size"), ("max_object_fraction=0", "max_object_fraction"),
    ("max_occluded=1.5", "max_occluded"), ("jpeg_quality=101", "jpeg_quality"),
])
def test_config_ranges_are_one_line_errors(tmp_path, capsys, override, key, load_tool):
    import core.cli
    argv = ["--out", str(tmp_path), "--images", "1", "--set", f"synthetic.{override}"]
    assert core.cli.run(load_tool("make_synthetic").main, argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: synthetic.{key}: must be ") and len(err.splitlines()) == 1
    assert not (tmp_path / "images").exists()  # checked before anything is written


def test_rerun_with_fewer_images_removes_stale_files(tmp_path, caplog):
    generate_split(tmp_path, 3, seed=0, split="val")
    generate_split(tmp_path, 2, seed=0, split="train")  # another split in the same folder is kept
    with caplog.at_level("INFO", logger="bench.synthetic"):
        generate_split(tmp_path, 1, seed=0, split="val", cfg=SyntheticConfig(image_format="png"))
    assert "removed 5 stale val files" in caplog.text  # 3 jpg (now png) + 2 xml beyond the first
    assert sorted(os.listdir(tmp_path / "images")) == ["train_000000.jpg", "train_000001.jpg", "val_000000.png"]
    assert sorted(os.listdir(tmp_path / "ilsvrc" / "Annotations")) == [
        "train_000000.xml", "train_000001.xml", "val_000000.xml"]


def test_tiny_images_and_objects_render():
    # the smallest sizes the range checks allow; a 1 px object may paint no pixel (then no box)
    cfg = SyntheticConfig(min_long_side=2, max_long_side=3, min_aspect=0.5, min_object_size=1, max_occluded=1.0)
    for i in range(20):
        image = generate_image(0, i, cfg=cfg)
        assert max(image.pixels.shape[:2]) <= 3 and len(image.boxes) == len(image.labels)
