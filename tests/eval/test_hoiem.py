"""R-CNN's false-positive types: planted cases of each, the similar-class groups, the plot's numbers."""
import numpy as np
import pytest

from core.config import ConfigError
from eval.errors import match_detections
from eval.hoiem import FP_TYPES, ClassGroup, SimilarConfig, class_groups, fp_distribution, hoiem_analysis
from tests.eval.test_errors import make_input

A, B, C = [0, 0, 100, 100], [200, 200, 300, 300], [400, 0, 500, 100]
FAR = [600, 600, 650, 650]
CLASSES = ["cat", "dog", "car"]
SIMILAR = SimilarConfig(source="groups", groups=[ClassGroup("animals", ["cat", "dog"]), ClassGroup("vehicles", ["car"])])


def fp_types(dets):
    """The types of the false positives of ``dets`` on a dog at A, a cat at B and a car at C."""
    inp = make_input([(0, 1, A), (0, 0, B), (0, 2, C)], dets, k=3)
    inp.classes = CLASSES
    m = match_detections(inp)
    group, names = class_groups(SIMILAR, CLASSES, CLASSES, None)
    result = hoiem_analysis(m, inp.gt_label, np.bincount(inp.gt_label, minlength=3), group, names)
    return [FP_TYPES[t] for t in result.fp_type], result


@pytest.mark.parametrize("box, expected", [
    ([0, 0, 100, 30], "Loc"),  # a dog at IoU 0.3 with the dog
    (B, "Sim"),  # a dog on the cat
    (C, "Oth"),  # a dog on the car
    (FAR, "BG"),  # a dog on nothing
])
def test_each_planted_false_positive_gets_its_type(box, expected):
    types, _ = fp_types([(0, 1, 0.9, box)])
    assert types == [expected]


def test_a_duplicate_is_a_localisation_error_and_true_positives_are_not_typed():
    types, result = fp_types([(0, 1, 0.9, A), (0, 1, 0.8, [0, 0, 100, 95])])
    assert types == ["Loc"]
    assert result.counts()[1].tolist() == [1, 0, 0, 0]


def test_the_plot_counts_top_ranked_false_positives_in_multiples_of_the_positives():
    types, result = fp_types([(0, 1, 0.9, FAR), (0, 1, 0.8, B), (0, 1, 0.7, C), (0, 1, 0.6, [0, 0, 100, 30])])
    assert types == ["BG", "Sim", "Oth", "Loc"]  # in descending score
    x, frac = fp_distribution(result, np.array([1]), np.array([1.0, 2.0, 4.0, 8.0]))
    assert x.tolist() == [1.0, 2.0, 4.0]  # the dog has 1 positive; 8x adds nothing new
    assert frac[0].tolist() == [0, 0, 0, 1]
    assert frac[1].tolist() == [0, 0.5, 0, 0.5]
    assert frac[2].tolist() == [0.25, 0.25, 0.25, 0.25]


def test_groups_from_the_config_or_the_supercategories():
    group, names = class_groups(SIMILAR, CLASSES, [1, 2, 3], ["x", "y", "y"])
    assert group.tolist() == [0, 0, 1] and names == ["animals", "vehicles"]
    group, names = class_groups(SimilarConfig(), CLASSES, [1, 2, 3], ["x", "y", "y"])  # auto, no name known
    assert group.tolist() == [0, 1, 1] and names == ["x", "y"]
    group, _ = class_groups(SimilarConfig(), CLASSES, [1, 2, 3], None)
    assert group.tolist() == [0, 1, 2]
    with pytest.raises(ConfigError):
        class_groups(SimilarConfig(source="supercategory"), CLASSES, [1, 2, 3], None)
    with pytest.raises(ConfigError):
        SimilarConfig(groups=[ClassGroup("a", ["cat"]), ClassGroup("b", ["cat"])])
