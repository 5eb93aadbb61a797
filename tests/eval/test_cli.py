"""tools/eval.py end to end on tiny files written in the real formats."""
import copy
import json
import subprocess
import sys

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import core.cli
from core.boxes import ilsvrc_to_xyxy, voc_to_xyxy
from core.formats.ilsvrc import write_ilsvrc_devkit, write_submission
from core.formats.voc import write_voc, write_voc_results
from core.structures import DetectionDataset, Detections, ImageAnnotations
from eval.coco import STAT_KEYS

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_tool(tool, argv, capsys):
    code = core.cli.run(tool.main, argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def write(path, obj):
    path.write_text(json.dumps(obj))
    return str(path)


# ----------------------------------------------------------------------------- COCO


def coco_files(tmp_path):
    images = [{"id": 3, "width": 100, "height": 80, "file_name": "img/a.png"},
              {"id": 9, "width": 100, "height": 80, "file_name": "img/b.png"},
              {"id": 11, "width": 100, "height": 80, "file_name": "img/empty.png"}]
    anns = [{"id": 1, "image_id": 3, "category_id": 2, "bbox": [10, 10, 30, 20], "area": 500.0, "iscrowd": 0},
            {"id": 2, "image_id": 3, "category_id": 5, "bbox": [50, 40, 40, 30], "area": 1100.0, "iscrowd": 0},
            {"id": 3, "image_id": 9, "category_id": 2, "bbox": [0, 0, 60, 60], "area": 3000.0, "iscrowd": 1},
            {"id": 4, "image_id": 9, "category_id": 2, "bbox": [5, 5, 20, 20], "area": 400.0, "iscrowd": 0}]
    cats = [{"id": 2, "name": "cat"}, {"id": 5, "name": "dog"}, {"id": 8, "name": "emu"}]
    results = [{"image_id": 3, "category_id": 2, "bbox": [11, 10, 30, 21], "score": 0.9},
               {"image_id": 3, "category_id": 5, "bbox": [50, 40, 35, 30], "score": 0.6},
               {"image_id": 9, "category_id": 2, "bbox": [4, 6, 20, 20], "score": 0.8},
               {"image_id": 9, "category_id": 2, "bbox": [10, 10, 40, 40], "score": 0.7},
               {"image_id": 11, "category_id": 8, "bbox": [1, 1, 10, 10], "score": 0.3}]
    gt = {"images": images, "annotations": anns, "categories": cats}
    return gt, results, write(tmp_path / "gt.json", gt), write(tmp_path / "res.json", results)


def pycocotools_stats(gt, results):
    g = COCO()
    g.dataset = copy.deepcopy(gt)
    g.createIndex()
    ev = COCOeval(g, g.loadRes(copy.deepcopy(results)), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return ev.stats.tolist()


def test_coco_report_plots_and_table(tmp_path, eval_tool, capsys):
    gt, results, gt_path, res_path = coco_files(tmp_path)
    code, out, _ = run_tool(eval_tool, ["--protocol", "coco", "--gt", gt_path, "--dets", res_path,
                                        "--json", str(tmp_path / "r.json"), "--plots", str(tmp_path / "plots")], capsys)
    assert code == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert set(report) == {"protocol", "mAP", "per_class", "stats"} and report["protocol"] == "coco"
    assert list(report["stats"]) == list(STAT_KEYS)
    assert [report["stats"][k] for k in STAT_KEYS] == pycocotools_stats(gt, results)
    assert report["per_class"]["emu"] == -1 and report["mAP"] == report["stats"]["AP"]
    assert "dog" in out and "AP50" in out
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "config.yaml", "pr_000_cat.png", "pr_001_dog.png", "pr_002_emu.png", "pr_grid.png", "pr_overall.png"]


def test_coco_detect_json_matches_images_by_file_name(tmp_path, eval_tool, capsys):
    gt, results, gt_path, _ = coco_files(tmp_path)
    names = {2: "cat", 5: "dog", 8: "emu"}
    files = {3: "/data/coco/img/a.png", 9: "img/b.png", 11: "img/empty.png"}
    records = [{"image": files[i], "width": 100, "height": 80, "detections": [
        {"box": [r["bbox"][0], r["bbox"][1], r["bbox"][0] + r["bbox"][2], r["bbox"][1] + r["bbox"][3]],
         "score": r["score"], "label": 0, "category": names[r["category_id"]]}
        for r in results if r["image_id"] == i]} for i in (3, 9, 11)]
    det_path = write(tmp_path / "detect.json", records)
    code, _, _ = run_tool(eval_tool, ["--protocol", "coco", "--gt", gt_path, "--dets", det_path,
                                      "--json", str(tmp_path / "r.json")], capsys)
    assert code == 0
    stats = json.loads((tmp_path / "r.json").read_text())["stats"]
    np.testing.assert_allclose([stats[k] for k in STAT_KEYS], pycocotools_stats(gt, results), atol=1e-12)


def test_coco_empty_results_and_errors(tmp_path, eval_tool, capsys):
    gt, results, gt_path, _ = coco_files(tmp_path)
    empty = write(tmp_path / "empty.json", [])
    code, _, _ = run_tool(eval_tool, ["--protocol", "coco", "--gt", gt_path, "--dets", empty,
                                      "--json", str(tmp_path / "r.json")], capsys)
    assert code == 0
    stats = json.loads((tmp_path / "r.json").read_text())["stats"]
    assert stats["AP"] == 0.0 and stats["APl"] == -1.0  # no large object in the ground truth
    bad = write(tmp_path / "bad.json", results[:2] + [{**results[2], "image_id": 77}])
    code, _, err = run_tool(eval_tool, ["--protocol", "coco", "--gt", gt_path, "--dets", bad], capsys)
    assert code == 2 and "bad.json" in err and "77" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    nan = (tmp_path / "nan.json")
    nan.write_text('[{"image_id": 3, "category_id": 2, "bbox": [1, 2, NaN, 4], "score": 0.5}]')
    code, _, err = run_tool(eval_tool, ["--protocol", "coco", "--gt", gt_path, "--dets", str(nan)], capsys)
    assert code == 2 and "nan.json: result 0" in err


# ----------------------------------------------------------------------------- ILSVRC


def ilsvrc_files(tmp_path, meta="meta_det.mat"):
    """Two images with one class-A object each (the blacklist case of test_ilsvrc)."""
    images = [ImageAnnotations(i, f"val_{i}.JPEG", 400, 300, ilsvrc_to_xyxy([[0, 0, 99, 99]]), [0]) for i in (1, 2)]
    write_ilsvrc_devkit(DetectionDataset(classes=["A", "B"], images=images), tmp_path)  # meta_det.mat by savemat
    write_submission(tmp_path / "sub.txt", [1, 1, 2], [1, 1, 1], [0.95, 0.9, 0.5],
                     [[300, 200, 350, 250], [0, 0, 99, 99], [0, 0, 99, 99]])
    (tmp_path / "blacklist.txt").write_text("1 n00000001\n")
    return ["--protocol", "ilsvrc", "--gt-dir", str(tmp_path / "Annotations"), "--image-list",
            str(tmp_path / "image_list.txt"), "--meta", str(tmp_path / meta), "--dets", str(tmp_path / "sub.txt")]


@pytest.mark.parametrize("meta", ["meta_det.mat", "meta_det.txt"])
def test_ilsvrc_with_and_without_blacklist(tmp_path, eval_tool, capsys, meta):
    argv = ilsvrc_files(tmp_path, meta) + ["--json", str(tmp_path / "r.json")]
    assert run_tool(eval_tool, argv, capsys)[0] == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["per_class"] == {"A": pytest.approx(2 / 3)} and report["protocol"] == "ilsvrc"
    assert run_tool(eval_tool, argv + ["--blacklist", str(tmp_path / "blacklist.txt")], capsys)[0] == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["mAP"] == 1.0 and report["stats"]["blacklisted"] == 2 and report["stats"]["npos"] == {"A": 1}


def test_ilsvrc_malformed_submission_is_one_line(tmp_path, eval_tool, capsys):
    argv = ilsvrc_files(tmp_path)
    (tmp_path / "sub.txt").write_text("1 1 0.9 0 0 99 99\n2 1 0.8 0 0 99\n")
    code, _, err = run_tool(eval_tool, argv, capsys)
    assert code == 2 and err.strip().endswith("sub.txt:2: expected 7 fields (index DET_ID confidence xmin ymin "
                                              "xmax ymax), got 6")
    (tmp_path / "sub.txt").write_text("1 1 0.9 0 0 99 99\n1 7 0.8 0 0 9 9\n")
    code, _, err = run_tool(eval_tool, argv, capsys)
    assert code == 2 and "sub.txt:2: unknown DET_ID 7" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "sub.txt").write_text("1 1 0.9 50 0 40 99\n")
    code, _, err = run_tool(eval_tool, argv, capsys)
    assert code == 2 and "sub.txt:1: xmax < xmin" in err


def test_missing_arguments_exit_2(tmp_path, eval_tool, capsys):
    with pytest.raises(SystemExit) as exc:
        eval_tool.main(["--protocol", "ilsvrc", "--gt-dir", str(tmp_path)])
    assert exc.value.code == 2 and "--image-list, --meta, --dets" in capsys.readouterr().err


# ----------------------------------------------------------------------------- VOC


def voc_files(tmp_path):
    """The case of test_voc: car AP 0.8333 (all-point), 0.8485 (11-point)."""
    images = [
        ImageAnnotations(0, "000001.jpg", 400, 300, voc_to_xyxy([[1, 1, 100, 100], [201, 1, 300, 100]]), [0, 0],
                         difficult=[False, True]),
        ImageAnnotations(1, "000002.jpg", 400, 300, voc_to_xyxy([[1, 1, 100, 100]]), [0]),
    ]
    dataset = DetectionDataset(classes=["car", "dog"], images=images)
    write_voc(dataset, tmp_path / "VOC", split="test")
    dets = {0: Detections(voc_to_xyxy([[1, 1, 100, 100], [201, 1, 300, 100], [1, 1, 100, 100]]),
                          [0.9, 0.8, 0.7], [0, 0, 0]),
            1: Detections(voc_to_xyxy([[1, 1, 100, 50]]), [0.6], [0])}
    paths = write_voc_results(tmp_path / "results", dataset, dets)
    return dataset, dets, paths, ["--gt-dir", str(tmp_path / "VOC" / "Annotations"),
                                  "--image-list", str(tmp_path / "VOC" / "ImageSets" / "Main" / "test.txt")]


@pytest.mark.parametrize("protocol, car", [("voc", 0.5 + 0.5 * 2 / 3), ("voc07", (6 + 5 * 2 / 3) / 11)])
def test_voc_from_class_files_folder_and_detect_json(tmp_path, eval_tool, capsys, protocol, car):
    dataset, dets, paths, argv = voc_files(tmp_path)
    argv = ["--protocol", protocol, *argv, "--json", str(tmp_path / "r.json")]
    records = [{"image": f"/x/JPEGImages/{img.file_name}", "width": 400, "height": 300, "detections": [
        {"box": b.tolist(), "score": float(s), "label": int(k), "category": dataset.classes[k]}
        for b, s, k in zip(dets[img.image_id].boxes, dets[img.image_id].scores, dets[img.image_id].labels)]}
        for img in dataset.images]
    sources = [paths, [str(tmp_path / "results")], [write(tmp_path / "detect.json", records)]]
    for source in sources:
        assert run_tool(eval_tool, argv + ["--dets", *source], capsys)[0] == 0
        report = json.loads((tmp_path / "r.json").read_text())
        assert report["per_class"]["car"] == pytest.approx(car) and report["protocol"] == protocol
        assert report["per_class"]["dog"] == 0.0


def test_voc_unknown_image_in_results(tmp_path, eval_tool, capsys):
    _, _, paths, argv = voc_files(tmp_path)
    with open(paths[0], "a") as f:
        f.write("009999 0.5 1 1 10 10\n")
    code, _, err = run_tool(eval_tool, ["--protocol", "voc", *argv, "--dets", *paths], capsys)
    assert code == 2 and "'009999' is not in the ground truth" in err


# ----------------------------------------------------------------------------- recall


def test_recall_from_propose_json(tmp_path, eval_tool, capsys):
    gt, _, gt_path, _ = coco_files(tmp_path)
    proposals = [{"image": "data/img/a.png", "boxes": [[10, 10, 40, 30], [0, 0, 5, 5]], "seconds": 0.1},
                 {"image": "data/img/b.png", "boxes": [[5, 5, 25, 25]], "seconds": 0.1}]
    prop_path = write(tmp_path / "props.json", proposals)
    code, out, _ = run_tool(eval_tool, ["--protocol", "recall", "--gt", gt_path, "--proposals", prop_path,
                                        "--json", str(tmp_path / "r.json"), "--plots", str(tmp_path / "plots"),
                                        "--set", "recall.counts=[1,10]"], capsys)
    assert code == 0 and "MABO" in out
    report = json.loads((tmp_path / "r.json").read_text())
    # 3 non-crowd objects: a/cat exact, a/dog missed, b/cat exact
    assert report["coverage"] == pytest.approx(2 / 3) and report["protocol"] == "recall"
    assert report["AR@N"] == {"1": pytest.approx(2 / 3), "10": pytest.approx(2 / 3)}
    assert report["images_without_proposals"] == 1
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["config.yaml", "recall_iou.png", "recall_n.png"]
    bad = write(tmp_path / "bad.json", [{"image": "zzz.png", "boxes": [], "seconds": 0}])
    code, _, err = run_tool(eval_tool, ["--protocol", "recall", "--gt", gt_path, "--proposals", bad], capsys)
    assert code == 2 and "bad.json: image 'zzz.png' is not in the ground truth" in err


# ----------------------------------------------------------------------------- real processes


def test_eval_runs_as_a_script(tmp_path):
    """``python tools/eval.py`` works although the file shares the ``eval`` package's name."""
    _, _, gt_path, res_path = coco_files(tmp_path)
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "eval.py"), "--protocol", "coco", "--gt", gt_path,
                           "--dets", res_path, "--json", str(tmp_path / "r.json")],
                          capture_output=True, text=True, cwd=ROOT / "tools", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "r.json").read_text())["protocol"] == "coco"
