import cv2
import numpy as np
import pytest

from core.boxes import box_iou, as_boxes
from core.config import ConfigError
from proposals.base import SOURCE_SS
from proposals.selective_search import (
    PRESETS, SelectiveSearch, SelectiveSearchConfig, _Grouping, Regions, adjacent_pairs, histograms, preset,
    priorities, rank_and_filter, region_boxes, texture_bins, working_scale,
)


def test_presets_follow_rcnn_fast_mode():
    ss, ss2x = PRESETS["ss"], PRESETS["ss2x"]
    assert ss.color_spaces == ("hsv", "lab") and ss.similarities == ("ctsf", "tsf")
    assert ss.ks == (50, 100) and ss.min_size is None and ss.sigma == 0.8 and ss.min_box_size == 20
    assert ss2x.ks == (100, 200) and ss2x.color_spaces == ss.color_spaces


def test_deterministic_same_boxes_same_order(image):
    a = SelectiveSearch(preset("ss"), seed=3)(image)
    b = SelectiveSearch(preset("ss"), seed=3)(image)
    assert len(a) > 10
    np.testing.assert_array_equal(a.boxes, b.boxes)
    c = SelectiveSearch(preset("ss"), seed=4)(image)
    assert not np.array_equal(a.boxes, c.boxes)  # the seed changes the order ...
    assert {tuple(r) for r in a.boxes} == {tuple(r) for r in c.boxes}  # ... not the set


def test_output_contract(image):
    p = SelectiveSearch(preset("ss2x"))(image)
    assert p.boxes.dtype == np.float32 and p.boxes.shape[1] == 4
    assert (p.sources == SOURCE_SS).all()
    assert (p.boxes[:, :2] >= 0).all() and (p.boxes[:, 2] <= 160).all() and (p.boxes[:, 3] <= 140).all()
    assert len(np.unique(p.boxes, axis=0)) == len(p)  # duplicates removed


def test_finds_the_objects(image, scene_boxes):
    p = SelectiveSearch(preset("ss"))(image)
    best = box_iou(as_boxes(scene_boxes), as_boxes(p.boxes)).max(dim=1).values
    assert (best > 0.9).all()


def test_min_box_filter(image):
    p = SelectiveSearch(preset("ss"))(image)
    wh = p.boxes[:, 2:] - p.boxes[:, :2]
    assert (wh >= 20).all()
    small = SelectiveSearch(preset("ss", min_box_size=0))(image)
    assert ((small.boxes[:, 2:] - small.boxes[:, :2]) < 20).any(axis=1).any()


def test_ss2x_gives_about_half_the_boxes_of_ss():
    # GLN §8: doubling the superpixel size halves the proposals. Per image the ratio spreads
    # (0.39-0.66 on these four benchmark images), so the band is on the total.
    from bench.synthetic import generate_image
    images = [generate_image(5, i, "val").pixels for i in range(4)]
    ss = sum(len(SelectiveSearch(preset("ss"))(im)) for im in images)
    ss2x = sum(len(SelectiveSearch(preset("ss2x"))(im)) for im in images)
    assert 0.4 <= ss2x / ss <= 0.7


def test_grayscale_2d_equals_three_equal_channels(image):
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    a = SelectiveSearch(preset("ss"))(grey)
    b = SelectiveSearch(preset("ss"))(np.dstack([grey] * 3))
    assert len(a) > 0
    np.testing.assert_array_equal(a.boxes, b.boxes)


def test_rgba_is_accepted(image):
    rgba = np.dstack([image, np.full(image.shape[:2], 255, np.uint8)])
    np.testing.assert_array_equal(SelectiveSearch()(rgba).boxes, SelectiveSearch()(image).boxes)


@pytest.mark.parametrize("shape", [(1, 1, 3), (5, 7, 3), (19, 300, 3), (1, 1)])
def test_tiny_images_give_no_boxes(shape):
    p = SelectiveSearch(preset("ss"))(np.full(shape, 90, np.uint8))
    assert p.boxes.shape == (0, 4)


def test_tiny_image_without_size_filter_gives_the_whole_image():
    p = SelectiveSearch(preset("ss", min_box_size=0))(np.full((5, 7, 3), 90, np.uint8))
    np.testing.assert_array_equal(p.boxes, [[0, 0, 7, 5]])


@pytest.mark.parametrize("shape", [(4000, 60), (60, 4000)])
def test_extremely_elongated_images(shape, image):
    h, w = shape
    tall = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    p = SelectiveSearch(preset("ss2x"))(tall)
    assert len(p) > 0
    assert (p.boxes[:, 2] <= w + 1e-3).all() and (p.boxes[:, 3] <= h + 1e-3).all()
    assert ((p.boxes[:, 2:] - p.boxes[:, :2]) >= 20).all()


def test_working_scale_keeps_elongated_short_side():
    assert working_scale(100, 80, 500, 20) == 1.0
    assert working_scale(1000, 800, 500, 20) == 0.5
    assert working_scale(4000, 60, 500, 20) == pytest.approx(40 / 60)  # not 60/8 = 7 px
    assert working_scale(1000, 800, 0, 20) == 1.0


def test_boxes_mapped_back_after_resizing(image):
    # A 2x nearest-neighbour upscale, area-downscaled by 2, is exactly the original image, so the
    # capped run must give exactly twice the boxes of the uncapped run on the original.
    big = cv2.resize(image, (320, 280), interpolation=cv2.INTER_NEAREST)
    capped = SelectiveSearch(preset("ss", max_side=160))(big)
    direct = SelectiveSearch(preset("ss", max_side=0))(image)
    np.testing.assert_allclose(capped.boxes, direct.boxes * 2, atol=1e-3)


def test_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="color_spaces"):
        SelectiveSearchConfig(color_spaces=("xyz",))
    with pytest.raises(ConfigError, match="similarities"):
        SelectiveSearchConfig(similarities=("ctq",))
    with pytest.raises(ConfigError, match="ks"):
        SelectiveSearchConfig(ks=(0,))


def test_adjacency_is_eight_connected():
    labels = np.array([[0, 1], [2, 3]], np.int32)
    assert adjacent_pairs(labels).tolist() == [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]]


def test_grouping_builds_the_whole_hierarchy():
    # Four 2x2 blocks: sizes 4 each; boxes of the quadrants of a 4x4 image.
    boxes = np.array([[0, 0, 2, 2], [2, 0, 4, 2], [0, 2, 2, 4], [2, 2, 4, 4]], float)
    pairs = np.array([[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]])
    colour = np.eye(4, dtype=np.float32)
    colour[1] = colour[0]  # regions 0 and 1 look alike: they merge first under colour similarity
    regions = Regions(np.full(4, 4.0), boxes, pairs, colour, colour.copy())
    out, levels = _Grouping(regions, "cs", 16.0).run(pairs)
    assert len(out) == 7 and levels.tolist()[:4] == [1, 1, 1, 1]
    np.testing.assert_array_equal(out[4], [0, 0, 4, 2])  # 0 ∪ 1 first
    np.testing.assert_array_equal(out[-1], [0, 0, 4, 4])  # the whole image last
    assert levels[-1] == 3


def test_priorities_hierarchy_and_level():
    levels = np.array([1, 1, 1, 2, 3])
    assert priorities(levels, 3, "hierarchy").tolist() == [3, 3, 3, 2, 1]
    assert priorities(levels, 3, "level").tolist() == [1, 1, 1, 2, 3]


def test_rank_and_filter_keeps_best_ranked_duplicate():
    boxes = np.array([[0, 0, 30, 30], [0, 0, 10, 40], [0, 0, 30, 30], [5, 5, 40, 40]], float)
    prio = np.array([4.0, 1.0, 1.0, 2.0])

    class Fixed:  # deterministic "random" numbers
        def random(self, n):
            return np.ones(n)

    out = rank_and_filter(boxes, prio, Fixed(), 20)
    np.testing.assert_array_equal(out, [[0, 0, 30, 30], [5, 5, 40, 40]])


def _label_map(seed=0, shape=(37, 53), n=9):
    """A label map whose labels 0..n-1 all occur (random blobs)."""
    rng = np.random.default_rng(seed)
    labels = cv2.resize(rng.integers(0, n, (5, 7)).astype(np.uint8), shape[::-1],
                        interpolation=cv2.INTER_NEAREST).astype(np.int32)
    _, labels = np.unique(labels, return_inverse=True)
    return labels.reshape(shape).astype(np.int32)


def test_region_boxes_are_the_tight_boxes():
    labels = _label_map()
    n = int(labels.max()) + 1
    expect = []
    for k in range(n):
        ys, xs = np.nonzero(labels == k)
        expect.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    np.testing.assert_array_equal(region_boxes(labels, n), expect)


def test_adjacent_pairs_are_every_touching_pair_once():
    labels = _label_map(1)
    h, w = labels.shape
    expect = set()
    for y in range(h):
        for x in range(w):
            for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
                if 0 <= y + dy < h and 0 <= x + dx < w and labels[y, x] != labels[y + dy, x + dx]:
                    a, b = sorted((labels[y, x], labels[y + dy, x + dx]))
                    expect.add((a, b))
    assert adjacent_pairs(labels).tolist() == sorted(map(list, expect))


def test_histograms_count_each_regions_bins():
    labels = _label_map(2)
    n = int(labels.max()) + 1
    bins = np.random.default_rng(3).integers(0, 4, (3, labels.size)).astype(np.uint8)
    hist = histograms(labels, bins, n, 4)
    for k in range(n):
        inside = labels.ravel() == k
        counts = np.concatenate([np.bincount(bins[m][inside], minlength=4) for m in range(3)])
        np.testing.assert_allclose(hist[k], counts / counts.sum(), rtol=1e-6)


def test_texture_bins_scale_each_part_to_its_maximum():
    image = np.random.default_rng(4).integers(0, 256, (20, 30, 1), dtype=np.uint8)
    gx = cv2.Scharr(image[:, :, 0], cv2.CV_32F, 1, 0).ravel()
    bins = texture_bins(image)
    for part, row in ((np.maximum(gx, 0), bins[0]), (np.maximum(-gx, 0), bins[1])):
        expect = np.minimum(part * np.float32(10 / part.max()), 9).astype(np.uint8)
        np.testing.assert_array_equal(row, expect)
    assert texture_bins(np.full((5, 5, 1), 7, np.uint8)).max() == 0  # flat: every map empty
