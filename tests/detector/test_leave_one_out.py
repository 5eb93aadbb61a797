"""bench/replicate.py's leave-one-out rows: the ensemble without member i, from probabilities computed once."""
import copy

import torch

from bench import replicate
from detector.config import DetectorConfig
from detector.dataset_run import run_detector


def test_leaving_one_member_out_equals_running_the_others(kit, tiny_model, easy_split):
    model, _, _ = tiny_model
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.net.fc.bias[1] += 2.0  # a second member that disagrees with the first
    small = type(easy_split)(easy_split.classes, easy_split.images[:4], image_root=easy_split.image_root)
    props = {"merged": {a.image_id: kit.grid_boxes() for a in small.images}}
    saved = []
    rows = replicate.leave_one_out_rows(small, [model, other], props, {}, saved.append)
    assert list(rows) == ["ensemble without member 0", "ensemble without member 1"] and len(saved) == 2
    cfg = DetectorConfig(proposal_method="merged")
    for name, alone in (("ensemble without member 0", other), ("ensemble without member 1", model)):
        expected = replicate.score(small, run_detector(small, [alone], cfg, proposals=props["merged"], progress=False))
        assert abs(rows[name]["mAP"] - expected["mAP"]) < 1e-9, name
    kept = replicate.leave_one_out_rows(small, [model, other], props, rows, saved.append)
    assert kept == rows and len(saved) == 2  # measured rows are kept, nothing measured again
