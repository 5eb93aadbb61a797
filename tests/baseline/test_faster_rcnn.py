"""baseline.faster_rcnn: a few steps on tiny data within a budget, checkpoints, resume, refusals."""
import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from baseline.faster_rcnn import (BaselineConfig, batches, build_model, load_baseline, make_optimizer, resume,
                                  save_checkpoint, train)
from core.config import ConfigError
from core.errors import InputError
from core.structures import DetectionDataset, ImageAnnotations

# Tiny images and network input; a budget of 0.3 s ends training after its first step.
CFG = BaselineConfig(min_size=64, max_size=64, batch_size=2, warmup_iters=2, budget_minutes=0.005)


@pytest.fixture(scope="module")
def tiny_split(tmp_path_factory) -> DetectionDataset:
    folder = tmp_path_factory.mktemp("baseline")
    images = []
    for i in range(4):
        pixels = np.zeros((64, 64, 3), np.uint8)
        pixels[10 + 4 * i:40 + 4 * i, 12:44] = (255, 60, 60) if i % 2 else (60, 255, 60)
        Image.fromarray(pixels).save(folder / f"{i}.png")
        box = np.array([[12, 10 + 4 * i, 44, 40 + 4 * i]], np.float32)
        images.append(ImageAnnotations(i + 1, f"{i}.png", 64, 64, box, np.array([i % 2])))
    return DetectionDataset(["red", "green"], images, image_root=str(folder))


def _run(split, cfg=CFG):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model(len(split.classes), cfg)
    return model, make_optimizer(model, cfg)


def test_trains_within_the_budget_and_resumes_on(tiny_split, tmp_path):
    path = tmp_path / "checkpoint.pt"
    config = {"baseline": dataclasses.asdict(CFG)}
    model, optimizer = _run(tiny_split)
    save = lambda s: save_checkpoint(path, model, config, tiny_split.classes, optimizer, s)  # noqa: E731
    state = train(model, tiny_split, CFG, optimizer, save=save)
    assert state.iteration >= 1 and state.seconds >= CFG.budget_minutes * 60 and state.epoch == 0
    loaded, blob = load_baseline(path)
    assert blob["train_state"]["iteration"] == state.iteration and blob["classes"] == ["red", "green"]
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)

    more = dataclasses.replace(CFG, budget_minutes=(state.seconds + 0.3) / 60)  # a larger budget trains on
    model2, optimizer2 = _run(tiny_split, more)
    resumed = resume(path, model2, optimizer2, {"baseline": dataclasses.asdict(more)})
    assert resumed.iteration == state.iteration and resumed.seconds == pytest.approx(state.seconds)
    final = train(model2, tiny_split, more, optimizer2, resumed)
    assert final.iteration > state.iteration and final.seconds >= more.budget_minutes * 60

    with pytest.raises(ConfigError, match=r"checkpoint.pt: was trained with another config \(baseline.lr: 0.02 -> 0.1"):
        resume(path, model2, optimizer2, {"baseline": dataclasses.asdict(dataclasses.replace(CFG, lr=0.1))})


def test_batches_depend_on_the_step_only(tiny_split):
    """A resumed run draws step N's batch from the seed and N, whatever ran before."""
    first = batches(tiny_split, CFG, 5)
    images, targets = next(first)
    again_images, again_targets = next(batches(tiny_split, CFG, 5))
    assert all(torch.equal(a, b) for a, b in zip(images, again_images))
    assert all(torch.equal(a["boxes"], b["boxes"]) for a, b in zip(targets, again_targets))
    assert len(images) == CFG.batch_size and images[0].shape == (3, 64, 64)


def test_damaged_or_foreign_checkpoints_are_one_line_errors(tiny_split, tmp_path):
    model, optimizer = _run(tiny_split)
    path = tmp_path / "checkpoint.pt"
    config = {"baseline": dataclasses.asdict(CFG)}
    from core.engine import TrainState
    save_checkpoint(path, model, config, tiny_split.classes, optimizer, TrainState(iteration=3))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a crash mid-copy, a full disk
    for target in (path, tmp_path / "missing.pt"):
        with pytest.raises(InputError, match=str(target)) as err:
            resume(target, model, optimizer, config)
        assert "\n" not in str(err.value)
    torch.save({"format": "inception-rcnn/multibox", "model": {}}, path)
    with pytest.raises(InputError, match="not a faster-rcnn checkpoint .it is 'inception-rcnn/multibox'"):
        resume(path, model, optimizer, config)


def test_checkpoint_of_the_earlier_layout_loads(tiny_split, tmp_path):
    model, optimizer = _run(tiny_split)
    path = tmp_path / "old.pt"
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "iteration": 7, "seconds": 9.5,
                "config": dataclasses.asdict(CFG), "classes": tiny_split.classes}, path)
    state = resume(path, model, optimizer, {"baseline": dataclasses.asdict(CFG)})
    assert (state.iteration, state.seconds) == (7, 9.5)
    assert load_baseline(path)[1]["classes"] == ["red", "green"]


# ------------------------------------------------------------ the Inception backbone

INCEPTION = dataclasses.replace(CFG, backbone="inception", width=0.125, fpn_channels=16)


def _pretraining_checkpoint(path, width=0.125):
    from detector.checkpoint import save_checkpoint as save_member
    from detector.classifier import RegionClassifier
    from detector.config import ClassifierConfig
    torch.manual_seed(1)
    member = RegionClassifier(["red", "green"], ClassifierConfig(width=width, input_size=32, padding=3))
    save_member(path, member, {}, -1, 1)
    return member


def test_the_inception_backbone_trains_resumes_and_detects(tiny_split, tmp_path):
    from baseline.faster_rcnn import detect_dataset, load_backbone
    member = _pretraining_checkpoint(tmp_path / "pretrain.pt")
    model, optimizer = _run(tiny_split, INCEPTION)
    assert load_backbone(model, tmp_path / "pretrain.pt") == "trunk"
    trunk = model.backbone.body
    assert torch.equal(trunk.inception4e.branch1.conv.weight, member.net.inception4e.branch1.conv.weight)
    bn = trunk.conv1.bn
    assert type(bn).__name__ == "FrozenBatchNorm2d" and torch.equal(bn.running_var, member.net.conv1.bn.running_var)
    path = tmp_path / "checkpoint.pt"
    config = {"baseline": dataclasses.asdict(INCEPTION)}
    state = train(model, tiny_split, INCEPTION, optimizer,
                  save=lambda s: save_checkpoint(path, model, config, tiny_split.classes, optimizer, s))
    assert state.iteration >= 1
    assert torch.equal(bn.running_var, member.net.conv1.bn.running_var)  # frozen: training leaves them
    loaded, _ = load_baseline(path)
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    dets, _ = detect_dataset(loaded, tiny_split)
    assert set(dets) == {1, 2, 3, 4} and all(len(d.boxes) == len(d.scores) for d in dets.values())


def test_the_fpn_reads_the_trunks_blocks_at_their_strides():
    from baseline.faster_rcnn import InceptionFPN
    fpn = InceptionFPN(INCEPTION).eval()
    maps = fpn(torch.zeros(1, 3, 64, 96))
    assert list(maps) == ["0", "1", "2", "pool"]
    assert [tuple(m.shape[2:]) for m in maps.values()] == [(8, 12), (4, 6), (2, 3), (1, 2)]
    assert all(m.shape[1] == 16 for m in maps.values())


def test_the_inception_backbone_refuses_what_does_not_fit(tiny_split, tmp_path):
    from baseline.faster_rcnn import load_backbone
    _pretraining_checkpoint(tmp_path / "wide.pt", width=0.25)
    model, _ = _run(tiny_split, INCEPTION)
    with pytest.raises(InputError, match="wide.pt: pretrained weights do not fit"):
        load_backbone(model, tmp_path / "wide.pt")
    torch.save({"w": torch.zeros(1)}, tmp_path / "plain.pt")
    with pytest.raises(InputError, match="plain.pt: not a tools/pretrain.py checkpoint"):
        load_backbone(model, tmp_path / "plain.pt")
    mobilenet, _ = _run(tiny_split)
    with pytest.raises(InputError, match="needs baseline.backbone=inception"):
        load_backbone(mobilenet, tmp_path / "wide.pt")
    for bad, match in (({"backbone": "resnet"}, "backbone: 'resnet' is not one of"),
                       ({"clock": "gpu"}, "clock: 'gpu' is not one of"),
                       ({"levels": ("5b", "3b")}, "levels: .* in trunk order")):
        with pytest.raises(ConfigError, match=match):
            dataclasses.replace(INCEPTION, **bad)


def test_the_budget_counts_the_clock_the_config_names(tiny_split):
    import time

    from baseline.faster_rcnn import baseline_recipe
    from core.engine import fit
    cfg = dataclasses.replace(CFG, clock="cpu", budget_minutes=1.0)
    model, optimizer = _run(tiny_split, cfg)
    recipe = baseline_recipe(model, tiny_split, cfg, optimizer)
    assert recipe.clock is time.process_time
    assert baseline_recipe(model, tiny_split, CFG, optimizer).clock is time.monotonic
    readings = iter(range(0, 10 ** 6, 25))  # a clock that moves 25 s a step
    state = fit(dataclasses.replace(recipe, clock=lambda: next(readings)))
    assert state.iteration == 3 and state.seconds == 75  # the 60 s budget is spent during step 3
