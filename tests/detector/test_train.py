"""detector.train: the loss falls in a few steps; aux weighting; schedule; resume = uninterrupted."""
import pytest
import torch
import torch.nn.functional as F

from detector.checkpoint import save_checkpoint
from detector.classifier import RegionClassifier
from detector.config import SamplerConfig, TrainConfig
from detector.sampler import RegionSampler
from detector.train import (ImageStore, TrainState, fit, hardest_background, learning_rate, make_optimizer,
                            region_loss, resume, train_step)


def test_a_few_epochs_lower_the_loss(tiny_model):
    _, losses, _ = tiny_model
    assert losses[-1] < 0.6 * losses[0]


def test_aux_losses_have_weight_03():
    g = torch.Generator().manual_seed(0)
    main, a1, a2 = (torch.randn(4, 3, generator=g) for _ in range(3))
    labels = torch.tensor([0, 1, 2, 0])
    want = F.cross_entropy(main, labels) + 0.3 * (F.cross_entropy(a1, labels) + F.cross_entropy(a2, labels))
    assert torch.allclose(region_loss((main, a1, a2), labels, 0.3), want)
    assert torch.allclose(region_loss(main, labels, 0.3), F.cross_entropy(main, labels))


def test_ohem_keeps_every_object_and_the_hardest_background_rows():
    logits = torch.tensor([[5.0, 0], [0, 5], [0, 5], [1, 0], [0, 1], [0, 0]])
    labels = torch.tensor([0, 1, 0, 0, 0, 1])
    keep = hardest_background(logits, labels, 2)  # background losses: tiny, 5.0, 0.31, 1.31
    assert keep.tolist() == [False, True, True, False, True, True]
    rows = F.cross_entropy(logits, labels, reduction="none")
    assert torch.allclose(region_loss(logits, labels, 0.3, keep=keep), rows[keep].mean())
    assert hardest_background(logits, labels, 4).all()  # as many as there are: all count


def one_step(**options) -> tuple[float, torch.nn.Module]:
    g = torch.Generator().manual_seed(0)
    crops, labels = torch.randn(6, 3, 16, 16, generator=g), torch.tensor([0, 1, 0, 2, 0, 0])
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(3))
    model(crops)
    return train_step(model, torch.optim.SGD(model.parameters(), lr=0.1), crops, labels, **options), model


def test_ohem_with_room_for_every_background_row_is_the_plain_step():
    assert one_step()[0] == pytest.approx(one_step(ohem_bg=10)[0], rel=1e-6)


def test_bfloat16_training_keeps_float32_weights_and_nearly_the_loss():
    (plain, _), (low, model) = one_step(), one_step(dtype=torch.bfloat16)
    assert low == pytest.approx(plain, rel=0.02) and low != plain  # bfloat16 rounds: measured 0.02% apart
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_learning_rate_schedule():
    cfg = TrainConfig(lr=0.1, lr_steps=(2, 4), lr_gamma=0.1, warmup_iters=10)
    assert learning_rate(cfg, 0, 0) == pytest.approx(0.01)
    assert learning_rate(cfg, 0, 10) == pytest.approx(0.1)
    assert learning_rate(cfg, 2, 100) == pytest.approx(0.01)
    assert learning_rate(cfg, 5, 100) == pytest.approx(0.001)


def _setup(kit, dataset, seed=0):
    torch.manual_seed(seed)
    model = RegionClassifier(kit.CLASSES, kit.TINY)
    cfg = TrainConfig(epochs=2, lr=0.02, warmup_iters=2, lr_steps=(1,), seed=seed)
    sampler = RegionSampler(dataset, {a.image_id: kit.grid_boxes() for a in dataset.images},
                            SamplerConfig(images_per_batch=4, batch_size=32), seed=seed)
    return model, make_optimizer(model, cfg), sampler, ImageStore(dataset), cfg


def test_resume_equals_uninterrupted(kit, easy_split, tmp_path):
    import dataclasses
    from core.structures import DetectionDataset
    small = DetectionDataset(easy_split.classes, easy_split.images[:8], image_root=easy_split.image_root)
    model, opt, sampler, store, cfg = _setup(kit, small)
    fit(model, opt, sampler, store, cfg, 0.05, TrainState(), save=lambda s: None)

    path = tmp_path / "member_0.pt"
    m1, o1, s1, st1, _ = _setup(kit, small)
    config = {"train": {"lr": 0.02}}
    save = lambda s: save_checkpoint(path, m1, config, 0, s.epoch, o1.state_dict(),  # noqa: E731
                                     train_state=s.to_dict())
    fit(m1, o1, s1, st1, dataclasses.replace(cfg, epochs=1), 0.05, TrainState(), save)
    m2, o2, s2, st2, _ = _setup(kit, small, seed=0)
    torch.manual_seed(123)  # resuming must not depend on the global RNG state
    state = resume(path, m2, o2, {**config, "classifier": m2.config_dict()})
    assert state.epoch == 1 and len(state.history) == 1
    fit(m2, o2, s2, st2, cfg, 0.05, state, save=lambda s: None)
    for (k, a), b in zip(model.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(a, b), k
