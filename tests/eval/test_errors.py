"""TIDE's error types and dAP: planted single errors, edge cases, and tidecv on generated cases."""
import numpy as np
import pytest

from core.config import ConfigError
from core.structures import DetectionDataset, Detections, ImageAnnotations
from eval.errors import MAIN_ERRORS, ErrorConfig, ErrorInput, ap101, box_iou_pairs, tide_analysis, tide_errors


def make_input(gt, dets, k=2, n_images=1, crowd=()):
    """gt: [(image, label, box)], dets: [(image, label, score, box)] -> ErrorInput."""
    gt_image = np.array([g[0] for g in gt], np.int64)
    return ErrorInput(
        [f"c{i}" for i in range(k)], n_images, gt_image, np.array([g[1] for g in gt], np.int64),
        np.array([g[2] for g in gt], float).reshape(-1, 4),
        np.array([i in crowd for i in range(len(gt))], bool),
        np.array([d[0] for d in dets], np.int64), np.array([d[1] for d in dets], np.int64),
        np.array([d[2] for d in dets], float), np.array([d[3] for d in dets], float).reshape(-1, 4))


A = [0, 0, 100, 100]
B = [200, 200, 300, 300]
FAR = [400, 400, 450, 450]

# each case plants one error of its type; the value is the dAP fixing it must give
PLANTED = {
    # a c1 detection on a c0 object (c1 has no objects: AP 0, it leaves the mean when fixed)
    "cls": ([(0, 0, A)], [(0, 1, 0.9, A)], 100.0),
    # the right class at IoU 0.4
    "loc": ([(0, 0, A)], [(0, 0, 0.9, [0, 0, 100, 40])], 100.0),
    # a c0 detection at IoU 0.4 with the c1 object, scored above c0's true positive
    "both": ([(0, 0, A), (0, 1, B)], [(0, 0, 0.5, A), (0, 1, 0.5, B), (0, 0, 0.9, [200, 200, 300, 240])], 25.0),
    # a second detection of the first object, scored above the second object's
    "dupe": ([(0, 0, A), (0, 0, B)], [(0, 0, 0.9, A), (0, 0, 0.8, [0, 0, 100, 95]), (0, 0, 0.5, B)],
             100 - (51 + 50 * 2 / 3) / 101 * 100),
    # a detection far from everything, scored above the true positive
    "bkg": ([(0, 0, A)], [(0, 0, 0.5, A), (0, 0, 0.9, FAR)], 50.0),
    # the second object has no detection at all
    "miss": ([(0, 0, A), (0, 0, B)], [(0, 0, 0.9, A)], 100 - 51 / 101 * 100),
}


@pytest.mark.parametrize("kind", MAIN_ERRORS)
def test_a_planted_error_is_attributed_to_its_type_alone(kind):
    gt, dets, expected = PLANTED[kind]
    result = tide_analysis(make_input(gt, dets))
    assert result.dap[kind] == pytest.approx(expected)
    for other in MAIN_ERRORS:
        if other != kind:
            assert result.dap[other] == 0, other
    counts = {t: int(result.counts[t].sum()) for t in MAIN_ERRORS}
    assert counts == {t: int(t == kind) for t in MAIN_ERRORS}


def test_perfect_detections_score_100_with_no_error():
    result = tide_analysis(make_input([(0, 0, A), (0, 1, B)], [(0, 0, 0.9, A), (0, 1, 0.8, B)]))
    assert result.ap50 == 100
    assert all(v == 0 for v in result.dap.values())
    assert result.special == {"FalsePos": 0, "FalseNeg": 0}


def test_special_errors():
    # c0: a background false positive above the true positive, and a missed object
    result = tide_analysis(make_input([(0, 0, A), (0, 0, B)], [(0, 0, 0.9, FAR), (0, 0, 0.5, A)], k=1))
    # AP: recall 0.5 at precision 0.5 -> 51 points of 0.5
    assert result.ap50 == pytest.approx(51 * 0.5 / 101 * 100)
    # FalsePos: the false positive goes last -> precision 1 up to recall 0.5
    assert result.special["FalsePos"] == pytest.approx(51 / 101 * 100 - result.ap50)
    # FalseNeg: the missed object leaves the positives -> recall 1 at precision 0.5
    assert result.special["FalseNeg"] == pytest.approx(50 - result.ap50)


def test_only_the_highest_scored_error_on_an_object_is_made_positive():
    # two loc errors on one object: fixing turns the first into a true positive, removes the second
    dets = [(0, 0, 0.9, [0, 0, 100, 40]), (0, 0, 0.8, [0, 0, 100, 30])]
    result = tide_analysis(make_input([(0, 0, A)], dets, k=1))
    m = result.matching
    assert m.fixable.tolist() == [True, False]
    assert result.dap["loc"] == pytest.approx(100)


def test_max_dets_keeps_the_best_of_each_image():
    dets = [(0, 0, 0.01 * i, FAR) for i in range(1, 11)] + [(0, 0, 0.001, A)]
    full = tide_analysis(make_input([(0, 0, A)], dets, k=1), ErrorConfig(max_dets=0))
    capped = tide_analysis(make_input([(0, 0, A)], dets, k=1), ErrorConfig(max_dets=10))
    assert full.ap50 > 0 and capped.ap50 == 0
    assert len(capped.matching.order) == 10 and int(capped.counts["miss"].sum()) == 1


def test_a_crowd_region_absorbs_unmatched_detections_of_its_class():
    dets = [(0, 0, 0.9, A), (0, 0, 0.8, [210, 210, 290, 290])]
    result = tide_analysis(make_input([(0, 0, A), (0, 0, B)], dets, k=1, crowd=(1,)))
    assert result.matching.ignored.tolist() == [False, True]
    assert result.ap50 == 100 and result.npos.tolist() == [1]


def test_ties_keep_file_order_and_images_without_objects_are_background():
    dets = [(1, 0, 0.5, A), (0, 0, 0.5, A)]
    result = tide_analysis(make_input([(0, 0, A)], dets, k=1, n_images=2))
    m = result.matching
    assert m.image.tolist() == [0, 1]
    assert MAIN_ERRORS[m.error[1]] == "bkg"


def test_cocos_iou():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], float)
    b = np.array([[5, 0, 15, 10], [10, 0, 20, 10], [0, 0, 10, 10]], float)
    assert box_iou_pairs(a, b).tolist() == [50 / 150, 0.0, 1.0]
    assert box_iou_pairs(a[:1], b[:1], crowd=True).tolist() == [0.5]


def test_ap101_interpolates_like_coco():
    ap, curve = ap101(np.array([True, False, True]), 2)
    # precision 1 up to recall 0.5, then 2/3 up to recall 1
    assert ap == pytest.approx((51 + 50 * 2 / 3) / 101 * 100)
    assert curve[50] == 1 and curve[51] == pytest.approx(2 / 3)
    assert ap101(np.zeros(0, bool), 3)[0] == 0 and ap101(np.array([True]), 0)[0] == 0


def test_config_is_checked():
    with pytest.raises(ConfigError):
        ErrorConfig(fg_iou=0.1, bg_iou=0.5)
    with pytest.raises(ConfigError):
        ErrorConfig(max_dets=-1)


def test_tide_errors_on_in_memory_detections():
    dataset = DetectionDataset(["a", "b"], [ImageAnnotations(5, "x.png", 500, 500, [A, B], [0, 1])])
    dets = {5: Detections([A, [200, 200, 300, 240]], [0.9, 0.8], [0, 1])}
    result = tide_errors(dataset, dets)
    assert result.ap50 == pytest.approx(50)
    assert result.to_json()["per_class"]["b"]["errors"]["loc"] == 1


# ----------------------------------------------------------------------------- against tidecv


def random_case(seed, n_images=25, k=4):
    """Objects and detections (jittered copies with some wrong classes, plus random boxes) on a
    quarter-pixel grid, scores on a 1/64 grid (ties happen); some crowd regions; some images with
    more than 100 detections."""
    rng = np.random.default_rng(seed)
    gt, dets, crowd = [], [], []
    for i in range(n_images):
        mine = []
        for _ in range(rng.integers(0, 6)):
            x, y = rng.integers(0, 200, 2) * 0.5
            w, h = rng.integers(8, 120, 2) * 0.5
            mine.append(len(gt))
            crowd.append(len(gt)) if rng.random() < 0.08 else None
            gt.append((i, int(rng.integers(k)), [x, y, x + w, y + h]))
        for _ in range(rng.integers(0, 140 if i % 5 == 0 else 25)):
            if mine and rng.random() < 0.7:
                _, lab, box = gt[mine[rng.integers(len(mine))]]
                b = np.array(box) + np.round(rng.normal(0, 1.0, 4) * 4) / 4 * 8
                b[2:] = np.maximum(b[2:], b[:2] + 0.5)
                lab = lab if rng.random() < 0.7 else int(rng.integers(k))
            else:
                x, y = rng.integers(0, 200, 2) * 0.5
                b, lab = np.array([x, y, x + rng.integers(8, 120) * 0.5, y + rng.integers(8, 120) * 0.5]), int(rng.integers(k))
            dets.append((i, lab, rng.integers(0, 64) / 64, b.tolist()))
    return make_input(gt, dets, k=k, n_images=n_images, crowd=set(crowd))


def tidecv_numbers(inp):
    """tidecv's AP50, main and special errors on the same boxes (its own data structures)."""
    tidecv = pytest.importorskip("tidecv")
    gt, preds = tidecv.Data("gt"), tidecv.Data("preds")
    for i in range(inp.n_images):
        gt.add_image(i, f"image {i}")
    xywh = (lambda b: [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])])
    for i, c, b, crowd in zip(inp.gt_image, inp.gt_label, inp.gt_boxes, inp.gt_crowd):
        (gt.add_ignore_region if crowd else gt.add_ground_truth)(int(i), int(c), xywh(b), None)
    for i, c, s, b in zip(inp.det_image, inp.det_label, inp.det_score, inp.det_boxes):
        preds.add_detection(int(i), int(c), float(s), xywh(b), None)
    tide = tidecv.TIDE()
    tide.evaluate(gt, preds, mode=tidecv.TIDE.BOX, name="run")
    main = {k.lower(): v for k, v in tide.get_main_errors()["run"].items()}
    return tide.runs["run"].ap, main, tide.get_special_errors()["run"]


@pytest.mark.parametrize("seed", range(6))
def test_same_numbers_as_tidecv(seed):
    inp = random_case(seed)
    ap, main, special = tidecv_numbers(inp)
    ours = tide_analysis(inp)
    assert ours.ap50 == pytest.approx(ap, abs=1e-9)
    for kind in MAIN_ERRORS:
        assert ours.dap[kind] == pytest.approx(main[kind], abs=1e-9), kind
    for kind, value in special.items():
        assert ours.special[kind] == pytest.approx(value, abs=1e-9), kind
