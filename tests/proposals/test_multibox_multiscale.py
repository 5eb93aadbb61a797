"""proposals.multibox's multiscale head: level assignment, the maps it reads, output shapes, config
checks, a training step, checkpoints; and that the single-map head ("prior", the bundled model's)
is unchanged by it."""
import dataclasses

import numpy as np
import pytest
import torch

from core.config import ConfigError, build_dataclass
from core.engine import fit
from proposals.multibox import (LEVEL_STRIDES, MultiBoxConfig, MultiBoxProposer, assign_levels, build_net,
                                kmeans_priors, load_multibox, read_checkpoint, resize_image, save_checkpoint,
                                trunk_maps)
from proposals.multibox_train import MultiBoxTrainConfig, make_optimizer, multibox_recipe, train_step

MS = MultiBoxConfig(width=0.125, input_size=64, num_priors=12, head="multiscale", head_channels=8, head_grid=2,
                    hidden=32, dropout=0.0, nms_iou=0.7, top_k=5, level_cells=1.0)


def T(x):
    return torch.tensor(x, dtype=torch.float32)


def _priors(k=12, seed=0):
    """``k`` boxes of sizes 0.05 … 0.9 (normalised), so every level of MS gets some."""
    g = torch.Generator().manual_seed(seed)
    size = torch.linspace(0.05, 0.9, k)[:, None]
    corner = torch.rand(k, 2, generator=g) * (1 - size)
    return torch.cat([corner, corner + size], 1)


def _toy_batch(n=8, size=64, seed=0):
    """Black images with one white rectangle each (8 … 32 px), and its normalised box."""
    rng = np.random.default_rng(seed)
    images, targets = [], []
    for _ in range(n):
        w, h = rng.integers(size // 8, size // 2, 2)
        x1, y1 = rng.integers(0, size - w), rng.integers(0, size - h)
        im = np.zeros((size, size, 3), np.uint8)
        im[y1:y1 + h, x1:x1 + w] = 255
        images.append(resize_image(im, size))
        targets.append(T([[x1, y1, x1 + w, y1 + h]]) / size)
    return torch.stack(images), targets


def test_levels_by_prior_size_hand_worked():
    # input 224: a prior spans s·224/8, s·224/16, s·224/32 cells of 3b / 4e / 5b.
    priors = T([[0, 0, 0.05, 0.05],     # 1.4 / 0.7 / 0.35 cells: none reaches 3 → the finest
                [0, 0, 0.2, 0.2],       # 5.6 / 2.8 / 1.4 → 3b
                [0, 0, 0.25, 0.25],     # 7 / 3.5 / 1.75 → 4e
                [0, 0, 0.5, 0.5],       # 14 / 7 / 3.5 → 5b
                [0, 0, 0.1, 0.9],       # √0.09 = 0.3: 8.4 / 4.2 / 2.1 → 4e (area, not one side)
                [0, 0, 1, 1]])
    assert assign_levels(priors, 224, ("3b", "4e", "5b"), 3.0).tolist() == [0, 0, 1, 2, 1, 2]
    assert assign_levels(priors, 224, ("3b", "4e", "5b"), 1.0).tolist() == [0, 2, 2, 2, 2, 2]
    assert assign_levels(priors, 224, ("5b",), 3.0).tolist() == [0] * 6
    assert assign_levels(priors, 448, ("4e", "5b"), 3.0).tolist() == [0, 0, 1, 1, 1, 1]


def test_trunk_maps_are_the_blocks_outputs_and_5b_is_features():
    torch.manual_seed(0)
    net = build_net(MS, _priors()).eval()
    x = torch.randn(2, 3, 64, 64)
    maps = trunk_maps(net.trunk, x, ("3b", "4e", "5b"))
    assert [tuple(m.shape[2:]) for m in maps] == [(8, 8), (4, 4), (2, 2)]  # strides 8 / 16 / 32
    assert [m.shape[1] for m in maps] == [getattr(net.trunk, f"inception{n}").out_channels for n in ("3b", "4e", "5b")]
    with torch.no_grad():
        assert torch.equal(maps[2], net.trunk.features(x))
        assert torch.equal(trunk_maps(net.trunk, x, ("4e",))[0], maps[1])
    assert set(LEVEL_STRIDES) == {f"{i}{c}" for i, cs in (("3", "ab"), ("4", "abcde"), ("5", "ab")) for c in cs}


def test_multiscale_output_shapes_and_each_prior_reads_its_level():
    torch.manual_seed(0)
    priors = _priors()
    net = build_net(MS, priors).eval()
    assert net.prior_level.tolist() == assign_levels(priors, 64, MS.levels, MS.level_cells).tolist()
    assert len(set(net.prior_level.tolist())) == 3  # the toy priors cover every level
    x = torch.randn(3, 3, 64, 64)
    offsets, logits = net(x)
    assert offsets.shape == (3, 12, 4) and logits.shape == (3, 12)
    # Changing one level's map changes the inputs of exactly the priors assigned to it.
    maps = [net.reduces[n](m) for n, m in zip(MS.levels, trunk_maps(net.trunk, x, MS.levels))]
    base = net._multiscale_inputs(maps)
    assert base.shape == (3, 12, 8 * 4 + 8 + 4)
    for i in range(2):  # the coarsest map also feeds the global average (every prior)
        bumped = [m + 1 if j == i else m for j, m in enumerate(maps)]
        changed = (net._multiscale_inputs(bumped) != base).any(dim=2).any(dim=0)
        assert changed.tolist() == (net.prior_level == i).tolist(), i
    # the level buffers follow the priors, they are not in the state dict
    assert not any(k.startswith(("prior_level", "level_")) for k in net.state_dict())


def test_a_level_without_priors_is_fine():
    torch.manual_seed(0)
    priors = T([[0, 0, 0.9, 0.9], [0.1, 0.1, 1, 1]])  # both on 5b: 3b and 4e read no prior
    net = build_net(dataclasses.replace(MS, num_priors=2), priors).eval()
    assert net.prior_level.tolist() == [2, 2]
    offsets, logits = net(torch.randn(2, 3, 64, 64))
    assert offsets.shape == (2, 2, 4) and logits.shape == (2, 2)


def test_multiscale_config_is_checked():
    assert MultiBoxConfig().head == "multiscale"  # the bundled model's head is the default
    for levels in ([], ["5b", "3b"], ["3b", "3b"], ["6a"]):
        with pytest.raises(ConfigError, match="levels"):
            build_dataclass(MultiBoxConfig, {"levels": levels}, "multibox")
    with pytest.raises(ConfigError, match="level_cells"):
        MultiBoxConfig(level_cells=0)
    with pytest.raises(ConfigError, match="head"):
        build_dataclass(MultiBoxConfig, {"head": "pyramid"}, "multibox")
    assert build_dataclass(MultiBoxConfig, {"levels": ["4e", "5b"]}, "multibox").levels == ("4e", "5b")


def test_a_few_multiscale_training_steps_lower_the_loss():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    images, targets = _toy_batch()
    priors = kmeans_priors(torch.cat(targets), 6, seed=0)
    cfg = dataclasses.replace(MS, num_priors=6)
    model = build_net(cfg, priors)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = [train_step(model, opt, images, targets, priors, cfg)["loss"] for _ in range(20)]
    assert losses[-1] < 0.7 * losses[0]
    assert all(p.grad is not None for p in model.reduces.parameters())  # every level's conv learns


def test_multiscale_recipe_and_checkpoint_round_trip(tmp_path):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    images, targets = _toy_batch(6)
    priors = kmeans_priors(torch.cat(targets), 6, seed=0)
    cfg = dataclasses.replace(MS, num_priors=6)
    model = build_net(cfg, priors)
    tcfg = MultiBoxTrainConfig(epochs=1, batch_size=3, lr=0.01)
    state = fit(multibox_recipe(model, make_optimizer(model, tcfg), images, targets, cfg, tcfg))
    assert state.epoch == 1 and np.isfinite(state.history[0]["loss"])
    path = tmp_path / "ms.pt"
    save_checkpoint(path, model, cfg, {"train": dataclasses.asdict(tcfg)})
    blob, loaded_cfg = read_checkpoint(path)
    assert loaded_cfg == cfg and loaded_cfg.levels == ("3b", "4e", "5b")
    image = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    proposer = MultiBoxProposer(model, priors, cfg)
    assert np.array_equal(load_multibox(path)(image).boxes, proposer(image).boxes)
    save_checkpoint(tmp_path / "half.pt", model, cfg, half=True)  # as tools/export_multibox.py
    assert len(load_multibox(tmp_path / "half.pt")(image).boxes) >= 1


def test_single_map_checkpoint_without_the_new_keys_loads_unchanged(tmp_path):
    """A "prior"-head checkpoint written before ``levels``/``level_cells`` existed (the bundled
    multibox.pt is one) loads, keeps its parameter names and gives the same boxes."""
    torch.manual_seed(0)
    cfg = dataclasses.replace(MS, head="prior", head_grid=1)
    priors = _priors()
    model = build_net(cfg, priors)
    old_config = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("levels", "level_cells")}
    path = tmp_path / "old.pt"
    torch.save({"model": model.state_dict(), "priors": priors, "config": old_config, "epoch": 1}, path)
    blob, loaded_cfg = read_checkpoint(path)
    assert loaded_cfg.head == "prior" and "reduce.conv.weight" in blob["model"]
    assert not any(k.startswith("reduces.") for k in blob["model"])
    image = np.full((40, 30, 3), 90, np.uint8)
    assert np.array_equal(load_multibox(path)(image).boxes, MultiBoxProposer(model, priors, cfg)(image).boxes)


def test_prior_head_inputs_are_the_original_computation():
    """The "prior" head's per-prior inputs, recomputed as the code before the multiscale head did."""
    from torchvision.ops import roi_align

    torch.manual_seed(0)
    cfg = dataclasses.replace(MS, head="prior")
    net = build_net(cfg, _priors()).eval()
    fmap = torch.randn(2, 8, 5, 5)
    p = net.priors
    centre, half = (p[:, :2] + p[:, 2:]) / 2, (p[:, 2:] - p[:, :2]) * 0.75
    rois = torch.cat([centre - half, centre + half], 1) * fmap.new_tensor([5, 5, 5, 5])
    pooled = roi_align(fmap, [rois] * 2, 2, spatial_scale=1.0, sampling_ratio=2, aligned=True).view(2, 12, -1)
    glob = fmap.mean(dim=(2, 3))[:, None].expand(2, 12, 8)
    expected = torch.cat([pooled, glob, p[None].expand(2, -1, -1)], dim=2)
    assert torch.equal(net._prior_inputs(fmap), expected)
