"""GoogLeNet (Inception v1, GLN Table 1) with a width multiplier, for any input size.

One implementation serves the region classifiers (``detector/``) and the MultiBox trunk
(``proposals/multibox.py``).

Shape letters: B images, C channels, H×W input size, h×w feature-map size (about H/32 × W/32).

Layout. At ``width=1.0`` the module names and parameter shapes are exactly those of
``torchvision.models.googlenet(aux_logits=True)``, so :func:`load_torchvision_googlenet` loads its
state dicts unchanged and gives equal outputs (tested). That fixes three deviations from the
paper's Table 1, kept on purpose so ImageNet weights load:

* every convolution is a "BasicConv2d": conv (no bias) → BatchNorm (eps 1e-3) → ReLU; no LRN;
* the "5×5" branch of each inception module is a 3×3 convolution in torchvision
  (pytorch/vision#906) — ``branch3_kernel=5`` builds the paper's 5×5, which then cannot load
  torchvision weights;
* the pool after 4e is 2×2/2 (Table 1: 3×3/2) and the auxiliary heads pool adaptively to 4×4
  (Table 1: 5×5/3, the same 4×4 grid at 224 px input) so that any input size works.

Everything else follows Table 1: inception 3a–5b, global average pool, dropout (paper 40%; the
torchvision default is 20%, which does not matter in eval mode), linear. The auxiliary classifiers
on 4a and 4d (1×1 conv 128 → FC 1024 → dropout 70% → linear) run in train mode only; weighting
their losses by 0.3 is the trainer's business.

Preprocessing is explicit (no hidden ``transform_input``): RGB, pixels scaled to 0..1, then
``(x - mean) / std`` by :func:`normalize`. Train from scratch with ``IMAGENET_MEAN/IMAGENET_STD``.
Torchvision's IMAGENET1K_V1 GoogLeNet weights were ported from the original model and expect
``(x - 0.5) / 0.5`` (that is what torchvision's ``transform_input=True`` silently converts to);
use ``normalize(x, TORCHVISION_GOOGLENET_MEAN, TORCHVISION_GOOGLENET_STD)`` with them.
"""
from __future__ import annotations

import logging
import os
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from core.checkpoint import load_weights_only, state_mismatch
from core.errors import InputError
from nets.preprocessing import (  # noqa: F401  (re-exported: the mean/std live without torch)
    IMAGENET_MEAN,
    IMAGENET_STD,
    TORCHVISION_GOOGLENET_MEAN,
    TORCHVISION_GOOGLENET_STD,
)

log = logging.getLogger(__name__)

# GLN Table 1: name → (#1×1, #3×3 reduce, #3×3, #5×5 reduce, #5×5, pool proj).
INCEPTION_SPECS = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}

# Each inception block's output → its stride in input pixels (the maps MultiBox and the FPN read).
BLOCK_STRIDES = {"3a": 8, "3b": 8, "4a": 16, "4b": 16, "4c": 16, "4d": 16, "4e": 16, "5a": 32, "5b": 32}


def normalize(images: Tensor, mean: Sequence[float] = IMAGENET_MEAN,
              std: Sequence[float] = IMAGENET_STD) -> Tensor:
    """uint8 RGB images ``[..., 3, H, W]`` → float32 ``(x / 255 - mean) / std``, same shape."""
    if images.dtype != torch.uint8:
        raise TypeError(f"normalize expects uint8 pixels, got {images.dtype}")
    if images.dim() < 3 or images.shape[-3] != 3:
        raise ValueError(f"normalize expects [..., 3, H, W], got {tuple(images.shape)}")
    m = torch.tensor(mean, dtype=torch.float32, device=images.device).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=images.device).view(3, 1, 1)
    return (images.to(torch.float32) / 255.0 - m) / s


def scaled_channels(n: int, width: float, min_channels: int = 8) -> int:
    """A channel count ``n`` scaled by ``width`` (never below ``min_channels``; exact at 1.0)."""
    if width == 1.0:
        return n
    return max(min_channels, int(round(n * width)))


class BasicConv2d(nn.Module):
    """conv (no bias) → BatchNorm(eps=1e-3) → ReLU, as torchvision's GoogLeNet."""

    def __init__(self, in_channels: int, out_channels: int, **kwargs) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """Every :class:`BasicConv2d` under ``module`` with its BatchNorm folded into the convolution
    (in place; eval mode only: the statistics are frozen into the weights and the BatchNorm
    becomes an identity, so the result can no longer be trained).

    At inference a BatchNorm is a scale and shift of the convolution's output, and as its own
    layer it reads and writes every activation once more (README, Speed, measures what folding
    saves). Outputs agree to float rounding (~1e-6). Every layer is checked before any is
    folded, so a refused module is left as it was.
    """
    layers = [m for m in module.modules() if isinstance(m, BasicConv2d) and isinstance(m.bn, nn.BatchNorm2d)]
    if any(layer.training for layer in layers):
        raise ValueError("fold_batchnorm needs eval mode (it freezes the running statistics)")
    for layer in layers:
        layer.conv = fuse_conv_bn_eval(layer.conv, layer.bn)
        layer.bn = nn.Identity()
    return module


class InceptionBlock(nn.Module):
    """One inception module: 1×1 | 1×1→3×3 | 1×1→k×k | maxpool 3×3/1→1×1, concatenated."""

    def __init__(self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int,
                 ch5x5: int, pool_proj: int, branch3_kernel: int = 3) -> None:
        super().__init__()
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj
        self.branch1 = BasicConv2d(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(BasicConv2d(in_channels, ch3x3red, kernel_size=1),
                                     BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(
            BasicConv2d(in_channels, ch5x5red, kernel_size=1),
            BasicConv2d(ch5x5red, ch5x5, kernel_size=branch3_kernel, padding=branch3_kernel // 2))
        self.branch4 = nn.Sequential(nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
                                     BasicConv2d(in_channels, pool_proj, kernel_size=1))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    """Auxiliary classifier: avg pool to 4×4 → 1×1 conv → FC → ReLU → dropout → linear."""

    def __init__(self, in_channels: int, num_classes: int, conv_channels: int = 128,
                 hidden: int = 1024, dropout: float = 0.7) -> None:
        super().__init__()
        self.conv = BasicConv2d(in_channels, conv_channels, kernel_size=1)
        self.fc1 = nn.Linear(conv_channels * 16, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)
        self.dropout = nn.Dropout(p=dropout)

    def forward(self, x: Tensor) -> Tensor:
        # [B, C, h, w] → [B, C, 4, 4]: Table 1's 5×5/3 pool gives this grid at 224 px input.
        x = torch.flatten(self.conv(F.adaptive_avg_pool2d(x, (4, 4))), 1)
        return self.fc2(self.dropout(F.relu(self.fc1(x), inplace=True)))


class Inception(nn.Module):
    """GoogLeNet with a width multiplier; ``forward`` gives ``[B, num_classes]`` logits.

    Args:
        num_classes: outputs of the final linear layer; 0 builds a trunk without a classifier
            (only :meth:`features` is usable), e.g. for MultiBox.
        width: multiplies every channel count (at least ``min_channels``); 1.0 is GoogLeNet.
        aux_logits: build the auxiliary classifiers on 4a and 4d (used in train mode only).
        dropout: before the final linear layer (GLN: 0.4).
        dropout_aux: inside the auxiliary classifiers (GLN: 0.7).
        branch3_kernel: 3 (torchvision-compatible) or 5 (GLN Table 1).
        min_channels: floor for scaled channel counts.
    """

    def __init__(self, num_classes: int, width: float = 1.0, aux_logits: bool = True,
                 dropout: float = 0.4, dropout_aux: float = 0.7, branch3_kernel: int = 3,
                 min_channels: int = 8) -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")
        if branch3_kernel not in (3, 5):
            raise ValueError(f"branch3_kernel must be 3 or 5, got {branch3_kernel}")
        self.num_classes, self.width = num_classes, width
        self.aux_logits = aux_logits and num_classes > 0
        c = lambda n: scaled_channels(n, width, min_channels)  # noqa: E731
        self.conv1 = BasicConv2d(3, c(64), kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(c(64), c(64), kernel_size=1)
        self.conv3 = BasicConv2d(c(64), c(192), kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        channels = c(192)
        for name, spec in INCEPTION_SPECS.items():
            block = InceptionBlock(channels, *(c(n) for n in spec), branch3_kernel=branch3_kernel)
            setattr(self, f"inception{name}", block)
            channels = block.out_channels
            if name == "3b":
                self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
            elif name == "4e":
                self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)  # as torchvision
        self.feature_channels = channels
        self.aux1 = self.aux2 = None
        if self.aux_logits:
            aux = dict(conv_channels=c(128), hidden=c(1024), dropout=dropout_aux)
            self.aux1 = InceptionAux(self.inception4a.out_channels, num_classes, **aux)
            self.aux2 = InceptionAux(self.inception4d.out_channels, num_classes, **aux)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(channels, num_classes) if num_classes > 0 else None
        self._init_weights()

    def _init_weights(self) -> None:
        """Torchvision's init: truncated normal (std 0.01) for conv/linear, BN weight 1, bias 0."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def stem(self, x: Tensor) -> Tensor:
        """``[B, 3, H, W]`` → the input of block 3a (conv1, pool, conv2, conv3, pool: stride 8)."""
        return self.maxpool2(self.conv3(self.conv2(self.maxpool1(self.conv1(x)))))

    def _stem_to_4a(self, x: Tensor) -> Tensor:
        x = self.maxpool3(self.inception3b(self.inception3a(self.stem(x))))
        return self.inception4a(x)

    def _trunk(self, x: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """``[B, 3, H, W]`` → (5b map ``[B, C, h, w]``, aux1 logits or None, aux2 logits or None)."""
        with_aux = self.training and self.aux_logits
        x = self._stem_to_4a(x)
        aux1 = self.aux1(x) if with_aux else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = self.aux2(x) if with_aux else None
        x = self.maxpool4(self.inception4e(x))
        return self.inception5b(self.inception5a(x)), aux1, aux2

    def block_maps(self, x: Tensor, names: Sequence[str]) -> list[Tensor]:
        """Normalised images → the outputs of the inception blocks ``names`` (in trunk order), each
        ``[B, C, ⌈H/stride⌉, ⌈W/stride⌉]``; runs the trunk only as far as the last one, without the
        auxiliary heads (the order of :meth:`_trunk`: stem, 3a–3b, pool, 4a–4e, pool, 5a–5b)."""
        x = self.stem(x)
        out, wanted = [], set(names)
        for name in BLOCK_STRIDES:
            if not wanted:
                break
            if name == "4a":
                x = self.maxpool3(x)
            elif name == "5a":
                x = self.maxpool4(x)
            x = getattr(self, f"inception{name}")(x)
            if name in wanted:
                out.append(x)
                wanted.discard(name)
        return out

    def features(self, x: Tensor) -> Tensor:
        """Normalised images ``[B, 3, H, W]`` → the inception-5b map ``[B, feature_channels, h, w]``."""
        return self._trunk(x)[0]

    def forward(self, x: Tensor):
        """``[B, 3, H, W]`` → logits ``[B, K]``; in train mode with aux: ``(logits, aux1, aux2)``."""
        if self.fc is None:
            raise RuntimeError("this Inception has no classifier (num_classes=0); use features()")
        x, aux1, aux2 = self._trunk(x)
        logits = self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))
        if self.training and self.aux_logits:
            return logits, aux1, aux2
        return logits


def _read_state_dict(path) -> dict[str, Tensor]:
    """A state dict from ``path`` loaded with ``weights_only=True`` (nothing in it executes)."""
    path = os.fspath(path)
    obj = load_weights_only(path)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise InputError(f"{path}: not a state dict of tensors")
    return obj


def classifier_key(key: str) -> bool:
    return key.startswith("fc.") or key.startswith(("aux1.fc2.", "aux2.fc2."))


def load_torchvision_googlenet(model: Inception, path, load_classifier: bool = True) -> Inception:
    """Load a torchvision GoogLeNet state dict (``torch.save(googlenet().state_dict())``) into ``model``.

    Args:
        model: an :class:`Inception` with ``width=1.0`` and ``branch3_kernel=3``.
        path: the state-dict file (read with ``weights_only=True``).
        load_classifier: False skips the final and auxiliary linear layers (``fc``, ``aux*.fc2``),
            for fine-tuning ImageNet weights to another class count.

    Aux weights missing from the file (a model saved without aux heads) stay as initialised,
    with a warning; aux weights in the file but not in ``model`` are ignored. Torchvision's
    ImageNet aux heads are untrained anyway.

    Raises:
        InputError: the file is not a state dict, or it does not fit ``model`` (the message names
            the file and the first mismatching parameter).
    """
    sd = _read_state_dict(path)
    own = model.state_dict()
    aux = ("aux1.", "aux2.")
    skipped = (lambda key: False) if load_classifier else classifier_key
    take = {k: v for k, v in sd.items() if not skipped(k) and not (k.startswith(aux) and k not in own)}
    problem = state_mismatch(own, take, optional=lambda k: k.startswith(aux) or skipped(k))
    if problem:
        raise InputError(f"{path}: does not fit this Inception (width {model.width}, "
                         f"{model.num_classes} classes): {problem}")
    missing = [k for k in own if k not in take and k.startswith(aux) and not skipped(k)]
    if missing:
        log.warning("%s: %d parameters not in the file left as initialised (e.g. %s)",
                    path, len(missing), missing[0])
    model.load_state_dict(take, strict=False)
    return model
