"""tools/analyze.py end to end on a tiny synthetic split: errors.json, the pictures, report.html,
the ILSVRC form, tidecv on the same files, the confusion matrix."""
import json
import os
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

import core.cli
from core.formats.coco import read_coco, write_coco_results
from core.formats.ilsvrc import submission_from_detections, write_submission
from core.structures import Detections
from bench.synthetic import generate_split
from eval.confusion import gt_confusion
from eval.errors import MAIN_ERRORS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def analyze_tool(load_tool):
    return load_tool("analyze")


def jittered_detections(dataset, seed=0):
    """Per image: each object found with probability 0.7 (box jittered, sometimes the wrong
    class, sometimes twice), plus two random boxes."""
    rng = np.random.default_rng(seed)
    k = len(dataset.classes)
    out = {}
    for img in dataset.images:
        boxes, scores, labels = [], [], []
        for box, label in zip(img.boxes, img.labels):
            for _ in range(int(rng.random() < 0.7) + int(rng.random() < 0.2)):
                wh = np.tile(box[2:] - box[:2], 2)
                boxes.append(box + rng.normal(0, 0.15, 4) * wh)
                labels.append(label if rng.random() < 0.75 else rng.integers(k))
                scores.append(rng.random())
        for _ in range(2):
            x, y = rng.uniform(0, 150, 2)
            boxes.append([x, y, x + 40, y + 30])
            labels.append(rng.integers(k))
            scores.append(rng.random() * 0.5)
        boxes = np.clip(np.array(boxes, np.float32), 0, [img.width, img.height, img.width, img.height])
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        out[int(img.image_id)] = Detections(boxes, scores, labels)
    return out


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    folder = tmp_path_factory.mktemp("split")
    generate_split(str(folder), images=5, seed=3, split="val")
    dataset = read_coco(folder / "annotations.json", image_root=str(folder / "images"))
    dets = jittered_detections(dataset)
    write_coco_results(folder / "results.json", dataset, dets)
    write_submission(str(folder / "submission.txt"), *_submission_arrays(dataset, dets))
    return folder


def _submission_arrays(dataset, dets):
    sub = submission_from_detections(dataset, dets)
    return sub.image_index, sub.det_id, sub.score, sub.boxes


class Pictures(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources, self.scripts = [], 0

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])
        self.scripts += tag == "script"


def run(tool, argv, capsys):
    code = core.cli.run(tool.main, argv)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def coco_run(analyze_tool, split, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    code = core.cli.run(analyze_tool.main, ["--gt", str(split / "annotations.json"),
                                            "--dets", str(split / "results.json"), "--out", str(out),
                                            "--set", "gallery.per_class=2"])
    assert code == 0
    return out


def test_errors_json_has_the_contracted_keys(coco_run):
    data = json.loads((coco_run / "errors.json").read_text())
    assert isinstance(data["AP50"], float) and 0 < data["AP50"] < 100
    assert set(data["dAP"]) == set(MAIN_ERRORS) and all(isinstance(v, float) for v in data["dAP"].values())
    assert set(data["special"]) == {"FalsePos", "FalseNeg"}
    assert len(data["per_class"]) == 15
    assert set(data["false_positives"]["groups"]) >= {"shapes", "glyphs", "cut-outs"}


def test_the_report_is_static_and_every_picture_exists(coco_run):
    parser = Pictures()
    parser.feed((coco_run / "report.html").read_text())
    assert parser.scripts == 0
    assert any(s.startswith("gallery_") for s in parser.sources)
    for name in ("dap.png", "pr_1.png", "hoiem_groups.png", "hoiem_1.png"):
        assert name in parser.sources
    for src in parser.sources:
        assert not os.path.isabs(src) and "://" not in src
        assert (coco_run / src).is_file(), src


def test_the_ilsvrc_form_gives_the_same_numbers(analyze_tool, split, coco_run, tmp_path, capsys):
    devkit = split / "ilsvrc"
    code, _, err = run(analyze_tool, ["--gt-dir", str(devkit / "Annotations"), "--image-list",
                                      str(devkit / "image_list.txt"), "--meta", str(devkit / "meta_det.mat"),
                                      "--dets", str(split / "submission.txt"), "--out", str(tmp_path),
                                      "--no-galleries"], capsys)
    assert code == 0, err
    ilsvrc = json.loads((tmp_path / "errors.json").read_text())
    coco = json.loads((coco_run / "errors.json").read_text())
    assert ilsvrc["AP50"] == pytest.approx(coco["AP50"], abs=1e-6)
    for kind in MAIN_ERRORS:
        assert ilsvrc["dAP"][kind] == pytest.approx(coco["dAP"][kind], abs=1e-6)


def test_tidecv_on_the_same_files(split, coco_run, tmp_path):
    """tidecv's own COCO readers (it needs a segmentation: the box as a polygon)."""
    tidecv = pytest.importorskip("tidecv")
    gt = json.loads((split / "annotations.json").read_text())
    for ann in gt["annotations"]:
        x, y, w, h = ann["bbox"]
        ann["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    tide = tidecv.TIDE()
    tide.evaluate(tidecv.datasets.COCO(str(tmp_path / "gt.json")),
                  tidecv.datasets.COCOResult(str(split / "results.json")), mode=tidecv.TIDE.BOX, name="r")
    ours = json.loads((coco_run / "errors.json").read_text())
    assert ours["AP50"] == pytest.approx(tide.runs["r"].ap, abs=1e-6)
    for kind, value in tide.get_main_errors()["r"].items():
        assert ours["dAP"][kind.lower()] == pytest.approx(value, abs=1e-6)
    for kind, value in tide.get_special_errors()["r"].items():
        assert ours["special"][kind] == pytest.approx(value, abs=1e-6)


def test_bad_input_is_one_line(analyze_tool, split, tmp_path, capsys):
    code, _, err = run(analyze_tool, ["--gt", str(split / "annotations.json"), "--dets",
                                      str(tmp_path / "none.json"), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and err.count("\n") == 1 and "none.json" in err and "Traceback" not in err


def test_confusion_counts_what_each_object_is_given(split):
    dataset = read_coco(split / "annotations.json", image_root=str(split / "images"))

    def classify(pixels, boxes):  # model classes: "square", "unicorn": everything is a unicorn
        probs = np.zeros((len(boxes), 3))
        probs[:, 2] = 1
        return probs
    result = gt_confusion(dataset, classify, ["square", "unicorn"])
    n = sum(len(img.labels) for img in dataset.images)
    assert result.matrix.sum() == n and result.matrix[:, -1].sum() == n  # unknown class -> background
    assert result.columns[-1] == "background"


def test_confusion_with_a_real_member(analyze_tool, split, tmp_path, capsys):
    code, _, err = run(analyze_tool, ["--gt", str(split / "annotations.json"), "--dets", str(split / "results.json"),
                                      "--out", str(tmp_path), "--weights", str(ROOT / "assets/model/member_0.pt"),
                                      "--no-galleries", "--max-images", "2"], capsys)
    assert code == 0, err
    data = json.loads((tmp_path / "errors.json").read_text())
    rows = data["confusion"]["rows"]
    objects = sum(len(img.labels) for img in read_coco(split / "annotations.json").images[:2])
    assert sum(sum(r) for r in rows.values()) == objects
    assert (tmp_path / "confusion.png").is_file()
