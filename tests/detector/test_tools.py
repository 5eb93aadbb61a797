"""tools/detect.py and tools/train.py end to end on tiny inputs (selective search on 64 px images)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.config import ConfigError
from core.formats.coco import write_coco

ROOT = Path(__file__).resolve().parents[2]


def run_detect(*args):
    return subprocess.run([sys.executable, str(ROOT / "tools" / "detect.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_detect_cli_good_bad_tiny_and_wide_images(kit, tiny_model, tmp_path):
    _, _, weights = tiny_model
    rng = np.random.default_rng(3)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(kit.easy_image(rng, 2)[0]).save(folder / f"good{i}.png")
    Image.fromarray(np.full((1, 1, 3), 200, np.uint8)).save(tmp_path / "one.png")
    wide = np.zeros((60, 4000, 3), np.uint8)
    wide[5:55, 100:150] = (255, 40, 40)
    Image.fromarray(wide).save(tmp_path / "wide.jpg")
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out_json = tmp_path / "dets.json"
    res = run_detect(folder, tmp_path / "one.png", tmp_path / "corrupt.jpg", tmp_path / "missing.png",
                     tmp_path / "wide.jpg", "--weights", weights, "--proposals", "ss",
                     "--json", out_json, "--out", tmp_path / "drawn", "--set", "detector.score_threshold=0.3")
    assert res.returncode == 1, res.stderr
    errors = res.stderr.strip().splitlines()
    assert len(errors) == 2 and "Traceback" not in res.stderr
    assert "corrupt.jpg" in errors[0] and "missing.png" in errors[1] and "no such file" in errors[1]
    entries = json.loads(out_json.read_text())
    assert [Path(e["image"]).name for e in entries] == ["good0.png", "good1.png", "one.png", "wide.jpg"]
    assert entries[2]["width"] == 1 and entries[3]["width"] == 4000 and entries[3]["height"] == 60
    lines = res.stdout.strip().splitlines()
    assert len(lines) == sum(len(e["detections"]) for e in entries) > 0
    first = entries[0]["detections"][0]
    assert set(first) == {"box", "score", "label", "category"} and first["category"] in kit.CLASSES
    assert lines[0].startswith(f"{entries[0]['image']} {first['category']} {first['score']:.4f} [")
    assert sorted(os.listdir(tmp_path / "drawn")) == ["config.yaml", "good0.png", "good1.png", "one.png", "wide.png"]
    assert (tmp_path / "dets.config.yaml").is_file()  # the effective config beside each output


def test_detect_cli_all_good_exit_0_and_clear_errors(kit, tiny_model, tmp_path):
    _, _, weights = tiny_model
    Image.fromarray(kit.easy_image(np.random.default_rng(4), 1)[0]).save(tmp_path / "a.png")
    assert run_detect(tmp_path / "a.png", "--weights", weights, "--proposals", "ss").returncode == 0
    (tmp_path / "bad.pt").write_text("not a checkpoint")
    res = run_detect(tmp_path / "a.png", "--weights", tmp_path / "bad.pt", "--proposals", "ss")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and "bad.pt" in res.stderr
    res = run_detect(tmp_path / "a.png", "--weights", weights)  # merged needs multibox.pt
    assert res.returncode == 2 and "multibox.pt" in res.stderr


def test_train_tool_trains_resumes_and_exports(kit, tmp_path):
    train = kit.make_split(tmp_path / "train" / "images", 6, seed=10)
    write_coco(train, tmp_path / "train" / "annotations.json")
    tool = kit.load_tool("train")
    args = ["--member", "1", "--out", str(tmp_path / "run"), "--set", f"data.train={tmp_path / 'train'}",
            "--set", "data.val=", "--set", "data.proposal_method=ss", "--set", "data.workers=0",
            "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "classifier.width=0.125",
            "--set", "classifier.input_size=32", "--set", "classifier.padding=2",
            "--set", "train.epochs=1", "--set", "sampler.batch_size=32"]
    assert tool.main(args) == 0
    from detector.checkpoint import load_member, read_checkpoint
    blob = read_checkpoint(tmp_path / "run" / "member_1.pt")
    assert blob["epoch"] == 1 and blob["member"] == 1 and blob["classes"] == kit.CLASSES
    assert blob["config"]["train"]["seed"] == 1000 and blob["config"]["classifier"]["padding"] == 1
    with pytest.raises(ConfigError, match="another config"):  # run() makes it one line, exit 2
        tool.main(args + ["--set", "train.lr=0.5", "--resume"])
    more = args + ["--set", "train.epochs=2", "--resume", "--export", str(tmp_path / "slim.pt"),
                   "--set", "train.bbox_regression=false"]  # a resume may drop (or add) the box regressors
    assert tool.main(more) == 0
    assert read_checkpoint(tmp_path / "slim.pt")["bbox_regressor"] is None
    member = load_member(tmp_path / "slim.pt")
    assert member.meta["epoch"] == 2 and read_checkpoint(tmp_path / "slim.pt")["optimizer"] is None
    history = json.loads((tmp_path / "run" / "member_1_history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]


def test_train_tool_proposals_only_fills_the_cache_and_trains_nothing(kit, tmp_path):
    train = kit.make_split(tmp_path / "train" / "images", 3, seed=11)
    write_coco(train, tmp_path / "train" / "annotations.json")
    args = ["--member", "0", "--out", str(tmp_path / "run"), "--proposals-only",
            "--set", f"data.train={tmp_path / 'train'}", "--set", "data.val=", "--set", "data.proposal_method=ss",
            "--set", "data.workers=0", "--set", f"data.cache_dir={tmp_path / 'cache'}"]
    assert kit.load_tool("train").main(args) == 0
    assert len(list((tmp_path / "cache").glob("*.entry"))) == 3 and not (tmp_path / "run").exists()


def test_test_tool_scores_the_capped_ilsvrc_submission(kit, tmp_path, monkeypatch):
    """tools/test.py: the ILSVRC score is that of the written (top 30,000 per class) submission."""
    import types
    from core.formats.ilsvrc import write_ilsvrc_devkit
    from core.structures import DetectionDataset, Detections, ImageAnnotations
    from eval.files import evaluate_ilsvrc_files
    images = [ImageAnnotations(1, "a.png", 64, 64, [[10, 10, 30, 30]], [0]),
              ImageAnnotations(2, "b.png", 64, 64, [[20, 20, 40, 40]], [1])]
    gt = tmp_path / "gt"
    write_ilsvrc_devkit(DetectionDataset(list(kit.CLASSES), images), gt)
    n_fp = 30000  # red false positives in b.png that outscore the one red true positive in a.png
    fp = np.tile(np.float32([[40, 0, 60, 20]]), (n_fp, 1))
    dets = {1: Detections([[10, 10, 30, 30]], [0.1], [0]),
            2: Detections(np.concatenate([fp, [[20, 20, 40, 40]]]), np.r_[np.full(n_fp, 0.9), 0.8],
                          np.r_[np.zeros(n_fp, int), 1])}
    for name in ("a.png", "b.png"):  # per-image results are keyed by the images' bytes
        Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / name)
    (tmp_path / "member_0.pt").write_bytes(b"")  # loading is mocked; the run key still hashes the file
    tool = kit.load_tool("test")
    monkeypatch.setattr(tool, "load_members", lambda *a: [types.SimpleNamespace(classes=list(kit.CLASSES))])
    monkeypatch.setattr(tool, "proposal_source", lambda *a: {})
    monkeypatch.setattr(tool, "run_detector", lambda *a, **k: dets)
    out = tmp_path / "out"
    assert tool.main(["--weights", str(tmp_path), "--images", str(tmp_path), "--gt-dir", str(gt),
                      "--out", str(out)]) == 0
    reported = json.loads((out / "report.json").read_text())["scores"]["ilsvrc"]["mAP"]
    from_file = evaluate_ilsvrc_files(str(gt / "Annotations"), str(gt / "image_list.txt"),
                                      str(gt / "meta_det.mat"), str(out / "submission.txt")).mAP
    assert len((out / "submission.txt").read_text().splitlines()) == n_fp + 1  # the red TP is cut
    assert reported == pytest.approx(from_file, abs=1e-12) and reported == pytest.approx(0.5, abs=1e-12)


def test_drawing_keeps_only_boxes_above_the_draw_threshold(kit, tmp_path):
    tool = kit.load_tool("detect")
    entry = {"detections": [{"box": [2, 2, 20, 20], "score": 0.9, "label": 0, "category": "a"},
                            {"box": [30, 30, 60, 60], "score": 0.1, "label": 1, "category": "b"}]}
    blank = np.zeros((64, 64, 3), np.uint8)
    tool.draw(blank, entry, str(tmp_path / "all.png"))
    tool.draw(blank, entry, str(tmp_path / "some.png"), min_score=0.3)
    all_, some = (np.asarray(Image.open(tmp_path / n)) for n in ("all.png", "some.png"))
    assert all_[2, 10].any() and some[2, 10].any()  # the 0.9 box's top edge in both
    assert all_[45, 30].any() and not some[45, 30].any()  # the 0.1 box's left edge only in "all"


def test_train_tool_starts_from_torchvision_googlenet_weights(kit, tmp_path, monkeypatch):
    """--pretrained: torchvision's googlenet() state dict (random here, saved as users save theirs)."""
    import torch
    import torchvision
    from core.errors import InputError
    from detector.checkpoint import read_checkpoint
    train = kit.make_split(tmp_path / "train" / "images", 2, seed=11)
    write_coco(train, tmp_path / "train" / "annotations.json")
    reference = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True).state_dict()
    torch.save(reference, tmp_path / "googlenet.pth")
    tool = kit.load_tool("train")
    monkeypatch.setattr(tool, "fit", lambda *a, **k: None)  # the loading path, not the training
    args = ["--member", "0", "--out", str(tmp_path / "run"), "--set", f"data.train={tmp_path / 'train'}",
            "--set", "data.val=", "--set", "data.proposal_method=ss", "--set", "data.workers=0",
            "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "train.bbox_regression=false",
            "--pretrained", str(tmp_path / "googlenet.pth"), "--export", str(tmp_path / "slim.pt")]
    with pytest.raises(InputError, match="googlenet.pth: does not fit"):
        tool.main(args + ["--set", "classifier.width=0.25"])
    assert tool.main(args + ["--set", "classifier.width=1.0"]) == 0
    blob = read_checkpoint(tmp_path / "slim.pt")
    assert blob["config"]["classifier"]["mean"] == [0.5, 0.5, 0.5]
    conv = blob["model"]["net.conv1.conv.weight"].float()
    assert torch.allclose(conv, reference["conv1.conv.weight"], atol=1e-3)


def test_train_tool_starts_from_a_pretraining_checkpoint(kit, tmp_path, monkeypatch):
    """--pretrained: a tools/pretrain.py checkpoint (other classes here: its trunk is taken)."""
    import torch
    from detector.checkpoint import read_checkpoint
    assert kit.load_tool("pretrain").main(kit.pretrain_args(tmp_path / "pre") + ["--set", "train.epochs=1"]) == 0
    train = kit.make_split(tmp_path / "train" / "images", 2, seed=11)
    write_coco(train, tmp_path / "train" / "annotations.json")
    tool = kit.load_tool("train")
    monkeypatch.setattr(tool, "fit", lambda *a, **k: None)  # the loading path, not the training
    assert tool.main(["--member", "0", "--out", str(tmp_path / "run"), "--set", f"data.train={tmp_path / 'train'}",
                      "--set", "data.val=", "--set", "data.proposal_method=ss", "--set", "data.workers=0",
                      "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "train.bbox_regression=false",
                      "--set", "classifier.width=0.125", "--set", "classifier.input_size=32",
                      "--pretrained", str(tmp_path / "pre" / "pretrain.pt"), "--export", str(tmp_path / "slim.pt")]) == 0
    pre = read_checkpoint(tmp_path / "pre" / "pretrain.pt")["model"]["net.conv1.conv.weight"].float()
    assert torch.allclose(read_checkpoint(tmp_path / "slim.pt")["model"]["net.conv1.conv.weight"].float(), pre, atol=1e-3)


def test_detection_never_imports_torchvision(tiny_model, easy_split):
    """Its import costs start-up time (core.box_ops): tools/detect.py on an image, in a fresh process."""
    image = Path(easy_split.image_root) / easy_split.images[0].file_name
    code = ("import runpy, sys; sys.path.insert(0, 'tools'); "
            f"sys.argv = ['detect.py', {str(image)!r}, '--weights', {str(tiny_model[2] / 'member_0.pt')!r}, "
            "'--proposals', 'ss', '--prefetch', '0']\n"
            "try:\n    runpy.run_path('tools/detect.py', run_name='__main__')\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
            "print(sorted(m for m in sys.modules if m.startswith('torchvision') or m == 'torch._dynamo'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
