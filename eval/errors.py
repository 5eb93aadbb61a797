"""TIDE: how many AP points each kind of detection error costs (Bolya et al., ECCV 2020).

Shape letters: D detections, G ground-truth objects, P (detection, object) pairs of one image,
K classes. Boxes are xyxy float64 in continuous pixels; IoU is COCO's (``bbIou`` in pycocotools'
``maskApi.c``: no ``+1``, 0 without overlap; a crowd region's union is the detection's area).

The definitions are those of the ``tidecv`` 1.0.1 package (``quantify.py``, ``errors/main_errors.py``,
``ap.py``), reproduced on flat arrays so that a 2M-detection set takes seconds, not hours:

* Per image, detections are taken in descending score (stable in file order), at most
  ``max_dets`` of them. Each takes the unmatched object of its class with the highest IoU (the
  first on ties) if that IoU is >= ``fg_iou``: a true positive. Crowd regions absorb unmatched
  detections of their class whose crowd-IoU is > ``fg_iou``: those leave the AP (ignored).
* Every other kept detection gets the first of these types that fits:
  **loc** (its class, ``bg_iou <= IoU <= fg_iou`` with the best object of its class),
  **cls** (IoU >= ``fg_iou`` with an object of another class), **dupe** (IoU >= ``fg_iou`` with an
  object of its class that a higher-scored detection took), **bkg** (IoU <= ``bg_iou`` with every
  object), **both** (anything else: wrong class and poorly localised).
* An object left unmatched is **miss** unless a loc or cls error points at it (it is then
  reachable by fixing that error).
* Fixing a type and recomputing AP: loc/cls errors become true positives on their object (cls
  relabelled to the object's class) when the object is free and the error is the highest-scored
  one pointing at it; every other error of the type is removed. dupe/bkg/both errors are
  removed; misses leave the count of positives. dAP = AP fixed - AP as is, at least 0.
* AP: per class, precision made monotone from the right, read at 101 recall points (COCO's
  interpolation), times 100; a class with no positives scores 0; the mean is over the classes
  that have positives or detections in that run.
* Special errors: **FalsePos** (every true positive scored 1, every false positive 0) and
  **FalseNeg** (every unmatched object found, without new detections): AP gained, not clamped.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.config import ConfigError
from core.structures import DetectionDataset, Detections
from eval.inputs import flatten_detections
from eval.matching import Pairs, best_overlap, first_claims, greedy_skip_matched, group_pairs

__all__ = ["MAIN_ERRORS", "SPECIAL_ERRORS", "ErrorConfig", "ErrorInput", "Matching", "TideErrors",
           "error_input", "match_detections", "box_iou_pairs", "ap101", "tide_analysis", "tide_errors"]

MAIN_ERRORS = ("cls", "loc", "both", "dupe", "bkg", "miss")  # TIDE's order
SPECIAL_ERRORS = ("FalsePos", "FalseNeg")
TP, IGNORED = -1, -2  # codes of Matching.error besides the indices of MAIN_ERRORS[:5]
RECALL_POINTS = np.array([x / 100 for x in range(101)])  # tidecv's x_range, COCO's recThrs


@dataclass(frozen=True)
class ErrorConfig:
    """TIDE's thresholds (``--set errors.fg_iou=0.5`` etc.)."""

    fg_iou: float = 0.5  # foreground: a match needs IoU >= this
    bg_iou: float = 0.1  # background: IoU <= this with every object
    max_dets: int = 100  # detections kept per image, best first (0 = all)

    def __post_init__(self):
        if not 0 < self.bg_iou < self.fg_iou <= 1:
            raise ConfigError(f"bg_iou, fg_iou: need 0 < bg_iou < fg_iou <= 1, got {self.bg_iou}, {self.fg_iou}")
        if self.max_dets < 0:
            raise ConfigError(f"max_dets: must be >= 0, got {self.max_dets}")


@dataclass
class ErrorInput:
    """Ground truth and detections as flat arrays.

    Attributes:
        classes: the K class names (labels index them).
        n_images: N; images are positions ``0..N-1``.
        gt_image, gt_label: ``[G]`` int64; objects of one image in file order, images in order.
        gt_boxes: ``[G, 4]`` float64 xyxy. gt_crowd: ``[G]`` bool (COCO crowd regions).
        det_image, det_label: ``[D]`` int64 in file order (the tie-break order).
        det_score: ``[D]`` float64. det_boxes: ``[D, 4]`` float64 xyxy.
    """

    classes: list[str]
    n_images: int
    gt_image: np.ndarray
    gt_label: np.ndarray
    gt_boxes: np.ndarray
    gt_crowd: np.ndarray
    det_image: np.ndarray
    det_label: np.ndarray
    det_score: np.ndarray
    det_boxes: np.ndarray


def error_input(dataset: DetectionDataset, dets: dict[int, Detections]) -> ErrorInput:
    """Flat arrays of an in-memory dataset and its detections (``{image_id: Detections}``).

    Raises:
        InputError: detections for an image id the dataset lacks, or a label outside ``0..K-1``.
    """
    counts = [len(img.labels) for img in dataset.images]
    flat = flatten_detections(dataset, dets)
    cat = (lambda parts, empty: np.concatenate(parts) if parts else empty)
    return ErrorInput(
        classes=list(dataset.classes), n_images=len(dataset.images),
        gt_image=np.repeat(np.arange(len(counts), dtype=np.int64), counts),
        gt_label=cat([img.labels for img in dataset.images], np.zeros(0)).astype(np.int64),
        gt_boxes=cat([img.boxes for img in dataset.images], np.zeros((0, 4))).astype(np.float64).reshape(-1, 4),
        gt_crowd=cat([img.iscrowd for img in dataset.images], np.zeros(0)).astype(bool),
        det_image=flat.pos, det_label=flat.labels, det_score=flat.scores, det_boxes=flat.boxes)


def box_iou_pairs(a: np.ndarray, b: np.ndarray, crowd: bool = False) -> np.ndarray:
    """COCO's IoU of row-aligned boxes ``a [P, 4]`` and ``b [P, 4]`` (xyxy): ``[P]`` float64.

    As ``bbIou``: intersection 0 unless both sides are positive; with ``crowd`` the union is the
    area of ``a`` (the detection) alone.
    """
    iw = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0])
    ih = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1])
    hit = (iw > 0) & (ih > 0)
    inter = np.where(hit, iw * ih, 0.0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    union = area_a if crowd else area_a + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(hit, inter / np.where(hit, union, 1.0), 0.0)


def _processing_order(inp: ErrorInput, max_dets: int) -> np.ndarray:
    """Input indices of the kept detections: by image, descending score, file order; the first
    ``max_dets`` of each image (all when 0)."""
    order = np.lexsort((np.arange(len(inp.det_score)), -inp.det_score, inp.det_image))
    if max_dets and len(order):
        img = inp.det_image[order]
        rank = np.arange(len(order)) - np.searchsorted(img, img, side="left")
        order = order[rank < max_dets]
    return order


@dataclass
class Matching:
    """Every kept detection's fate, in processing order (index ``i`` = ``order[i]`` of the input).

    Attributes:
        order: ``[D']`` input index of each kept detection.
        image, label, score, boxes: the kept detections' fields.
        matched: ``[D']`` object index of a true positive, else -1.
        error: ``[D']`` :data:`TP`, or the index in :data:`MAIN_ERRORS` of the detection's type
            (ignored detections are typed too). ignored: ``[D']`` bool (absorbed by a crowd region).
        target: ``[D']`` the object a loc/cls error points at, else -1.
        fixable: ``[D']`` bool: loc/cls errors whose fix makes them a true positive.
        gt_real: ``[G]`` bool, not a crowd region. gt_used: ``[G]`` matched. gt_miss: ``[G]`` miss.
        pairs: the non-crowd (detection, object) pairs of each image with their IoU.
    """

    order: np.ndarray
    image: np.ndarray
    label: np.ndarray
    score: np.ndarray
    boxes: np.ndarray
    matched: np.ndarray
    error: np.ndarray
    ignored: np.ndarray
    target: np.ndarray
    fixable: np.ndarray
    gt_real: np.ndarray
    gt_used: np.ndarray
    gt_miss: np.ndarray
    pairs: Pairs


def _pairs(det_image: np.ndarray, det_boxes: np.ndarray, gt_image: np.ndarray, gt_boxes: np.ndarray,
           gt_index: np.ndarray, crowd: bool = False) -> Pairs:
    """Pairs of detections with the objects ``gt_index`` of their image (indices into all G)."""
    d, g = group_pairs(det_image, gt_image[gt_index])
    g = gt_index[g]
    return Pairs(d, g, box_iou_pairs(det_boxes[d], gt_boxes[g], crowd))


def _best(pairs: Pairs, mask: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per detection, the first object with the highest IoU among the masked pairs, and that
    IoU (-1 and 0 where there is none)."""
    gt, iou = best_overlap(Pairs(pairs.det[mask], pairs.gt[mask], pairs.iou[mask]), n)
    return gt, np.maximum(iou, 0.0)


def _crowd_ignored(inp: ErrorInput, m_image, m_label, m_boxes, unmatched, fg: float) -> np.ndarray:
    """``[D']`` unmatched detections that a crowd region of their class absorbs (crowd-IoU > fg)."""
    crowd = np.flatnonzero(inp.gt_crowd)
    if not len(crowd):
        return np.zeros(len(m_image), bool)
    k = len(inp.classes)
    p = _pairs(m_image * k + m_label, m_boxes, inp.gt_image * k + inp.gt_label, inp.gt_boxes, crowd, crowd=True)
    hit = np.zeros(len(m_image), bool)
    hit[p.det[p.iou > fg]] = True
    return hit & unmatched


def _error_types(pairs: Pairs, label: np.ndarray, gt_label: np.ndarray, gt_used: np.ndarray,
                 unmatched: np.ndarray, cfg: ErrorConfig) -> tuple[np.ndarray, np.ndarray]:
    """TIDE's tests in its order for the unmatched detections: ``(error [D'], target [D'])``."""
    n = len(label)
    live = unmatched[pairs.det]
    same = label[pairs.det] == gt_label[pairs.gt]
    loc_gt, loc_iou = _best(pairs, live & same, n)
    cls_gt, cls_iou = _best(pairs, live & ~same, n)
    _, dupe_iou = _best(pairs, live & same & gt_used[pairs.gt], n)
    _, any_iou = _best(pairs, live, n)
    error = np.full(n, TP, np.int64)
    target = np.full(n, -1, np.int64)
    rest = unmatched.copy()
    for name, hit, tgt in (("loc", (cfg.bg_iou <= loc_iou) & (loc_iou <= cfg.fg_iou), loc_gt),
                           ("cls", cls_iou >= cfg.fg_iou, cls_gt),
                           ("dupe", dupe_iou >= cfg.fg_iou, None),
                           ("bkg", any_iou <= cfg.bg_iou, None),
                           ("both", np.ones(n, bool), None)):
        now = rest & hit
        error[now] = MAIN_ERRORS.index(name)
        if tgt is not None:
            target[now] = tgt[now]
        rest &= ~now
    return error, target


def match_detections(inp: ErrorInput, cfg: ErrorConfig = ErrorConfig()) -> Matching:
    """TIDE's matching and error types (see the module notes)."""
    order = _processing_order(inp, cfg.max_dets)
    image, label = inp.det_image[order], inp.det_label[order]
    score, boxes = inp.det_score[order], inp.det_boxes[order]
    real = ~inp.gt_crowd
    pairs = _pairs(image, boxes, inp.gt_image, inp.gt_boxes, np.flatnonzero(real))
    same = label[pairs.det] == inp.gt_label[pairs.gt]
    k = len(inp.classes)
    matched = greedy_skip_matched(pairs, same & (pairs.iou >= cfg.fg_iou), image * k + label, len(real))
    gt_used = np.zeros(len(real), bool)
    gt_used[matched[matched >= 0]] = True
    unmatched = matched < 0
    ignored = _crowd_ignored(inp, image, label, boxes, unmatched, cfg.fg_iou)
    error, target = _error_types(pairs, label, inp.gt_label, gt_used, unmatched, cfg)
    # tidecv's BestGTMatch: among the loc/cls errors pointing at a free object, the first
    # (= highest-scored, detections being in descending score) is the one a fix turns positive
    pointing = target >= 0
    pointing[pointing] = ~gt_used[target[pointing]]
    fixable = first_claims(target, pointing)
    usable = np.zeros(len(real), bool)
    usable[target[pointing]] = True
    return Matching(order, image, label, score, boxes, matched, error, ignored, target, fixable,
                    real, gt_used, real & ~gt_used & ~usable, pairs)


def ap101(tp: np.ndarray, npos: int) -> tuple[float, np.ndarray]:
    """TIDE's (COCO's) AP of one class in points, and its precision at :data:`RECALL_POINTS`.

    Args:
        tp: ``[n]`` bool, the class's detections in ranking order.
        npos: number of positives (0 gives AP 0).
    """
    if npos == 0 or not len(tp):
        return 0.0, np.zeros(len(RECALL_POINTS))
    tp_c = np.cumsum(tp, dtype=np.float64)
    precision = np.maximum.accumulate((tp_c / np.arange(1, len(tp) + 1))[::-1])[::-1]
    idx = np.searchsorted(tp_c / npos, RECALL_POINTS, side="left")
    y = np.where(idx < len(tp), precision[np.minimum(idx, len(tp) - 1)], 0.0)
    return float(y.sum() / len(y) * 100), y


@dataclass
class _Run:
    """One AP computation: points (class, score, true?, tie-break) and positives per class."""

    label: np.ndarray
    score: np.ndarray
    tp: np.ndarray
    tie: np.ndarray
    npos: np.ndarray
    classes: np.ndarray  # [K] bool: the classes the run knows (tidecv's ap_data keys)


def _run_aps(run: _Run) -> tuple[np.ndarray, np.ndarray]:
    """Per class AP ``[K]`` (NaN for a class the mean skips) and precision ``[K, 101]``."""
    k = len(run.npos)
    order = np.lexsort((run.tie, -run.score, run.label))
    label, tp = run.label[order], run.tp[order]
    bounds = np.searchsorted(label, np.arange(k + 1))
    ap = np.full(k, np.nan)
    curves = np.zeros((k, len(RECALL_POINTS)))
    for c in range(k):
        rows = slice(bounds[c], bounds[c + 1])
        if bounds[c + 1] > bounds[c] or run.npos[c] > 0:
            ap[c], curves[c] = ap101(tp[rows], int(run.npos[c]))
    return ap, curves


def _map(ap: np.ndarray) -> float:
    finite = ap[~np.isnan(ap)]
    return float(finite.mean()) if len(finite) else 0.0


@dataclass
class TideErrors:
    """TIDE's numbers, AP points 0-100.

    Attributes:
        ap50: mAP at IoU ``fg_iou`` as TIDE computes it.
        dap: ``{type: dAP}`` for :data:`MAIN_ERRORS` (each fixed alone, clamped at 0).
        special: ``{"FalsePos": dAP, "FalseNeg": dAP}``.
        classes: K names. class_ap: ``[K]`` AP (NaN: a class with neither objects nor detections).
        class_dap: ``{type: [K]}`` per-class AP change when that type is fixed (NaN where undefined).
        counts: ``{type: [K]}`` number of errors per class (miss by the object's class).
        npos: ``[K]`` positives. precision: ``[K, 101]`` interpolated precision at recall 0..1.
        matching: the detections' fates (for the false-positive analysis and galleries).
    """

    ap50: float
    dap: dict
    special: dict
    classes: list[str]
    class_ap: np.ndarray
    class_dap: dict
    counts: dict
    npos: np.ndarray
    precision: np.ndarray
    matching: Matching = field(repr=False)

    def to_json(self) -> dict:
        """``{"AP50", "dAP": {type: float}, "special": {...}, "per_class": {name: {...}}}``; NaN as None."""
        from eval.report import to_json_value
        per_class = {}
        for c, name in enumerate(self.classes):
            per_class[name] = {"AP50": self.class_ap[c], "positives": int(self.npos[c]),
                               "dAP": {t: self.class_dap[t][c] for t in MAIN_ERRORS},
                               "errors": {t: int(self.counts[t][c]) for t in MAIN_ERRORS}}
        return to_json_value({"AP50": self.ap50, "dAP": self.dap, "special": self.special,
                              "per_class": per_class})


def _base_run(m: Matching, gt_label: np.ndarray, k: int) -> _Run:
    """The detections as they are (ignored ones left out), ranked ties in processing order."""
    keep = ~m.ignored
    npos = np.bincount(gt_label[m.gt_real], minlength=k)
    classes = npos > 0
    classes[m.label[keep]] = True
    return _Run(m.label[keep], m.score[keep], m.matched[keep] >= 0, np.flatnonzero(keep), npos, classes)


def _fixed_run(m: Matching, base: _Run, gt_label: np.ndarray, kind: str) -> _Run:
    """tidecv's ``fix_errors`` for one main type: error points first, then the true positives."""
    k = len(base.npos)
    is_err = m.error >= 0
    this = m.error == MAIN_ERRORS.index(kind) if kind != "miss" else np.zeros(len(m.error), bool)
    fixed_tp = this & m.fixable  # only loc/cls errors are fixable
    keep_fp = is_err & ~this & ~m.ignored
    rows = np.flatnonzero(keep_fp | fixed_tp | (m.matched >= 0))
    label = m.label[rows].copy()
    relabel = fixed_tp[rows] & (m.error[rows] == MAIN_ERRORS.index("cls"))
    label[relabel] = gt_label[m.target[rows][relabel]]
    tp = (m.matched[rows] >= 0) | fixed_tp[rows]
    group = (m.matched[rows] >= 0).astype(np.int64)  # tidecv pushes the errors before the positives
    npos = base.npos.copy()
    if kind == "miss":
        npos -= np.bincount(gt_label[m.gt_miss], minlength=k)
    return _Run(label, m.score[rows], tp, group * len(m.label) + rows, npos, base.classes)


def _special_runs(m: Matching, base: _Run, gt_label: np.ndarray) -> dict:
    """FalsePos (positives scored 1, the rest 0) and FalseNeg (positives = true positives)."""
    k = len(base.npos)
    group = base.tp.astype(np.int64) * len(m.label) + base.tie
    false_pos = _Run(base.label, base.tp.astype(np.float64), base.tp, group, base.npos, base.classes)
    unmatched = m.gt_real & ~m.gt_used
    npos = base.npos - np.bincount(gt_label[unmatched], minlength=k)
    false_neg = _Run(base.label, base.score, base.tp, group, npos, base.classes)
    return {"FalsePos": false_pos, "FalseNeg": false_neg}


def _mask_empty(ap: np.ndarray, run: _Run) -> np.ndarray:
    """NaN for classes the run does not know, or that have neither points nor positives."""
    has_points = np.bincount(run.label, minlength=len(ap)) > 0
    return np.where(run.classes & (has_points | (run.npos > 0)), ap, np.nan)


def _counts(m: Matching, gt_label: np.ndarray, k: int) -> dict:
    out = {t: np.bincount(m.label[m.error == i], minlength=k) for i, t in enumerate(MAIN_ERRORS[:5])}
    out["miss"] = np.bincount(gt_label[m.gt_miss], minlength=k)
    return out


def tide_analysis(inp: ErrorInput, cfg: ErrorConfig = ErrorConfig()) -> TideErrors:
    """TIDE's main and special errors, overall and per class, from flat arrays."""
    k = len(inp.classes)
    m = match_detections(inp, cfg)
    base = _base_run(m, inp.gt_label, k)
    base_ap, precision = _run_aps(base)
    base_ap = _mask_empty(base_ap, base)
    ap50 = _map(base_ap)
    dap, class_dap = {}, {}
    for kind in MAIN_ERRORS:
        run = _fixed_run(m, base, inp.gt_label, kind)
        ap = _mask_empty(_run_aps(run)[0], run)
        dap[kind] = max(_map(ap) - ap50, 0.0)
        class_dap[kind] = ap - base_ap
    special = {}
    for name, run in _special_runs(m, base, inp.gt_label).items():
        special[name] = _map(_mask_empty(_run_aps(run)[0], run)) - ap50
    return TideErrors(ap50, dap, special, list(inp.classes), base_ap, class_dap, _counts(m, inp.gt_label, k),
                      base.npos, precision, m)


def tide_errors(dataset: DetectionDataset, dets: dict[int, Detections],
                cfg: ErrorConfig = ErrorConfig()) -> TideErrors:
    """TIDE's errors of in-memory detections (``{image_id: Detections}``, xyxy) on ``dataset``.

    Example: ``e = tide_errors(dataset, dets); e.ap50, e.dap["cls"], e.special["FalseNeg"]``.
    """
    return tide_analysis(error_input(dataset, dets), cfg)
