"""proposals.multibox and multibox_train: priors, matching and the loss on hand-worked cases, training
(the loss falls, a resumed run equals an uninterrupted one), inference, checkpoints (both layouts)."""
import dataclasses
import math
import os
import pickle

import numpy as np
import pytest
import torch

from core.errors import InputError
from proposals.base import SOURCE_MULTIBOX
from core.config import ConfigError
from core.engine import fit
from proposals.multibox import (CODER, MultiBoxConfig, MultiBoxProposer, build_net, kmeans_priors,
                                load_multibox, read_checkpoint, resize_image, save_checkpoint)
from proposals.multibox_train import (MultiBoxTrainConfig, hflip, make_optimizer, match_priors,
                                      multibox_loss, multibox_recipe, resume, train_step)

TINY = MultiBoxConfig(width=0.125, input_size=32, num_priors=8, head_channels=8, head_grid=1,
                      hidden=32, dropout=0.0, nms_iou=0.7, top_k=5)


def T(x):
    return torch.tensor(x, dtype=torch.float32)


def test_kmeans_two_obvious_clusters_give_their_means():
    boxes = T([[0, 0, 0.2, 0.2], [0.6, 0.6, 1, 1], [0, 0, 0.2, 0.4], [0.5, 0.5, 1, 1]])
    priors = kmeans_priors(boxes, 2, seed=0)
    got = sorted(tuple(round(v, 5) for v in p) for p in priors.tolist())
    assert got == [(0.0, 0.0, 0.2, 0.3), (0.55, 0.55, 1.0, 1.0)]
    assert torch.equal(kmeans_priors(boxes, 2, seed=5), kmeans_priors(boxes, 2, seed=5))
    with pytest.raises(ValueError, match="at least k=5"):
        kmeans_priors(boxes, 5)


def test_kmeans_is_deterministic_with_duplicates_and_empty_clusters():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(60, 2, generator=g) * 0.5
    boxes = torch.cat([xy, xy + 0.3 + torch.rand(60, 2, generator=g) * 0.2], 1)
    boxes = torch.cat([boxes, boxes[:10]])  # duplicates
    a, b = kmeans_priors(boxes, 12, seed=1), kmeans_priors(boxes, 12, seed=1)
    assert a.shape == (12, 4) and torch.equal(a, b)
    same = kmeans_priors(T([[0, 0, 1, 1]] * 3), 3)  # fewer distinct boxes than k
    assert torch.equal(same, T([[0, 0, 1, 1]] * 3))


PRIORS = T([[0, 0, 0.5, 0.5], [0.5, 0, 1, 0.5], [0, 0, 0.5, 0.4], [0.5, 0.5, 1, 1]])


def test_match_best_prior_plus_threshold():
    gt = T([[0, 0, 0.5, 0.5], [0.55, 0.55, 1, 1]])
    # IoU(P2, GT0) = 0.2 / 0.25 = 0.8 ≥ 0.5; IoU(P3, GT1) = 0.2025 / 0.25 = 0.81; P1 overlaps nothing.
    assert match_priors(gt, PRIORS, 0.5).tolist() == [0, -1, 0, 1]
    assert match_priors(gt, PRIORS, 1.01).tolist() == [0, -1, -1, 1]  # best prior only (MultiBox)
    # A small box still gets its best prior (IoU 0.04), and a shared best prior goes to the later box.
    assert match_priors(T([[0.9, 0.9, 1, 1]]), PRIORS).tolist() == [-1, -1, -1, 0]
    assert match_priors(T([[0, 0, 0.5, 0.5], [0, 0, 0.5, 0.49]]), PRIORS, 1.01).tolist() == [1, -1, -1, -1]
    assert match_priors(torch.zeros(0, 4), PRIORS).tolist() == [-1] * 4


def test_encode_decode_hand_worked_and_round_trip():
    prior = T([[0, 0, 0.5, 0.5]])
    assert torch.allclose(CODER.encode(T([[0.1, 0.1, 0.6, 0.6]]), prior), T([[2, 2, 0, 0]]))
    # twice as wide: dw = 5 * log 2
    assert torch.allclose(CODER.encode(T([[0, 0, 1, 0.5]]), prior), T([[5, 0, 5 * math.log(2), 0]]))
    boxes = T([[0.1, 0.2, 0.3, 0.9], [0.4, 0.4, 0.5, 0.45]])
    assert torch.allclose(CODER.decode(CODER.encode(boxes, PRIORS[:2]), PRIORS[:2]), boxes, atol=1e-6)


def test_loss_hand_worked():
    priors = T([[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1]])
    offsets = T([[[0.5, -2, 0, 0], [9, 9, 9, 9]]])  # prior 1 is unmatched: its offsets do not count
    logits = T([[0.0, 0.0]])
    targets = [T([[0, 0, 0.5, 0.5]])]  # matches prior 0 exactly: target offsets 0
    loss, parts = multibox_loss(offsets, logits, targets, priors, alpha=2.0)
    # smooth-L1(0.5) + smooth-L1(2) = 0.125 + 1.5; BCE = 2 log 2; one match.
    assert parts["loc"] == pytest.approx(1.625) and parts["conf"] == pytest.approx(2 * math.log(2))
    assert float(loss) == pytest.approx(2 * 1.625 + 2 * math.log(2), rel=1e-6)
    l2, parts = multibox_loss(offsets, logits, targets, priors, alpha=1.0, loc_loss="l2")
    assert parts["loc"] == pytest.approx(0.5 * (0.25 + 4))
    empty, parts = multibox_loss(offsets, logits, [torch.zeros(0, 4)], priors)
    assert parts["loc"] == 0 and float(empty) == pytest.approx(2 * math.log(2))


def _toy_batch(n=8, size=32, seed=0):
    """Black images with one white rectangle each, and its normalised box."""
    rng = np.random.default_rng(seed)
    images, targets = [], []
    for _ in range(n):
        x1, y1 = rng.integers(0, size // 2, 2)
        w, h = rng.integers(size // 4, size // 2, 2)
        im = np.zeros((size, size, 3), np.uint8)
        im[y1:y1 + h, x1:x1 + w] = 255
        images.append(resize_image(im, size))
        targets.append(T([[x1, y1, x1 + w, y1 + h]]) / size)
    return torch.stack(images), targets


@pytest.mark.parametrize("head", ["prior", "fc"])
def test_a_few_training_steps_lower_the_loss(head):
    torch.manual_seed(0)
    images, targets = _toy_batch()
    priors = kmeans_priors(torch.cat(targets), TINY.num_priors, seed=0)
    model = build_net(dataclasses.replace(TINY, head=head), priors)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    # 20 steps: after 12 the ratio sits near 0.7 and moves with the thread count and layout.
    losses = [train_step(model, opt, images, targets, priors, TINY)["loss"] for _ in range(20)]
    assert losses[-1] < 0.7 * losses[0]


def test_hflip_mirrors_boxes():
    images = torch.arange(2 * 3 * 2 * 4, dtype=torch.uint8).view(2, 3, 2, 4)
    out, boxes = hflip(images, [T([[0.1, 0.2, 0.3, 0.4]]), T([[0.1, 0.2, 0.3, 0.4]])],
                       torch.tensor([True, False]))
    assert torch.equal(out[0], images[0].flip(-1)) and torch.equal(out[1], images[1])
    assert torch.allclose(boxes[0], T([[0.7, 0.2, 0.9, 0.4]])) and torch.equal(boxes[1], T([[0.1, 0.2, 0.3, 0.4]]))


@pytest.fixture
def proposer():
    torch.manual_seed(0)
    priors = kmeans_priors(_toy_batch()[1][0].repeat(8, 1) * T([1, 1, 1.5, 1.2]).clamp(max=1) +
                           torch.linspace(0, 0.1, 8)[:, None], TINY.num_priors)
    return MultiBoxProposer(build_net(TINY, priors), priors, TINY)


@pytest.mark.parametrize("shape", [(48, 64, 3), (1, 1, 3), (60, 4000, 3), (30, 20)])
def test_proposer_boxes_in_original_pixels(proposer, shape):
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    props = proposer(image)
    h, w = shape[:2]
    assert props.boxes.dtype == np.float32 and props.boxes.shape[1] == 4
    assert 1 <= len(props.boxes) <= TINY.top_k
    assert (props.sources == SOURCE_MULTIBOX).all() and props.sources.dtype == np.uint8
    assert (props.boxes >= 0).all() and (props.boxes[:, [0, 2]] <= w).all() and (props.boxes[:, [1, 3]] <= h).all()
    norm, scores = proposer.scored_boxes([image])
    best = int(scores[0].argmax())  # the top proposal is the best-scoring box, mapped to pixels
    assert np.allclose(props.boxes[0], norm[0, best].numpy() * [w, h, w, h], atol=1e-3)
    assert np.array_equal(proposer(image).boxes, props.boxes)  # deterministic


def test_checkpoint_round_trip(proposer, tmp_path):
    path = tmp_path / "mb.pt"
    opt = torch.optim.AdamW(proposer.model.parameters())
    save_checkpoint(path, proposer.model, TINY, {"train": {"lr": 0.1}}, opt.state_dict(), {"epoch": 3})
    blob, cfg = read_checkpoint(path)
    assert blob["train_state"]["epoch"] == 3 and cfg == TINY and blob["config"]["train"] == {"lr": 0.1}
    loaded = load_multibox(path)
    image = np.full((40, 30, 3), 90, np.uint8)
    assert np.array_equal(loaded(image).boxes, proposer(image).boxes)
    save_checkpoint(tmp_path / "half.pt", proposer.model, TINY, half=True)  # as tools/export_multibox.py
    half = torch.load(tmp_path / "half.pt", weights_only=True)["model"]
    assert half["priors"].dtype == torch.float32 and half["out.weight"].dtype == torch.float16


def test_checkpoint_of_the_earlier_layout_loads(proposer, tmp_path):
    """Files written before the common format (the bundled multibox.pt is one) still load."""
    path = tmp_path / "old.pt"
    torch.save({"model": proposer.model.state_dict(), "priors": proposer.priors,
                "config": dataclasses.asdict(TINY), "epoch": 2, "optimizer": {},
                "train_config": {"lr": 0.1}, "history": [{"epoch": 1}], "commit": "abc"}, path)
    blob, cfg = read_checkpoint(path)
    assert cfg == TINY and blob["train_state"] == {"epoch": 2, "history": [{"epoch": 1}]}
    assert blob["config"]["train"] == {"lr": 0.1} and blob["commit"] == "abc"
    image = np.full((40, 30, 3), 90, np.uint8)
    assert np.array_equal(load_multibox(path)(image).boxes, proposer(image).boxes)


def test_bundled_multibox_loads():
    proposer = load_multibox(os.path.join(os.path.dirname(__file__), "..", "..", "assets", "model", "multibox.pt"))
    assert len(proposer(np.full((64, 96, 3), 128, np.uint8)).boxes) > 0


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/_multibox_evil_marker",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_bad_checkpoints_are_refused(proposer, tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(InputError, match="notes.pt"):
        load_multibox(text)
    marker = "/tmp/_multibox_evil_marker"
    if os.path.exists(marker):
        os.unlink(marker)
    evil = tmp_path / "evil.pt"
    torch.save({"model": {}, "priors": _Evil(), "config": {}, "epoch": 0}, evil)
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump({"model": _Evil()}, f)
    for path in (evil, tmp_path / "evil.pkl"):
        with pytest.raises(InputError, match="evil"):
            load_multibox(path)
    assert not os.path.exists(marker)
    plain = tmp_path / "plain.pt"
    torch.save(proposer.model.state_dict(), plain)
    with pytest.raises(InputError, match="plain.pt: not a MultiBox checkpoint"):
        load_multibox(plain)


def test_checkpoint_that_does_not_fit_is_refused(proposer, tmp_path):
    path = tmp_path / "wrong.pt"
    save_checkpoint(path, proposer.model, TINY)
    state = torch.load(path, weights_only=True)
    state["config"]["multibox"]["hidden"] = 64  # the stored weights are for hidden=32
    torch.save(state, path)
    with pytest.raises(InputError, match=r"wrong.pt: does not fit.*fc.weight"):
        load_multibox(path)
    state["config"]["multibox"] = dataclasses.asdict(dataclasses.replace(TINY, num_priors=9))
    torch.save(state, path)
    with pytest.raises(InputError, match=r"wrong.pt: priors have shape \(8, 4\), expected \(9, 4\)"):
        load_multibox(path)
    state["config"]["multibox"]["colour"] = "red"
    torch.save(state, path)
    with pytest.raises(InputError, match="wrong.pt.*colour"):
        load_multibox(path)


def _toy_run(seed=0):
    """A tiny MultiBox, its optimizer and its recipe on 12 toy images (batches of 4)."""
    torch.set_num_threads(1)  # a few threads on a busy 2-core machine can be 100x slower
    torch.manual_seed(seed)
    images, targets = _toy_batch(12)
    priors = kmeans_priors(torch.cat(targets), TINY.num_priors, seed=0)
    model = build_net(dataclasses.replace(TINY, dropout=0.1), priors)  # dropout: the epoch seeds must fix it
    tcfg = MultiBoxTrainConfig(epochs=3, batch_size=4, lr=0.01, seed=seed)
    optimizer = make_optimizer(model, tcfg)
    return model, optimizer, lambda save=lambda s: None, cfg=tcfg: multibox_recipe(
        model, optimizer, images, targets, TINY, cfg, save)


def test_training_lowers_the_loss_on_a_toy_task():
    # No flips: the 8 k-means priors fit the unflipped boxes only.
    model, _, recipe = _toy_run()
    state = fit(recipe(cfg=MultiBoxTrainConfig(epochs=10, batch_size=6, lr=0.01, flip=False)))
    losses = [row["loss"] for row in state.history]
    assert state.epoch == 10 and state.iteration == 20
    assert losses[-1] < 0.75 * losses[0]


def test_resume_equals_uninterrupted(tmp_path):
    model, _, recipe = _toy_run()
    fit(recipe())
    path = tmp_path / "mb.pt"
    config = {"train": {"lr": 0.01}, "data": {"train": "a"}}
    m1, o1, recipe1 = _toy_run()
    save = lambda s: save_checkpoint(path, m1, TINY, config, o1.state_dict(), s.to_dict())  # noqa: E731
    fit(recipe1(save, MultiBoxTrainConfig(epochs=1, batch_size=4, lr=0.01)))  # "killed" after epoch 1
    m2, o2, recipe2 = _toy_run()
    torch.manual_seed(123)  # resuming must not depend on the global RNG state
    state = resume(path, m2, o2, {**config, "data": {"train": "b"}, "multibox": dataclasses.asdict(TINY)})
    assert state.epoch == 1 and len(state.history) == 1
    fit(recipe2(), state)
    for (k, a), b in zip(model.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(a, b), k
    with pytest.raises(ConfigError, match=r"mb.pt: was trained with another config \(train.lr: 0.01 -> 0.02\)"):
        resume(path, m2, o2, {"train": {"lr": 0.02}, "multibox": dataclasses.asdict(TINY)})
