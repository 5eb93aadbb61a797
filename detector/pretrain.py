"""Pretraining a region classifier on an endless stream of rendered crops: the ImageNet step, made here.

GLN's six region classifiers and its MultiBox started from Inception networks trained on ImageNet
classification and were then fine-tuned on regions (docs/method.md §1.5). Nothing can be downloaded
here, so this module makes the equivalent: the same network (:class:`detector.classifier.RegionClassifier`,
any width and input size) learns to name warped crops of the synthetic benchmark's objects, drawn
from a stream that never repeats.

The stream (:class:`CropStream`): minibatch ``b`` of a run seeded ``s`` renders fresh images with
the benchmark's generator (``bench.synthetic.render_image``, seeded by ``(s, "pretrain", b)``: never
a train or val image) and warps, R-CNN style, with a context padding drawn from the members' range:

* **object crops** (labels ``1..K``): every ground-truth box, its centre and sides jittered by up to
  ``fg_jitter`` (kept only while IoU with its box stays >= ``fg_iou``);
* **background crops** (label 0): boxes overlapping every object less than ``bg_iou``: half placed
  anywhere (clutter, distractor shapes, photographs), half near an object (its parts, badly centred
  crops), which is what the members most need to tell from an object.

Shape letters: B crops in a minibatch, S the warped size, K classes.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from core.box_ops import box_iou

from bench.synthetic import CLASSES, SyntheticConfig, SyntheticImage, image_rng, render_image
from core.boxes import flip_boxes
from core.checkpoint import load_weights_only, state_mismatch
from core.config import COUNT, FRACTION, IOU, POSITIVE, check_ranges
from core.distributed import World, block
from core.engine import Recipe, TrainState
from core.errors import InputError
from detector.classifier import RegionClassifier
from detector.config import ClassifierConfig, TrainConfig
from detector.train import make_optimizer, train_step
from detector.warp import warp_regions
from nets.inception import Inception, classifier_key, normalize

log = logging.getLogger(__name__)

TRAIN_SPLIT = "pretrain"  # the stream's images: a split name no train or val split uses
HELDOUT_SPLIT = "pretrain-heldout"  # the fixed crops top-1 accuracy is reported on


@dataclass(frozen=True)
class StreamConfig:
    """What the crop stream draws (see the module docstring)."""

    batch_size: int = 128  # crops per minibatch
    background_fraction: float = 0.5  # share of background crops in a minibatch
    fg_jitter: float = 0.1  # object crops: centre shift and side scale, up to this x the side
    fg_iou: float = 0.6  # a jittered object crop keeps at least this IoU with its box
    bg_iou: float = 0.3  # background crops overlap every object less than this
    padding_scales: tuple[float, ...] = (0.6, 1.0, 1.4)  # context = classifier.padding x one of these
    flip: bool = True
    workers: int = 1  # processes rendering the stream (0 = in the training process)
    heldout_batches: int = 16  # minibatches of held-out crops for the per-epoch top-1

    def __post_init__(self):
        check_ranges(self, batch_size=POSITIVE, background_fraction=FRACTION, fg_jitter=FRACTION,
                     fg_iou=IOU, bg_iou=IOU, workers=COUNT, heldout_batches=POSITIVE)


@dataclass(frozen=True)
class PretrainConfig:
    """The optimisation: SGD with momentum, linear warm-up, cosine decay over all steps."""

    epochs: int = 8
    steps_per_epoch: int = 250  # an "epoch" of an endless stream: how often to evaluate and save
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 0.0005
    warmup_iters: int = 100
    aux_weight: float = 0.3
    seed: int = 0

    def __post_init__(self):
        check_ranges(self, epochs=POSITIVE, steps_per_epoch=POSITIVE, lr=POSITIVE, warmup_iters=COUNT)


# What a resumed pretraining may change: how long it runs and how many processes render.
RESUMABLE = ("train.epochs", "stream.workers")


def _object_boxes(rng: np.random.Generator, gt: np.ndarray, cfg: StreamConfig) -> np.ndarray:
    """Jittered copies of ``gt [N, 4]`` that keep IoU >= ``fg_iou`` with their box (else the box)."""
    u = rng.uniform(-1, 1, (len(gt), 4)).astype(np.float32)
    wh = gt[:, 2:] - gt[:, :2]
    centre = (gt[:, :2] + gt[:, 2:]) / 2 + u[:, :2] * cfg.fg_jitter * wh
    half = wh * np.exp(u[:, 2:] * cfg.fg_jitter) / 2
    boxes = np.concatenate([centre - half, centre + half], 1)
    iou = box_iou(torch.from_numpy(boxes), torch.from_numpy(gt)).diagonal().numpy()
    return np.where((iou >= cfg.fg_iou)[:, None], boxes, gt)


def _background_boxes(rng: np.random.Generator, gt: np.ndarray, count: int, width: int, height: int,
                      cfg: StreamConfig) -> np.ndarray:
    """Up to ``count`` boxes inside the image overlapping every box of ``gt`` less than ``bg_iou``."""
    n = 4 * count + 8  # candidates; most pass, the rest are dropped
    side = np.exp(rng.uniform(np.log(12), np.log(0.9 * min(width, height)), n))
    aspect = np.exp(rng.uniform(-0.7, 0.7, n))
    wh = np.stack([side * np.sqrt(aspect), side / np.sqrt(aspect)], 1)
    centre = rng.uniform(0, 1, (n, 2)) * [width, height]
    if len(gt):  # half of them near an object: its parts, badly centred crops of it
        near = rng.random(n) < 0.5
        pick = gt[rng.integers(0, len(gt), n)]
        pick_wh = pick[:, 2:] - pick[:, :2]
        wh[near] = (pick_wh * np.exp(rng.uniform(-0.7, 0.7, (n, 2))))[near]
        centre[near] = ((pick[:, :2] + pick[:, 2:]) / 2 + rng.uniform(-1, 1, (n, 2)) * pick_wh)[near]
    boxes = np.concatenate([centre - wh / 2, centre + wh / 2], 1)
    boxes = np.clip(boxes, 0, [width, height, width, height]).astype(np.float32)
    keep = ((boxes[:, 2:] - boxes[:, :2]) >= 4).all(1)
    if len(gt):
        keep &= box_iou(torch.from_numpy(boxes), torch.from_numpy(gt)).amax(1).numpy() < cfg.bg_iou
    return boxes[keep][:count]


def _quotas(cfg: StreamConfig) -> tuple[int, int]:
    """(object crops, background crops) of one minibatch."""
    background = int(round(cfg.batch_size * cfg.background_fraction))
    return cfg.batch_size - background, background


def region_boxes(rng: np.random.Generator, image: SyntheticImage, cfg: StreamConfig, want_fg: int,
                 want_bg: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The crops to take of one rendered image: (pixels ``[H, W, 3]``, maybe mirrored; boxes
    ``[N, 4]`` xyxy inside the image; labels ``[N]``, 0 = background), at most ``want_fg`` object
    and ``want_bg`` background boxes."""
    pixels, gt, labels = image.pixels, image.boxes, image.labels
    height, width = pixels.shape[:2]
    if cfg.flip and rng.random() < 0.5:
        pixels = pixels[:, ::-1]
        gt = flip_boxes(gt.reshape(-1, 4), width)
    fg = np.clip(_object_boxes(rng, gt, cfg), 0, [width, height, width, height])[:want_fg]
    ratio = cfg.background_fraction / max(1e-6, 1.0 - cfg.background_fraction)
    bg = _background_boxes(rng, gt, min(want_bg, max(2, math.ceil(len(fg) * ratio))), width, height, cfg)
    boxes = np.concatenate([fg, bg]).astype(np.float32)
    return pixels, boxes, np.concatenate([labels[:len(fg)] + 1, np.zeros(len(bg), np.int64)])


def _image_crops(rng, classifier: ClassifierConfig, cfg: StreamConfig, want_fg: int,
                 want_bg: int) -> tuple[Tensor, Tensor]:
    """Render one image; warp up to ``want_fg`` object and ``want_bg`` background crops of it."""
    pixels, boxes, labels = region_boxes(rng, render_image(rng, SyntheticConfig()), cfg, want_fg, want_bg)
    padding = min((classifier.input_size - 1) // 2,
                  int(round(classifier.padding * cfg.padding_scales[rng.integers(len(cfg.padding_scales))])))
    tensor = normalize(torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1), classifier.mean, classifier.std)
    return warp_regions(tensor, torch.from_numpy(boxes), classifier.input_size, padding), torch.from_numpy(labels)


def crop_batch(seed: int, split: str, index: int, classifier: ClassifierConfig,
               cfg: StreamConfig) -> tuple[Tensor, Tensor]:
    """Minibatch ``index`` of the stream: (crops ``[B, 3, S, S]``, labels ``[B]``, 0 = background).

    The same arguments give the same crops, whichever process renders them.
    """
    rng = image_rng(seed, split, index)  # the generator's own per-index seeding
    want_fg, want_bg = _quotas(cfg)
    crops, labels = [], []
    while want_fg > 0 or want_bg > 0:
        c, t = _image_crops(rng, classifier, cfg, want_fg, want_bg)
        want_fg -= int((t > 0).sum())
        want_bg -= int((t == 0).sum())
        crops.append(c)
        labels.append(t)
    return torch.cat(crops), torch.cat(labels)


class CropStream(torch.utils.data.Dataset):
    """The stream as a map-style dataset: item ``i`` is :func:`crop_batch` ``i`` (for DataLoader workers)."""

    def __init__(self, seed: int, classifier: ClassifierConfig, cfg: StreamConfig, split: str = TRAIN_SPLIT):
        self.seed, self.classifier, self.cfg, self.split = seed, classifier, cfg, split

    def __len__(self) -> int:
        return 2 ** 31 - 1  # endless; a sampler picks the indices

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return crop_batch(self.seed, self.split, index, self.classifier, self.cfg)


def _one_thread(_worker: int) -> None:
    torch.set_num_threads(1)  # a rendering worker must not compete with the training threads


def stream_batches(stream: CropStream, start: int, stop: int, workers: int):
    """Minibatches ``start..stop-1`` in order, rendered by ``workers`` processes (0 = here)."""
    loader = torch.utils.data.DataLoader(stream, batch_size=None, sampler=range(start, stop),
                                         num_workers=workers, worker_init_fn=_one_thread,
                                         prefetch_factor=4 if workers else None)
    yield from loader


def learning_rate(cfg: PretrainConfig, iteration: int) -> float:
    """Linear warm-up over ``warmup_iters`` steps, then cosine decay to 0 at the last step."""
    total = cfg.epochs * cfg.steps_per_epoch
    if iteration < cfg.warmup_iters:
        return cfg.lr * (0.1 + 0.9 * iteration / cfg.warmup_iters)
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * min(1.0, iteration / max(1, total))))


@torch.no_grad()
def heldout_accuracy(model: RegionClassifier, crops: Tensor, labels: Tensor, chunk: int = 256) -> dict:
    """Top-1 on held-out crops: overall, objects, background, objects called background, per class."""
    model.eval()
    pred = torch.cat([model(crops[i:i + chunk]).argmax(1) for i in range(0, len(crops), chunk)])
    obj = labels > 0
    row = {"top1": float((pred == labels).float().mean()),
           "object_top1": float((pred[obj] == labels[obj]).float().mean()),
           "background_top1": float((pred[~obj] == 0).float().mean()),
           "object_called_background": float((pred[obj] == 0).float().mean())}
    for k, name in enumerate(model.classes):
        mask = labels == k + 1
        if mask.any():
            row[f"top1/{name}"] = float((pred[mask] == labels[mask]).float().mean())
    return row


def heldout_set(seed: int, classifier: ClassifierConfig, cfg: StreamConfig) -> tuple[Tensor, Tensor]:
    """The fixed held-out crops: ``heldout_batches`` minibatches of the held-out split."""
    parts = [crop_batch(seed, HELDOUT_SPLIT, i, classifier, cfg) for i in range(cfg.heldout_batches)]
    return torch.cat([c for c, _ in parts]), torch.cat([t for _, t in parts])


def pretrain_recipe(model: RegionClassifier, stream: CropStream, cfg: PretrainConfig, save, evaluate,
                    device="cpu", world: World = World(), net: torch.nn.Module | None = None
                    ) -> tuple[Recipe, torch.optim.Optimizer]:
    """The engine's recipe: global step ``i`` trains on stream minibatch ``i``.

    Under torchrun (``world`` of several ranks) every rank renders minibatch ``i`` and steps
    ``net`` (the model in DistributedDataParallel, :func:`core.distributed.ddp_model`) on its
    block of it, so the ranks together take the step one process would.
    """
    optimizer = make_optimizer(model, TrainConfig(lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay))

    def batches(state: TrainState):
        stop = (state.epoch + 1) * cfg.steps_per_epoch
        for crops, labels in stream_batches(stream, state.iteration, stop, stream.cfg.workers):
            mine = block(len(labels), world)
            yield crops[mine].to(device), labels[mine].to(device), len(labels) if world.size > 1 else None

    def step(batch, state: TrainState) -> dict[str, float]:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(cfg, state.iteration)
        return {"loss": train_step(net or model, optimizer, *batch[:2], cfg.aux_weight, batch[2])}

    # save_every: a run killed mid-epoch loses at most 50 steps (the stream resumes at any step)
    recipe = Recipe(cfg.epochs, batches, step, save, evaluate, seed=cfg.seed,
                    steps_per_epoch=cfg.steps_per_epoch, save_every=50, name="pretrain")
    return recipe, optimizer


def stream_classes() -> list[str]:
    """The K class names the stream labels ``1..K`` (the synthetic benchmark's)."""
    return list(CLASSES)


def read_pretrained(path) -> dict | None:
    """The pretraining checkpoint in ``path`` (a region-classifier checkpoint), or None if the file
    is something else (e.g. torchvision's GoogLeNet state dict).

    Raises:
        InputError: a file that is neither, or a damaged checkpoint.
    """
    from detector.checkpoint import FORMAT, read_checkpoint  # late: detector.checkpoint imports the classifier

    blob = load_weights_only(path)
    if isinstance(blob, dict) and blob.get("format") == FORMAT:
        return read_checkpoint(path)
    return None


def load_pretrained(net: Inception, blob: dict, path, classes: list[str] | None = None) -> str:
    """Start ``net`` from a pretraining checkpoint ``blob`` (:func:`read_pretrained`); returns what was loaded.

    Everything is loaded when ``classes`` equal the checkpoint's (the network starts as a complete
    region classifier); otherwise the trunk only, the class layers (``fc``, ``aux*.fc2``) staying
    new, as for a MultiBox trunk (``num_classes=0``, no aux heads).

    Raises:
        InputError: weights that do not fit ``net`` (e.g. another width), named in one line.
    """
    state = {k[len("net."):]: v for k, v in blob["model"].items() if k.startswith("net.")}
    whole = classes is not None and list(classes) == blob["classes"]
    new_layer = (lambda key: False) if whole else classifier_key
    own = net.state_dict()
    take = {k: v for k, v in state.items() if k in own and not new_layer(k)}
    problem = state_mismatch(own, take, optional=new_layer)
    if problem:
        raise InputError(f"{path}: pretrained weights do not fit this network (width {net.width}): {problem}")
    net.load_state_dict({k: v.to(own[k].dtype) for k, v in take.items()}, strict=False)
    return "whole network" if whole else "trunk"
