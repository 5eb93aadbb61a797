"""R-CNN's false-positive analysis (Hoiem, Chodpathumwan and Dai, "Diagnosing Error in Object
Detectors", ECCV 2012; R-CNN's Figures 5 and 6).

Shape letters: F false positives, K classes, X points on the plot's x axis.

Each false positive of a class (a kept, unignored detection that is not a true positive in TIDE's
matching, :mod:`eval.errors`) gets the first type that fits:

* **Loc**: IoU >= ``bg_iou`` (0.1) with an object of its own class: poor localisation
  (0.1 <= IoU < 0.5) or a duplicate of an object already detected;
* **Sim**: IoU >= 0.1 with an object of a *similar* class (same group in :class:`SimilarConfig`);
* **Oth**: IoU >= 0.1 with an object of a dissimilar class;
* **BG**: IoU < 0.1 with every object.

The plot: a class's false positives in descending score; for the top ``n`` of them, the fraction
of each type, as ``n`` grows in multiples of the class's number of positives.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.config import ConfigError
from eval.errors import ErrorConfig, Matching, TP
from eval.matching import Pairs, best_overlap

__all__ = ["FP_TYPES", "ClassGroup", "SimilarConfig", "SYNTHETIC_GROUPS", "class_groups", "HoiemResult",
           "hoiem_analysis", "fp_distribution", "MULTIPLES"]

FP_TYPES = ("Loc", "Sim", "Oth", "BG")
MULTIPLES = 2.0 ** np.arange(-3, 5.5, 0.5)  # x axis: 1/8 .. 32 times the number of positives


@dataclass(frozen=True)
class ClassGroup:
    """A group of classes that count as similar to each other."""

    name: str
    classes: list[str] = field(default_factory=list)


# The synthetic benchmark's 15 classes: drawn shapes, glyphs, and cut-outs of photographed
# objects (bench.synthetic.CLASSES).
SYNTHETIC_GROUPS = (
    ClassGroup("shapes", ["circle", "square", "triangle", "star", "cross", "ring", "hexagon", "heart",
                          "arrow", "crescent"]),
    ClassGroup("glyphs", ["letter_A", "digit_7"]),
    ClassGroup("cut-outs", ["coffee_cup", "cat_face", "horse"]),
)


@dataclass(frozen=True)
class SimilarConfig:
    """Which classes are similar (``similar:`` in ``configs/analysis.yaml``).

    ``source``: ``groups`` uses :attr:`groups` (classes named by name or by class id, e.g. a
    WNID); ``supercategory`` uses the COCO file's ``supercategory`` fields; ``auto`` takes the
    groups when they name at least one class of the dataset, else the supercategories when the
    file has them, else no class is similar to another (every confusion is Oth).
    """

    source: str = "auto"
    groups: list[ClassGroup] = field(default_factory=lambda: list(SYNTHETIC_GROUPS))

    def __post_init__(self):
        if self.source not in ("auto", "groups", "supercategory"):
            raise ConfigError(f"source: expected auto, groups or supercategory, got {self.source!r}")
        seen: dict[str, str] = {}
        for g in self.groups:
            for c in g.classes:
                if c in seen and seen[c] != g.name:
                    raise ConfigError(f"groups: class {c!r} is in both {seen[c]!r} and {g.name!r}")
                seen[c] = g.name


def class_groups(cfg: SimilarConfig, classes: list[str], class_ids: list,
                 supercategories: list[str] | None) -> tuple[np.ndarray, list[str]]:
    """``(group [K] int64, group names)``; a class no group names gets a group of its own.

    Args:
        classes: the K class names; class_ids: their ids in the source format (may be names).
        supercategories: ``[K]`` the COCO file's supercategory of each class, or None.
    """
    by_key = {}
    for g in cfg.groups:
        for c in g.classes:
            by_key[str(c)] = g.name
    named = [by_key.get(n, by_key.get(str(i))) for n, i in zip(classes, class_ids)]
    use_groups = cfg.source == "groups" or (cfg.source == "auto" and any(named))
    if not use_groups and cfg.source == "supercategory" and supercategories is None:
        raise ConfigError("similar.source: supercategory, but the ground truth has no supercategory fields")
    if not use_groups:
        named = list(supercategories) if supercategories is not None else [None] * len(classes)
    names: list[str] = []
    out = np.zeros(len(classes), np.int64)
    for k, (cls, grp) in enumerate(zip(classes, named)):
        key = grp if grp is not None else f"({cls})"
        if key not in names:
            names.append(key)
        out[k] = names.index(key)
    return out, names


@dataclass
class HoiemResult:
    """The false positives' types.

    Attributes:
        label: ``[F]`` class of each false positive, in descending score within a class.
        fp_type: ``[F]`` index into :data:`FP_TYPES`. score: ``[F]``.
        npos: ``[K]`` positives per class. group: ``[K]`` group of each class; group_names.
        row: ``[F]`` the false positive's row in the :class:`~eval.errors.Matching`.
    """

    label: np.ndarray
    fp_type: np.ndarray
    score: np.ndarray
    npos: np.ndarray
    group: np.ndarray
    group_names: list[str]
    row: np.ndarray

    def counts(self) -> np.ndarray:
        """``[K, 4]`` number of false positives of each type per class."""
        k = len(self.npos)
        return np.bincount(self.label * len(FP_TYPES) + self.fp_type, minlength=k * len(FP_TYPES)).reshape(k, -1)


def _best_iou(pairs: Pairs, mask: np.ndarray, n: int) -> np.ndarray:
    return np.maximum(best_overlap(Pairs(pairs.det[mask], pairs.gt[mask], pairs.iou[mask]), n)[1], 0.0)


def hoiem_analysis(m: Matching, gt_label: np.ndarray, npos: np.ndarray, group: np.ndarray,
                   group_names: list[str], cfg: ErrorConfig = ErrorConfig()) -> HoiemResult:
    """Type every false positive (see the module notes).

    Args:
        m: TIDE's matching (:func:`eval.errors.match_detections`).
        gt_label: ``[G]`` object classes. npos: ``[K]`` positives. group: ``[K]`` class groups.
    """
    n = len(m.label)
    fp = (m.error != TP) & ~m.ignored
    p = m.pairs
    live = fp[p.det]
    det_c, gt_c = m.label[p.det], gt_label[p.gt]
    same = det_c == gt_c
    similar = ~same & (group[det_c] == group[gt_c])
    thr = cfg.bg_iou
    loc = _best_iou(p, live & same, n) >= thr
    sim = ~loc & (_best_iou(p, live & similar, n) >= thr)
    oth = ~loc & ~sim & (_best_iou(p, live & ~same & ~similar, n) >= thr)
    kind = np.select([loc, sim, oth], [0, 1, 2], 3)
    rows = np.flatnonzero(fp)
    rows = rows[np.lexsort((rows, -m.score[rows], m.label[rows]))]
    return HoiemResult(m.label[rows], kind[rows], m.score[rows], np.asarray(npos), group, group_names, rows)


def fp_distribution(result: HoiemResult, classes: np.ndarray,
                    multiples: np.ndarray = MULTIPLES) -> tuple[np.ndarray, np.ndarray]:
    """Fractions of each type among the top-ranked false positives of ``classes``.

    For each multiple ``x``, each class contributes its top ``round(x * npos)`` false positives
    (all it has if fewer); the counts are summed over ``classes``.

    Returns:
        ``(multiples [X'], fractions [X', 4])``, the points where at least one false positive is
        counted and the counts still grow (beyond, every class has given all it has).
    """
    counts = np.zeros((len(multiples), len(FP_TYPES)))
    total_fp = 0
    for c in np.atleast_1d(classes):
        types = result.fp_type[result.label == c]
        total_fp += len(types)
        cum = np.vstack([np.zeros(len(FP_TYPES)), np.cumsum(np.eye(len(FP_TYPES))[types], axis=0)])
        take = np.minimum(np.round(multiples * result.npos[c]).astype(np.int64), len(types))
        counts += cum[take]
    n = counts.sum(axis=1)
    grows = np.concatenate(([True], n[1:] > n[:-1])) | (n < total_fp)
    keep = (n > 0) & grows
    return multiples[keep], counts[keep] / np.maximum(n[keep], 1)[:, None]
