"""Pretraining (detector/pretrain.py, tools/pretrain.py): the crop stream and the resumable run."""
import json

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from bench.synthetic import CLASSES, generate_image
from core.errors import InputError
from detector import pretrain
from detector.classifier import RegionClassifier
from detector.config import ClassifierConfig
from detector.pretrain import StreamConfig, crop_batch, load_pretrained, read_pretrained, region_boxes

SMALL = ClassifierConfig(width=0.125, input_size=32, padding=3)
STREAM = StreamConfig(batch_size=48, heldout_batches=1, workers=0)


def test_a_minibatch_is_the_same_for_the_same_seed_and_index_only():
    a, la = crop_batch(0, "pretrain", 5, SMALL, STREAM)
    b, lb = crop_batch(0, "pretrain", 5, SMALL, STREAM)
    c, _ = crop_batch(0, "pretrain", 6, SMALL, STREAM)
    d, _ = crop_batch(1, "pretrain", 5, SMALL, STREAM)
    assert a.shape == (48, 3, 32, 32) and torch.equal(a, b) and torch.equal(la, lb)
    assert not torch.equal(a, c) and not torch.equal(a, d)


def test_minibatches_hold_the_background_share_and_every_class_about_equally():
    labels = torch.cat([crop_batch(3, "pretrain", i, SMALL, STREAM)[1] for i in range(16)])
    counts = torch.bincount(labels, minlength=len(CLASSES) + 1)
    assert counts[0] == 16 * 24  # background_fraction 0.5 of every minibatch, exactly
    objects = counts[1:].float()
    assert objects.min() >= 0.4 * objects.mean() and objects.max() <= 1.8 * objects.mean(), counts


def test_object_crops_stay_on_their_objects_and_background_crops_off_every_object():
    cfg = StreamConfig(flip=False)
    for index in range(4):
        image = generate_image(4, index, "pretrain")
        rng = np.random.default_rng(index)
        pixels, boxes, labels = region_boxes(rng, image, cfg, 100, 100)
        h, w = pixels.shape[:2]
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
        assert ((boxes[:, 2:] - boxes[:, :2]) > 0).all()
        fg = labels > 0
        assert fg.sum() == len(image.boxes) and (labels[fg] - 1 == image.labels).all()
        if len(image.boxes):
            iou = box_iou(torch.from_numpy(boxes), torch.from_numpy(image.boxes)).numpy()
            assert (iou[fg].diagonal() >= cfg.fg_iou - 1e-6).all()
            assert (iou[~fg].max(1) < cfg.bg_iou).all()


def test_rendering_workers_give_the_same_minibatches():
    stream = pretrain.CropStream(2, SMALL, STREAM)
    here = list(pretrain.stream_batches(stream, 3, 5, workers=0))
    there = list(pretrain.stream_batches(stream, 3, 5, workers=1))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(here, there))


def test_pretraining_resumes_to_the_weights_of_an_uninterrupted_run(kit, load_tool, tmp_path, monkeypatch):
    tool = load_tool("pretrain")
    assert tool.main(kit.pretrain_args(tmp_path / "whole")) == 0
    whole = read_pretrained(tmp_path / "whole" / "pretrain.pt")
    assert whole["train_state"]["epoch"] == 2 and len(whole["train_state"]["history"]) == 2
    assert {"top1", "object_called_background", "top1/horse"} <= set(whole["train_state"]["history"][-1])
    assert (tmp_path / "whole" / "stream.png").is_file()

    real = pretrain.stream_batches

    def killed_in_epoch_two(stream, start, stop, workers):
        if start >= 2:
            raise KeyboardInterrupt  # the run dies before its third step
        return real(stream, start, stop, workers)

    monkeypatch.setattr(pretrain, "stream_batches", killed_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        tool.main(kit.pretrain_args(tmp_path / "cut"))
    monkeypatch.setattr(pretrain, "stream_batches", real)
    assert read_pretrained(tmp_path / "cut" / "pretrain.pt")["train_state"]["epoch"] == 1
    assert tool.main(kit.pretrain_args(tmp_path / "cut") + ["--resume"]) == 0
    resumed = read_pretrained(tmp_path / "cut" / "pretrain.pt")
    for key, value in whole["model"].items():
        assert torch.allclose(resumed["model"][key].float(), value.float(), atol=1e-6), key


def test_members_start_whole_and_multibox_trunks_start_from_a_pretraining_checkpoint(kit, load_tool, tmp_path):
    assert load_tool("pretrain").main(kit.pretrain_args(tmp_path) + ["--set", "train.epochs=1"]) == 0
    path = tmp_path / "pretrain.pt"
    blob = read_pretrained(path)
    member = RegionClassifier(list(CLASSES), SMALL)
    assert load_pretrained(member.net, blob, path, list(CLASSES)) == "whole network"
    assert torch.equal(member.net.fc.weight, blob["model"]["net.fc.weight"].float())
    other = RegionClassifier(["a", "b"], SMALL)
    assert load_pretrained(other.net, blob, path, ["a", "b"]) == "trunk"
    assert torch.equal(other.net.conv1.conv.weight, blob["model"]["net.conv1.conv.weight"].float())
    from nets.inception import Inception
    assert load_pretrained(Inception(0, width=0.125, aux_logits=False), blob, path) == "trunk"
    with pytest.raises(InputError, match="pretrain.pt: pretrained weights do not fit this network"):
        load_pretrained(Inception(0, width=0.25, aux_logits=False), blob, path)
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "plain.pth")
    assert read_pretrained(tmp_path / "plain.pth") is None


def test_heldout_scores_checkpoints_and_goes_on_past_a_bad_one(kit, load_tool, tmp_path, capsys):
    tool = load_tool("pretrain")
    assert tool.main(kit.pretrain_args(tmp_path) + ["--set", "train.epochs=1"]) == 0
    path = str(tmp_path / "pretrain.pt")
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    out = tmp_path / "heldout.json"
    capsys.readouterr()  # the training run's progress
    assert tool.main(kit.pretrain_args(tmp_path) + ["--heldout", str(tmp_path / "broken.pt"), path,
                                                    "--json", str(out)]) == 1
    rows = json.loads(out.read_text())
    history = read_pretrained(path)["train_state"]["history"][-1]
    assert list(rows) == [path]  # the same crops and network as the run's own last evaluation
    assert rows[path]["object_top1"] == pytest.approx(history["object_top1"])
    assert rows[path]["object_called_background"] == pytest.approx(history["object_called_background"])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "broken.pt" in err[0]


def test_two_ranks_pretrain_like_one_process(kit, load_tool, tmp_path):
    """torchrun --nproc_per_node 2 tools/pretrain.py: each rank a block of every minibatch (DDP)."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    args = kit.pretrain_args(tmp_path / "two") + ["--set", "train.epochs=1"]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          str(root / "tools" / "pretrain.py"), *args], capture_output=True, text=True, env=env,
                         cwd=root, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    one = kit.pretrain_args(tmp_path / "one") + ["--set", "train.epochs=1"]
    assert load_tool("pretrain").main(one) == 0
    mine, theirs = (read_pretrained(tmp_path / d / "pretrain.pt") for d in ("one", "two"))
    for key, value in mine["model"].items():  # two steps of SGD with momentum
        assert torch.allclose(theirs["model"][key].float(), value.float(), rtol=0, atol=1e-4), key
    assert theirs["train_state"]["history"][0]["loss"] == pytest.approx(mine["train_state"]["history"][0]["loss"], rel=1e-3)
