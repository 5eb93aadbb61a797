import numpy as np
import pytest

from proposals.base import SOURCE_MULTIBOX, SOURCE_SS, Proposals
from proposals.merge import MergeConfig, MergedProposer, dedupe, merge_order, merge_proposals

SS = Proposals(np.array([[0, 0, 10, 10], [0, 0, 20, 20], [5, 5, 30, 30]], np.float32), np.zeros(3, np.uint8))
MB = Proposals(np.array([[0, 0, 20, 20], [1, 1, 10, 10]], np.float32), np.ones(2, np.uint8))


class FakeProposer:
    """Returns fixed proposals and counts calls."""

    def __init__(self, proposals):
        self.proposals, self.calls = proposals, 0

    def __call__(self, image):
        self.calls += 1
        return self.proposals


@pytest.mark.parametrize("rule, expected", [
    ("multibox_first", [3, 4, 0, 1, 2]),
    ("ss_first", [0, 1, 2, 3, 4]),
    ("interleave", [3, 0, 4, 1, 2]),
    ("by_rank", [0, 3, 1, 4, 2]),  # ss at 1/6, 3/6, 5/6; MultiBox at 1/4, 3/4
])
def test_merge_order_rules(rule, expected):
    assert merge_order(3, 2, rule).tolist() == expected


def test_merged_list_drops_exact_duplicates_keeping_the_better_ranked():
    out = merge_proposals(SS, MB, MergeConfig(rule="ss_first"))
    assert out.boxes.tolist() == [[0, 0, 10, 10], [0, 0, 20, 20], [5, 5, 30, 30], [1, 1, 10, 10]]
    assert out.sources.tolist() == [SOURCE_SS] * 3 + [SOURCE_MULTIBOX]
    out = merge_proposals(SS, MB, MergeConfig(rule="multibox_first"))
    assert out.sources.tolist() == [SOURCE_MULTIBOX, SOURCE_MULTIBOX, SOURCE_SS, SOURCE_SS]


def test_iou_dedupe_at_the_threshold():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 5], [0, 0, 10, 4]], np.float32)  # IoU 0.5 and 0.4
    assert dedupe(boxes, 0.5).tolist() == [0, 2]  # IoU >= 0.5 dropped, 0.4 kept
    assert dedupe(boxes, 0.51).tolist() == [0, 1]  # box 2 vs box 1: IoU 0.8
    assert dedupe(boxes, 1.0).tolist() == [0, 1, 2]
    assert dedupe(np.zeros((0, 4), np.float32), 0.5).tolist() == []


def test_multibox_top_k_and_empty_inputs():
    out = merge_proposals(SS, MB, MergeConfig(multibox_top_k=1, rule="ss_first"))
    assert len(out) == 3  # the single MultiBox box duplicates an SS box
    assert len(merge_proposals(Proposals(), Proposals(), MergeConfig())) == 0
    assert merge_proposals(Proposals(), MB, MergeConfig()).boxes.tolist() == MB.boxes.tolist()


def test_merged_proposer_calls_both(image):
    ss, mb = FakeProposer(SS), FakeProposer(MB)
    out = MergedProposer(ss, mb, MergeConfig())(image)
    assert ss.calls == mb.calls == 1 and len(out) == 4
