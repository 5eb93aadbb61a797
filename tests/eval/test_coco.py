"""COCO numbers: identical to pycocotools' COCOeval run directly, and its traps removed."""
import copy

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from core.boxes import coco_xywh_to_xyxy
from core.errors import InputError
from core.formats.coco import read_coco, write_coco
from core.structures import Detections
from eval.api import evaluate
from eval.coco import STAT_KEYS, evaluate_coco

CATEGORY_IDS = (1, 3, 7, 90)  # non-contiguous; 90 never has ground truth


def random_case(seed: int, n_images: int = 12):
    """GT with crowd regions, areas unlike box areas, empty images; results with >100 per image.

    Every number is a multiple of 1/4 (scores of 1/1024), exact in float32, so the in-memory
    route through DetectionDataset gives the same numbers as the JSON.
    """
    rng = np.random.default_rng(seed)
    q = lambda v, s=4: float(np.round(v * s) / s)  # noqa: E731
    images = [{"id": 100 + 7 * i, "width": 320, "height": 240, "file_name": f"{i}.png"} for i in range(n_images)]
    anns, results = [], []
    for img in images[2:]:  # the first two images have no objects
        for _ in range(rng.integers(1, 7)):
            x, y, w, h = q(rng.uniform(0, 200)), q(rng.uniform(0, 150)), q(rng.uniform(4, 120)), q(rng.uniform(4, 90))
            cat = int(rng.choice(CATEGORY_IDS[:-1]))
            anns.append({"id": len(anns) + 1, "image_id": img["id"], "category_id": cat, "bbox": [x, y, w, h],
                         "area": q(w * h * rng.uniform(0.4, 1.0)), "iscrowd": int(rng.random() < 0.15)})
            for _ in range(rng.integers(0, 25)):
                j = rng.normal(0, 6, 4)
                results.append({"image_id": img["id"], "category_id": cat, "score": q(rng.random(), 1024),
                                "bbox": [q(x + j[0]), q(y + j[1]), q(max(w + j[2], 1)), q(max(h + j[3], 1))]})
    for img in images[1:]:
        for _ in range(rng.integers(60, 130)):  # over 100 on some images: the per-image cap matters
            results.append({"image_id": img["id"], "category_id": int(rng.choice(CATEGORY_IDS)),
                            "score": q(rng.random() * 0.6, 1024),
                            "bbox": [q(rng.uniform(0, 280)), q(rng.uniform(0, 200)), q(rng.uniform(2, 60)), 20.0]})
    gt = {"images": images, "annotations": anns,
          "categories": [{"id": c, "name": f"cat{c}"} for c in CATEGORY_IDS]}
    return gt, results


def pycocotools_direct(gt: dict, results: list):
    g = COCO()
    g.dataset = copy.deepcopy(gt)
    g.createIndex()
    if results:
        d = g.loadRes(copy.deepcopy(results))
    else:  # what "no detections" means to the engine (its loadRes cannot take [])
        d = COCO()
        d.dataset = {"images": copy.deepcopy(gt["images"]), "categories": copy.deepcopy(gt["categories"]),
                     "annotations": []}
        d.createIndex()
    ev = COCOeval(g, d, "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return ev


@pytest.mark.parametrize("seed", range(3))
def test_identical_to_pycocotools(seed):
    gt, results = random_case(seed)
    ours = evaluate_coco(copy.deepcopy(gt), copy.deepcopy(results))
    ref = pycocotools_direct(gt, results)
    assert [ours.stats[k] for k in STAT_KEYS] == ref.stats.tolist()
    np.testing.assert_array_equal(ours.precision, ref.eval["precision"])
    assert ours.category_ids == list(CATEGORY_IDS) and ours.per_category[-1] == -1  # no GT for id 90


def test_faster_engine_agrees_to_rounding():
    gt, results = random_case(5)
    ours = evaluate_coco(copy.deepcopy(gt), copy.deepcopy(results), engine="faster")
    ref = pycocotools_direct(gt, results)
    np.testing.assert_allclose([ours.stats[k] for k in STAT_KEYS], ref.stats, rtol=0, atol=1e-12)


def test_api_through_the_dataset_is_identical(tmp_path):
    gt, results = random_case(1)
    write_coco(read_coco_dict(tmp_path, gt), tmp_path / "gt2.json")  # a round trip keeps the numbers
    dataset = read_coco(tmp_path / "gt2.json")
    label = {c: k for k, c in enumerate(CATEGORY_IDS)}
    dets = {}
    for r in results:
        dets.setdefault(r["image_id"], []).append(r)
    dets = {i: Detections(coco_xywh_to_xyxy([r["bbox"] for r in rs]), [r["score"] for r in rs],
                          [label[r["category_id"]] for r in rs]) for i, rs in dets.items()}
    report = evaluate(dataset, dets, "coco")
    ref = pycocotools_direct(gt, results)
    assert [report.stats[k] for k in STAT_KEYS] == ref.stats.tolist()
    assert report.mAP == ref.stats[0] and report.per_class["cat90"] == -1
    assert list(report.stats) == list(STAT_KEYS)


def read_coco_dict(tmp_path, gt):
    import json
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    return read_coco(tmp_path / "gt.json")


def test_empty_results_give_the_engines_numbers_without_crash():
    gt, _ = random_case(2)
    ours = evaluate_coco(copy.deepcopy(gt), [])
    ref = pycocotools_direct(gt, [])
    assert [ours.stats[k] for k in STAT_KEYS] == ref.stats.tolist()
    assert ours.stats["AP"] == 0.0


def test_unknown_ids_are_clear_errors():
    gt, results = random_case(0)
    with pytest.raises(InputError, match=r"res.json: result 1: image_id 999 is not in the ground truth"):
        evaluate_coco(gt, [results[0], {**results[1], "image_id": 999}], where="res.json")
    with pytest.raises(InputError, match="category_id 2 is not in the ground truth"):
        evaluate_coco(gt, [{**results[0], "category_id": 2}])


def test_missing_iscrowd_and_area_default_like_the_reader():
    gt, results = random_case(3)
    bare = copy.deepcopy(gt)
    for a in bare["annotations"]:
        del a["iscrowd"], a["area"]
    filled = copy.deepcopy(gt)
    for a in filled["annotations"]:
        a["iscrowd"], a["area"] = 0, a["bbox"][2] * a["bbox"][3]
    assert evaluate_coco(bare, copy.deepcopy(results)).stats == evaluate_coco(filled, copy.deepcopy(results)).stats
