"""detector.dataset_run: a split run with cached proposals, the 30k-per-class cap, result files."""
import json

import numpy as np

from core.formats.ilsvrc import read_submission
from core.structures import Detections
from detector.config import DetectorConfig
from detector.dataset_run import cap_per_class, run_detector, write_results


def test_cap_keeps_best_per_class_over_the_split():
    dets = {7: Detections([[0, 0, 1, 1]] * 3, [0.9, 0.5, 0.8], [0, 0, 1]),
            3: Detections([[0, 0, 2, 2]] * 2, [0.7, 0.95], [0, 1]),
            4: Detections()}
    out = cap_per_class(dets, cap=1)
    assert out[7].scores.tolist() == [np.float32(0.9)] and out[3].scores.tolist() == [np.float32(0.95)]
    assert len(out[4]) == 0
    assert sum(len(d) for d in cap_per_class(dets, cap=2).values()) == 4


def test_run_with_cached_proposals_and_write_both_formats(kit, tiny_model, easy_split, tmp_path):
    model, _, _ = tiny_model
    small = type(easy_split)(easy_split.classes, easy_split.images[:3], image_root=easy_split.image_root)
    props = {a.image_id: kit.grid_boxes() for a in small.images[:2]}  # image 3: no proposals
    dets = run_detector(small, [model], DetectorConfig(), proposals=props, progress=False)
    assert list(dets) == [1, 2, 3] and len(dets[1]) > 0 and len(dets[3]) == 0
    write_results(tmp_path / "r.json", small, dets, "coco")
    rows = json.loads((tmp_path / "r.json").read_text())
    assert len(rows) == len(dets[1]) + len(dets[2]) and set(rows[0]) == {"image_id", "category_id", "bbox", "score"}
    write_results(tmp_path / "sub.txt", small, dets, "ilsvrc")
    sub = read_submission(tmp_path / "sub.txt")
    assert len(sub.score) == len(rows) and set(sub.det_id.tolist()) <= {1, 2}
