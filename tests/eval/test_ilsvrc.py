"""The ILSVRC devkit's rules, hand-worked case by case, plus a loop-for-loop reference oracle.

Boxes in these tests are the devkit's 0-based inclusive pixels unless said otherwise.
"""
import numpy as np
import pytest

from core.boxes import ilsvrc_to_xyxy
from core.errors import InputError
from core.formats.ilsvrc import Submission, Synset
from core.structures import DetectionDataset, ImageAnnotations
from eval.ap import Curve, voc_ap
from eval.ilsvrc import evaluate_ilsvrc, evaluate_submission, object_thresholds
from eval.matching import inclusive_iou


def ilsvrc_dataset(images: list[list[tuple[int, list[float]]]], classes=("A", "B", "C")) -> DetectionDataset:
    """A dataset from per-image ``[(label, [xmin, ymin, xmax, ymax]), ...]`` (0-based inclusive).

    Image ``i`` (0-based) gets ``image_id = i + 1`` (its devkit index); WNIDs ``n0000000k``.
    """
    anns = []
    for i, objects in enumerate(images):
        boxes = ilsvrc_to_xyxy([b for _, b in objects]) if objects else np.zeros((0, 4))
        anns.append(ImageAnnotations(i + 1, f"img{i + 1}.JPEG", 500, 400, boxes, [k for k, _ in objects]))
    return DetectionDataset(classes=list(classes), images=anns,
                            class_ids=[f"n{k + 1:08d}" for k in range(len(classes))])


def run(dataset, rows, blacklist=None):
    """Evaluate submission rows ``(image index, label, score, [xmin, ymin, xmax, ymax])`` in line order."""
    if not rows:
        return evaluate_ilsvrc(dataset, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0),
                               np.zeros((0, 4)), blacklist=blacklist)
    idx, lab, score, box = zip(*rows)
    return evaluate_ilsvrc(dataset, np.array(idx), np.array(lab), np.array(score, float), np.array(box, float),
                           line=np.arange(1, len(rows) + 1), blacklist=blacklist)


def test_small_object_threshold_formula():
    # thr = min(0.5, w*h / ((w+10)(h+10))), w = xmax - xmin + 1
    boxes = np.array([[0, 0, 9, 9], [0, 0, 19, 19], [0, 0, 9, 39], [0, 0, 24, 24], [0, 0, 99, 99]], float)
    np.testing.assert_allclose(object_thresholds(boxes), [100 / 400, 400 / 900, 400 / 1000, 0.5, 0.5])


def test_small_object_matches_at_its_own_threshold():
    ds = ilsvrc_dataset([[(0, [0, 0, 9, 9])]])  # 10x10 object: thr = 0.25
    # [0,0,19,19]: inter 100, union 400 -> IoU 0.25 == thr: a match; one pixel wider: 100/420 < 0.25
    assert run(ds, [(1, 0, 0.9, [0, 0, 19, 19])]).ap[0] == 1.0
    assert run(ds, [(1, 0, 0.9, [0, 0, 20, 19])]).ap[0] == 0.0


def test_iou_equal_to_threshold_matches_with_plus_one_pixels():
    ds = ilsvrc_dataset([[(0, [0, 0, 99, 99])]])
    # +1 widths: inter 100*50, union 100*100 -> exactly 0.5 (continuous raw numbers would give 0.495)
    assert run(ds, [(1, 0, 0.9, [0, 0, 99, 49])]).ap[0] == 1.0
    assert run(ds, [(1, 0, 0.9, [0, 0, 99, 48])]).ap[0] == 0.0


def test_inclusive_iou_plus_one_convention():
    a = np.array([[0, 0, 9, 9], [0, 0, 0, 0], [0, 0, 9, 9], [0, 0, 9, 9]], float)
    b = np.array([[5, 0, 14, 9], [0, 0, 0, 0], [10, 0, 19, 9], [9, 0, 18, 9]], float)
    iou = inclusive_iou(a, b, np.arange(4), np.arange(4))
    np.testing.assert_allclose(iou[:2], [50 / 150, 1.0])
    assert iou[2] == -np.inf  # touching boxes: iw = 0, no overlap in the devkit's test
    assert iou[3] == pytest.approx(10 / 190)  # one shared pixel column


def test_detected_object_is_skipped_not_hit():
    # two overlapping objects of class A; a duplicate on the first takes the second (IoU 0.818)
    ds = ilsvrc_dataset([[(0, [0, 0, 99, 99]), (0, [10, 0, 109, 99])]])
    rows = [(1, 0, 0.9, [0, 0, 99, 99]), (1, 0, 0.8, [0, 0, 99, 99]), (1, 0, 0.7, [0, 0, 99, 99])]
    res = run(ds, rows)
    np.testing.assert_allclose(res.curves[0].recall, [0.5, 1.0, 1.0])  # TP, TP, then FP (both taken)
    np.testing.assert_allclose(res.curves[0].precision, [1.0, 1.0, 2 / 3])
    assert res.ap[0] == 1.0


def test_best_free_object_wins_over_a_taken_better_one():
    # det 2 overlaps object 1 (taken) best, object 2 (free) at 0.6: it takes object 2
    ds = ilsvrc_dataset([[(0, [0, 0, 99, 99]), (0, [40, 0, 139, 99])]])
    rows = [(1, 0, 0.9, [0, 0, 99, 99]), (1, 0, 0.8, [20, 0, 119, 99])]
    assert run(ds, rows).ap[0] == 1.0


def test_other_class_objects_are_not_matched():
    ds = ilsvrc_dataset([[(1, [0, 0, 99, 99]), (0, [200, 200, 299, 299])]])
    res = run(ds, [(1, 0, 0.9, [0, 0, 99, 99])])  # class A detection on the class B object
    assert res.ap[0] == 0.0 and res.ap[1] == 0.0


def test_blacklist_ignores_detections_and_positives_and_nan_envelope():
    ds = ilsvrc_dataset([[(0, [0, 0, 99, 99])], [(0, [0, 0, 99, 99])]])
    rows = [(1, 0, 0.95, [300, 300, 350, 350]), (1, 0, 0.9, [0, 0, 99, 99]), (2, 0, 0.5, [0, 0, 99, 99])]
    # no blacklist: FP, TP, TP over 2 positives -> precision 0, 1/2, 2/3 -> AP = 2/3
    assert run(ds, rows).ap[0] == pytest.approx(2 / 3)
    # image 1 blacklisted for class A: its object leaves npos, its detections are neither TP nor FP.
    # They stay in the curve as 0/0 = NaN precision rows, which MATLAB's max() skips: AP 1, not NaN.
    res = run(ds, rows, blacklist=[(1, "n00000001")])
    assert res.npos[0] == 1 and res.counts["blacklisted"] == 2
    assert np.isnan(res.curves[0].precision[:2]).all()
    assert res.ap[0] == 1.0


def test_blacklist_unknown_wnid_is_an_error_and_unlisted_image_has_no_effect():
    ds = ilsvrc_dataset([[(0, [0, 0, 99, 99])]])
    with pytest.raises(InputError, match="unknown WNID 'n99999999'"):
        run(ds, [], blacklist=[(1, "n99999999")])
    assert run(ds, [(1, 0, 0.9, [0, 0, 99, 99])], blacklist=[(7, "n00000001")]).ap[0] == 1.0


def test_envelope_ignores_nan_like_matlab_max():
    assert voc_ap(Curve(np.array([0.0, 1.0]), np.array([np.nan, 1.0]))) == 1.0
    assert voc_ap(Curve(np.array([0.5, 0.5, 1.0]), np.array([1.0, np.nan, 0.5]))) == pytest.approx(0.75)


def test_ties_ordered_by_image_index_then_line():
    # equal scores: the FP on image 1 comes before the TP on image 2, although its line is later
    ds = ilsvrc_dataset([[], [(0, [0, 0, 99, 99])]])
    rows = [(2, 0, 0.5, [0, 0, 99, 99]), (1, 0, 0.5, [0, 0, 99, 99])]
    res = run(ds, rows)
    np.testing.assert_allclose(res.curves[0].precision, [0.0, 0.5])
    assert res.ap[0] == 0.5
    # same image: line order decides which of two equal-score detections takes the object
    ds = ilsvrc_dataset([[(0, [0, 0, 99, 99])]])
    rows = [(1, 0, 0.5, [0, 0, 99, 49]), (1, 0, 0.5, [0, 0, 99, 99]), (1, 0, 0.4, [0, 0, 99, 99])]
    np.testing.assert_allclose(run(ds, rows).curves[0].precision, [1.0, 0.5, 1 / 3])


def test_classes_scored_and_nan_for_a_class_without_positives():
    # objects of A and C: classes 1..3 scored; B has no positives: AP 0 without detections ...
    ds = ilsvrc_dataset([[(0, [0, 0, 99, 99]), (2, [0, 0, 49, 49])]])
    res = run(ds, [(1, 0, 0.9, [0, 0, 99, 99])])
    assert res.classes == ["A", "B", "C"] and res.ap.tolist() == [1.0, 0.0, 0.0]
    # ... and NaN (0/0 recall) with any; the reported mean skips it, the devkit's would be NaN
    res = run(ds, [(1, 0, 0.9, [0, 0, 99, 99]), (1, 1, 0.8, [0, 0, 9, 9])])
    assert np.isnan(res.ap[1]) and res.mean_ap == 0.5
    # only A has objects: B and C are not scored (the devkit scores 1..largest class with a box)
    ds = ilsvrc_dataset([[(0, [0, 0, 99, 99])]])
    res = run(ds, [(1, 2, 0.9, [0, 0, 99, 99])])
    assert res.classes == ["A"] and res.counts["class_not_scored"] == 1


def test_classes_without_positives_but_with_detections_are_counted_and_warned(caplog):
    """Detections on a class without objects turn its AP from 0 to NaN, which raises the mean
    (the devkit's rule, kept): the report counts such classes and the warning names them."""
    ds = ilsvrc_dataset([[(0, [0, 0, 99, 99]), (2, [0, 0, 49, 49])]])
    res = run(ds, [(1, 0, 0.9, [0, 0, 99, 99])])
    assert res.counts["classes_without_positives"] == 1 and res.counts["classes_without_positives_detected"] == 0
    assert "no ground truth" not in caplog.text
    res = run(ds, [(1, 0, 0.9, [0, 0, 99, 99]), (1, 1, 0.01, [0, 0, 9, 9])])
    assert res.counts["classes_without_positives_detected"] == 1 and res.mean_ap == 0.5  # devkit parity
    assert "1 classes have detections but no ground truth (B)" in caplog.text


def test_unlisted_images_are_ignored_and_counted():
    ds = ilsvrc_dataset([[(0, [0, 0, 99, 99])]])
    res = run(ds, [(5, 0, 0.99, [0, 0, 99, 99]), (1, 0, 0.9, [0, 0, 99, 99])])
    assert res.counts["unlisted_image"] == 1 and res.ap[0] == 1.0


def test_unknown_det_id_names_file_and_line():
    ds = ilsvrc_dataset([[(0, [0, 0, 99, 99])]])
    synsets = [Synset(k + 1, f"n{k + 1:08d}", n) for k, n in enumerate(ds.classes)]
    sub = Submission(np.array([1, 1]), np.array([1, 9]), np.array([0.9, 0.8]), np.zeros((2, 4)), np.array([3, 4]))
    with pytest.raises(InputError, match=r"^sub.txt:4: unknown DET_ID 9"):
        evaluate_submission(ds, sub, synsets, "sub.txt")


def test_no_detections_and_no_objects():
    assert run(ilsvrc_dataset([[(0, [0, 0, 9, 9])]]), []).ap.tolist() == [0.0]
    res = run(ilsvrc_dataset([[]]), [(1, 0, 0.5, [0, 0, 9, 9])])
    assert res.classes == [] and np.isnan(res.mean_ap)


# ----------------------------------------------------------------------------- reference oracle


def devkit_reference(gt, rows, n_images, n_classes, blacklist=()):
    """eval_detection.m + VOCap.m transliterated loop for loop (1-based labels inside)."""
    rows = sorted(enumerate(rows), key=lambda r: r[1][0])  # sort(img_ids): stable, keeps line order
    tp_all, fp_all, lab_all, conf_all = [], [], [], []
    for img in range(1, n_images + 1):
        dets = [r for _, r in rows if r[0] == img]
        dets = [dets[i] for i in sorted(range(len(dets)), key=lambda i: -dets[i][2])]  # sort descend, stable
        objs = gt[img - 1]
        thr = [min(0.5, (b[3] - b[1] + 1) * (b[2] - b[0] + 1) / ((b[3] - b[1] + 11) * (b[2] - b[0] + 11)))
               for _, b in objs]
        detected = [False] * len(objs)
        black = {lab for (i, lab) in blacklist if i == img}
        for _, lab, conf, bb in dets:
            tp = fp = 0
            if lab not in black:
                ovmax, kmax = -np.inf, -1
                for k, (glab, g) in enumerate(objs):
                    if glab != lab or detected[k]:
                        continue
                    iw = min(bb[2], g[2]) - max(bb[0], g[0]) + 1
                    ih = min(bb[3], g[3]) - max(bb[1], g[1]) + 1
                    if iw > 0 and ih > 0:
                        ua = (bb[2] - bb[0] + 1) * (bb[3] - bb[1] + 1) + (g[2] - g[0] + 1) * (g[3] - g[1] + 1) - iw * ih
                        ov = iw * ih / ua
                        if ov >= thr[k] and ov > ovmax:
                            ovmax, kmax = ov, k
                if kmax >= 0:
                    tp, detected[kmax] = 1, True
                else:
                    fp = 1
            tp_all.append(tp), fp_all.append(fp), lab_all.append(lab), conf_all.append(conf)
    order = sorted(range(len(conf_all)), key=lambda i: -conf_all[i])
    ap = []
    for c in range(n_classes):
        npos = sum(1 for img, objs in enumerate(gt) for lab, _ in objs if lab == c and (img + 1, c) not in blacklist)
        sel = [i for i in order if lab_all[i] == c]
        tp = np.cumsum([tp_all[i] for i in sel], dtype=float)
        fp = np.cumsum([fp_all[i] for i in sel], dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            rec, prec = tp / npos, tp / (fp + tp)
        mrec, mpre = [0.0, *rec, 1.0], [0.0, *prec, 0.0]
        for i in range(len(mpre) - 2, -1, -1):
            mpre[i] = np.nanmax([mpre[i], mpre[i + 1]])
        ap.append(sum((mrec[i] - mrec[i - 1]) * mpre[i] for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1]))
    return np.array(ap)


@pytest.mark.parametrize("seed", range(6))
def test_matches_the_reference_loop_on_random_cases(seed):
    rng = np.random.default_rng(seed)
    n_images, n_classes = 12, 3
    gt = []
    for _ in range(n_images):
        objs = []
        for _ in range(rng.integers(0, 5)):
            x, y = rng.integers(0, 80, 2)
            w, h = rng.integers(3, 60, 2)  # many small objects: their own thresholds apply
            objs.append((int(rng.integers(0, n_classes)), [x, y, x + w - 1, y + h - 1]))
        gt.append(objs)
    gt[0].append((n_classes - 1, [0, 0, 9, 9]))  # every class scored
    rows = []
    for img, objs in enumerate(gt, 1):
        for lab, b in objs:
            for _ in range(rng.integers(0, 4)):  # near-duplicates compete for objects
                j = rng.integers(-4, 5, 4)
                box = [b[0] + j[0], b[1] + j[1], max(b[2] + j[2], b[0] + j[0]), max(b[3] + j[3], b[1] + j[1])]
                rows.append((img, lab, float(rng.choice([0.3, 0.5, 0.7, 0.9])), box))  # many ties
        for _ in range(rng.integers(0, 4)):
            x, y = rng.integers(0, 90, 2)
            rows.append((img, int(rng.integers(0, n_classes)), float(rng.choice([0.3, 0.5])), [x, y, x + 20, y + 20]))
    rows = [rows[i] for i in rng.permutation(len(rows))]  # lines in any image order
    blacklist = [(3, 0), (5, 1)]
    ds = ilsvrc_dataset(gt)
    ours = run(ds, rows, blacklist=[(i, f"n{k + 1:08d}") for i, k in blacklist])
    ref = devkit_reference(gt, rows, n_images, n_classes, blacklist)
    np.testing.assert_allclose(ours.ap, ref, rtol=0, atol=1e-12)
