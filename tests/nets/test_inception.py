"""nets.inception: shapes at several widths/sizes, aux heads, the torchvision weight round trip."""
import pickle

import pytest
import torch
import torchvision

from core.errors import InputError
from nets.inception import (IMAGENET_MEAN, IMAGENET_STD, Inception, fold_batchnorm,
                            load_torchvision_googlenet, normalize)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("width,size", [(0.125, 32), (0.125, 64), (0.25, 96), (0.25, 65)])
def test_shapes_eval_and_features(width, size):
    model = Inception(5, width=width).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        logits = model(x)
        feats = model.features(x)
    assert logits.shape == (2, 5)
    assert feats.shape[:2] == (2, model.feature_channels)
    assert size // 32 <= feats.shape[2] <= -(-size // 32)  # about H/32 (ceil-mode pools)


def test_aux_outputs_only_in_train_mode():
    model = Inception(4, width=0.125)
    x = torch.randn(2, 3, 64, 64)
    logits, aux1, aux2 = model.train()(x)
    assert logits.shape == aux1.shape == aux2.shape == (2, 4)
    assert isinstance(model.eval()(x), torch.Tensor)
    no_aux = Inception(4, width=0.125, aux_logits=False).train()
    assert isinstance(no_aux(x), torch.Tensor) and no_aux.aux1 is None


def test_width_scales_channels_and_paper_kernel_option():
    small, big = Inception(3, width=0.25), Inception(3, width=0.5)
    assert small.feature_channels == 256 and big.feature_channels == 512
    paper = Inception(3, width=0.125, branch3_kernel=5)
    assert paper.inception3a.branch3[1].conv.kernel_size == (5, 5)
    trunk = Inception(0, width=0.125).eval()
    assert trunk.fc is None and trunk.features(torch.randn(1, 3, 32, 32)).shape[1] == 128


def test_fold_batchnorm_keeps_outputs_and_refuses_train_mode():
    model = Inception(5, width=0.125)
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        # trained statistics, not the identity a fresh BatchNorm starts as
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.2, 0.2)

    def batchnorms():
        return sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())

    unfolded = batchnorms()
    model.eval().inception5b.train()  # one block left in train mode: refused, nothing folded
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(model)
    assert batchnorms() == unfolded > 0
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        before = model.eval()(x)
        after = fold_batchnorm(model)(x)
    assert batchnorms() == 0
    assert (after - before).abs().max() < 1e-5 * max(1.0, before.abs().max().item())


def test_normalize_is_explicit_imagenet_rgb():
    img = torch.full((3, 2, 2), 255, dtype=torch.uint8)
    out = normalize(img)
    expect = [(1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]
    assert torch.allclose(out[:, 0, 0], torch.tensor(expect))
    with pytest.raises(TypeError):
        normalize(img.float())


@pytest.fixture(scope="module")
def torchvision_file(tmp_path_factory):
    torch.manual_seed(1)
    tv = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True,
                                      transform_input=False).eval()
    path = tmp_path_factory.mktemp("tv") / "googlenet.pth"
    torch.save(tv.state_dict(), path)
    return tv, path


def test_torchvision_round_trip_equal_outputs(torchvision_file):
    tv, path = torchvision_file
    ours = load_torchvision_googlenet(Inception(1000), path).eval()
    assert list(ours.state_dict()) == list(tv.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ours(x), tv(x), atol=1e-5)


def test_torchvision_trunk_for_other_class_count(torchvision_file):
    tv, path = torchvision_file
    ours = load_torchvision_googlenet(Inception(11), path, load_classifier=False)
    assert torch.equal(ours.inception5b.branch1.conv.weight, tv.inception5b.branch1.conv.weight)
    with pytest.raises(InputError, match=r"googlenet\.pth.*11 classes.*\(1000, 1024\)"):
        load_torchvision_googlenet(Inception(11), path)


def test_mismatching_width_and_bad_files_are_refused(torchvision_file, tmp_path):
    _, path = torchvision_file
    with pytest.raises(InputError, match="googlenet.pth.*width 0.5"):
        load_torchvision_googlenet(Inception(1000, width=0.5), path)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(InputError, match="junk.pth"):
        load_torchvision_googlenet(Inception(1000), junk)


class _Evil:
    def __reduce__(self):
        return (open, ("/tmp/_nets_evil_marker_should_not_exist", "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_pickle_that_would_run_code_is_refused(tmp_path, writer):
    import os
    marker = "/tmp/_nets_evil_marker_should_not_exist"
    evil = tmp_path / "evil.pth"
    if writer == "pickle":
        with open(evil, "wb") as f:
            pickle.dump({"conv1.conv.weight": _Evil()}, f)
    else:
        torch.save({"conv1.conv.weight": _Evil()}, evil)
    if os.path.exists(marker):
        os.unlink(marker)
    with pytest.raises(InputError, match="evil.pth"):
        load_torchvision_googlenet(Inception(1000, width=0.125), evil)
    assert not os.path.exists(marker)
