"""Configuration of the detector's stages: frozen dataclasses with commented defaults.

``ClassifierConfig`` fixes a region classifier's architecture and preprocessing (it is saved inside
every checkpoint, so a checkpoint rebuilds its own network). ``SamplerConfig`` and ``TrainConfig``
drive ``tools/train.py``; ``DetectorConfig`` drives ``detect()``. ``member_variant`` derives the
six ensemble members' differences from the member index (GLN §7: same topology, different
sampling and input order).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from core.config import AT_LEAST_ONE, COUNT, FRACTION, IOU, POSITIVE, ConfigError, Range, check_ranges
from nets.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from proposals.build import METHODS, ProposalsConfig


@dataclass(frozen=True)
class ClassifierConfig:
    width: float = 0.25  # Inception width multiplier (1.0 = GoogLeNet; small so it trains on a CPU)
    input_size: int = 64  # S: regions are warped to S x S (GLN's 224 is far too slow on a CPU)
    padding: int = 5  # p: context pixels around the box in the warped frame (R-CNN: 16 of 227 = 7%)
    dropout: float = 0.4  # before the last linear layer (GLN)
    aux_logits: bool = True  # auxiliary classifiers on 4a and 4d, trained with weight 0.3 (GLN)
    mean: tuple[float, float, float] = IMAGENET_MEAN  # RGB, 0..1 scale: x = (pixels/255 - mean)/std
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self):
        check_ranges(self, width=POSITIVE, input_size=Range(16), padding=COUNT, dropout=Range(0, 1, hi_open=True),
                     mean=FRACTION, std=POSITIVE)
        if self.padding > (self.input_size - 1) // 2:  # the box itself must keep at least one pixel
            raise ConfigError(f"padding: {self.padding} is out of range (0 <= value <= "
                              f"{(self.input_size - 1) // 2} for input_size {self.input_size})")


@dataclass(frozen=True)
class SamplerConfig:
    batch_size: int = 128  # regions per minibatch (R-CNN)
    fg_fraction: float = 0.25  # 32 of 128 foreground (R-CNN)
    fg_iou: float = 0.5  # foreground: IoU >= 0.5 with a GT box, labelled with that box's class
    bg_iou_hi: float = 0.5  # background: bg_iou_lo <= IoU < bg_iou_hi
    bg_iou_lo: float = 0.0  # R-CNN used 0 (every proposal); Fast R-CNN 0.1 (harder negatives)
    images_per_batch: int = 8  # each minibatch samples its regions from this many images
    flip: bool = True  # horizontal flips, probability 0.5 per image
    jitter: float = 0.0  # crop jitter (see detector.warp.jitter_boxes); members vary it
    max_proposals: int = 0  # use the top N cached proposals per image (0 = all)
    hard_fraction: float = 0.0  # share of the background slots drawn from mined hard negatives
    # (data.hard_negatives; detector.hard_negatives), where a minibatch's images have any

    def __post_init__(self):
        check_ranges(self, batch_size=AT_LEAST_ONE, fg_fraction=FRACTION, fg_iou=IOU, bg_iou_hi=FRACTION,
                     bg_iou_lo=FRACTION, images_per_batch=AT_LEAST_ONE, jitter=Range(0, 1, hi_open=True),
                     max_proposals=COUNT, hard_fraction=FRACTION)
        if self.bg_iou_lo > self.bg_iou_hi:
            raise ConfigError(f"bg_iou_lo: {self.bg_iou_lo} is out of range (0 <= value <= bg_iou_hi "
                              f"{self.bg_iou_hi})")


DTYPES = ("float32", "bfloat16")  # TrainConfig.dtype, DetectorConfig.dtype


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 4  # fine-tuning the pretrained network (tools/pretrain.py); from scratch 12 paid (README)
    lr: float = 0.003  # SGD; 0.003 beat 0.01 from the pretrained network on val (README); scratch: 0.01
    momentum: float = 0.9  # GLN, R-CNN
    weight_decay: float = 0.0005  # R-CNN fine-tuning
    lr_steps: tuple[int, ...] = (3,)  # epochs after which the rate is multiplied by lr_gamma
    lr_gamma: float = 0.1  # R-CNN's step policy
    warmup_iters: int = 50  # linear warm-up from lr/10: SGD from scratch diverges less
    aux_weight: float = 0.3  # GLN: auxiliary losses added with weight 0.3
    seed: int = 0  # member I uses seed + 1000 * I
    val_images: int = 50  # val images for the per-epoch val loss and mAP (0 = all, -1 = skip)
    val_batches: int = 20  # val minibatches for the val loss (fixed seed, same every epoch)
    cache_images: bool = True  # keep decoded training images in memory
    bbox_regression: bool = False  # fit R-CNN's box regressors after the last epoch (~3 CPU-minutes;
    # detection uses them only with detector.bbox_regression)
    ohem_bg: int = 0  # online hard-example mining: only the N background regions of a minibatch with the
    # highest loss count in it, with every object region (0 = all count: R-CNN's fine-tuning)
    dtype: str = "float32"  # or bfloat16: the training forward under autocast (AVX-512 BF16 CPUs, CUDA)

    def __post_init__(self):
        check_ranges(self, epochs=AT_LEAST_ONE, lr=POSITIVE, momentum=Range(0, 1, hi_open=True),
                     weight_decay=COUNT, lr_steps=AT_LEAST_ONE, lr_gamma=Range(0, 1, lo_open=True),
                     warmup_iters=COUNT, aux_weight=COUNT, seed=COUNT, val_images=Range(-1),
                     val_batches=AT_LEAST_ONE, ohem_bg=COUNT, dtype=DTYPES)


@dataclass(frozen=True)
class BBoxRegressionConfig:
    min_iou: float = 0.6  # proposals with IoU > 0.6 to their best GT train the regressor (R-CNN)
    ridge_lambda: float = 10.0  # R-CNN chose 1000 on validation for 9216-d pool5; 1-10 fit our 2x2 5b features (tests)
    max_per_class: int = 2000  # cap on training pairs per class
    images: int = 0  # training images used (0 = all)

    def __post_init__(self):
        check_ranges(self, min_iou=IOU, ridge_lambda=COUNT, max_per_class=AT_LEAST_ONE, images=COUNT)


@dataclass(frozen=True)
class DetectorConfig:
    proposal_method: str = "merged"  # proposals.build.build_proposer: ss, ss2x, multibox, merged (GLN)
    max_proposals: int = 0  # keep the top N proposals (0 = all)
    score_threshold: float = 0.05  # drop (box, class) pairs below this probability
    nms_iou: float = 0.3  # per-class NMS (R-CNN's value in its code)
    pre_nms_per_class: int = 100  # R-CNN keeps at most 100 boxes per class before NMS
    top_k: int = 100  # detections per image
    # regions per forward pass at most (memory: 256 x 3 x S^2 floats); from 16 up, batches are
    # multiples of 16 (detector.ensemble.BATCH_MULTIPLE), evened out over the image's regions
    batch_regions: int = 256
    bbox_regression: bool = False  # apply the members' box regressors (if they have one)
    dtype: str = "float32"  # the networks' compute dtype: float32, or bfloat16 (autocast; AVX-512 BF16 CPUs, CUDA)
    cascade_top: int = 0  # cascade: member 0 scores every region, the others only its top N (0 = off)
    streams: int = 0  # batches classified side by side, one torch thread each (0: one per torch thread on CPU)

    def __post_init__(self):
        check_ranges(self, proposal_method=METHODS, max_proposals=COUNT, score_threshold=FRACTION,
                     nms_iou=IOU, pre_nms_per_class=AT_LEAST_ONE, top_k=AT_LEAST_ONE, batch_regions=AT_LEAST_ONE,
                     dtype=DTYPES, cascade_top=COUNT, streams=COUNT)
        if self.cascade_top and self.bbox_regression:
            raise ConfigError("cascade_top: not available with bbox_regression (members 1.. see few regions)")


# The six members differ as GLN's did (§1.4, §7): seed and image order, and the sampling of
# crops: some see tighter context (smaller relative crops), some wider, some jittered crops.
_PADDING_SCALE = (1.0, 0.6, 1.4, 1.0, 0.6, 1.4)
_JITTER = (0.0, 0.0, 0.0, 0.1, 0.1, 0.1)


def member_variant(member: int, classifier: ClassifierConfig, sampler: SamplerConfig,
                   train: TrainConfig) -> tuple[ClassifierConfig, SamplerConfig, TrainConfig]:
    """The configs of ensemble member ``member`` (0..5, or any index ≥ 0, cycling).

    Member 0 keeps the configured values. Every member gets its own seed (so its own init and
    image order); padding is scaled by (1, 0.6, 1.4, 1, 0.6, 1.4) and crop jitter is added
    (0, 0, 0, 0.1, 0.1, 0.1) on top of the configured jitter.
    """
    if member < 0:
        raise ValueError(f"member must be >= 0, got {member}")
    i = member % len(_PADDING_SCALE)
    max_pad = (classifier.input_size - 1) // 2
    padding = min(max_pad, int(round(classifier.padding * _PADDING_SCALE[i])))
    return (dataclasses.replace(classifier, padding=padding),
            dataclasses.replace(sampler, jitter=sampler.jitter + _JITTER[i]),
            dataclasses.replace(train, seed=train.seed + 1000 * member))


@dataclass(frozen=True)
class DetectSchema:
    """The ``--config/--set`` schema of tools/detect.py and tools/test.py."""

    detector: DetectorConfig = DetectorConfig()
    proposals: ProposalsConfig = dataclasses.field(default_factory=ProposalsConfig)  # proposals.yaml sections
