"""Proposal recall on a hand-worked case."""
import json

import numpy as np
import pytest

from core.errors import InputError
from core.structures import DetectionDataset, ImageAnnotations
from eval.recall import IOU_THRESHOLDS, best_overlaps, proposal_recall
from proposals.base import Proposals


def recall_case():
    """Image 1: A (10x10, small), B (100x100, large) and a crowd region; image 2: A (40x40, medium).

    Best overlaps with all proposals: A1 0.5, B 1.0, A2 0.75. With only the top proposal of
    each image: A1 0.01, B 1.0, A2 0.75. Image 3 has an object and no proposals entry.
    """
    images = [
        ImageAnnotations(1, "1.png", 200, 200, [[0, 0, 10, 10], [0, 0, 100, 100], [150, 150, 190, 190]], [0, 1, 0],
                         iscrowd=[False, False, True]),
        ImageAnnotations(2, "2.png", 200, 200, [[50, 50, 90, 90]], [0]),
        ImageAnnotations(3, "3.png", 200, 200),
    ]
    proposals = {1: np.array([[0, 0, 100, 100], [0, 0, 10, 20]], np.float32),
                 2: Proposals(np.array([[50, 50, 90, 80]], np.float32), np.zeros(1, np.uint8)),
                 3: np.zeros((0, 4), np.float32)}
    return DetectionDataset(classes=["A", "B"], images=images), proposals


def test_hand_worked_recall():
    dataset, proposals = recall_case()
    r = proposal_recall(dataset, proposals, counts=(1, 10))
    assert r.overall.objects == 3  # the crowd region does not count
    assert r.coverage == 1.0 and r.recall_07 == pytest.approx(2 / 3)
    expected = [1.0] + [2 / 3] * 5 + [1 / 3] * 4  # at 0.5, 0.55..0.75, 0.8..0.95
    np.testing.assert_allclose(r.overall.recall, expected)
    assert r.ar == pytest.approx(np.mean(expected))
    assert r.abo == pytest.approx((0.5 + 1.0 + 0.75) / 3)
    assert r.mabo == pytest.approx(((0.5 + 0.75) / 2 + 1.0) / 2)
    assert r.overall.ar_at[1] == pytest.approx((6 * 2 / 3 + 4 / 3) / 10)
    assert r.overall.ar_at[10] == pytest.approx(r.ar)
    assert [r.by_size[s].objects for s in ("small", "medium", "large")] == [1, 1, 1]
    assert r.by_size["small"].ar == pytest.approx(0.1) and r.by_size["medium"].ar == pytest.approx(0.6)
    assert r.by_size["large"].abo == 1.0
    assert r.per_class["A"] == {"objects": 2, "coverage": 1.0, "ABO": pytest.approx(0.625)}
    assert r.mean_proposals == 1.0


def test_top_n_missing_images_and_json():
    dataset, proposals = recall_case()
    dataset.images[2] = ImageAnnotations(3, "3.png", 200, 200, [[0, 0, 50, 50]], [1])
    del proposals[3]
    r = proposal_recall(dataset, proposals, top_n=1)
    assert r.overall.objects == 4 and r.coverage == pytest.approx(2 / 4)  # A1 needs the second proposal
    data = json.loads(json.dumps(r.to_json(), allow_nan=False))
    assert data["protocol"] == "recall" and data["images_without_proposals"] == 1
    assert data["recall_vs_iou"]["0.5"] == 0.5 and set(data["by_size"]) == {"small", "medium", "large"}
    assert data["top_n"] == 1 and data["AR@N"]["100"] == data["AR"]


def test_best_overlaps_prefix_maxima():
    gt = np.array([[0, 0, 10, 10]], float)
    boxes = np.array([[20, 20, 30, 30], [0, 0, 10, 20], [0, 0, 10, 10]], float)
    np.testing.assert_allclose(best_overlaps(gt, boxes, (1, 2, 5)), [[0.0, 0.5, 1.0, 1.0]])
    assert best_overlaps(gt, np.zeros((0, 4)), (1,)).tolist() == [[0.0, 0.0]]
    assert IOU_THRESHOLDS.tolist() == [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]


def test_empty_dataset_and_unknown_ids():
    r = proposal_recall(DetectionDataset(classes=["A"], images=[]), {})
    assert r.overall.objects == 0 and np.isnan(r.coverage) and r.to_json()["coverage"] is None
    dataset, proposals = recall_case()
    with pytest.raises(InputError, match="image ids the ground truth lacks"):
        proposal_recall(dataset, {**proposals, 42: np.zeros((0, 4))})
