"""The drawing module: colours, label placement, clipping, sizes, contact sheets, PNG output."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from core.draw import (BLACK, PALETTE, WHITE, class_color, contact_sheet, draw_boxes, draw_detections,
                       draw_title, fit_within, font, font_size, line_width, save_image, text_color)
from core.errors import InputError

GREY = 90


def blank(h: int = 120, w: int = 160) -> np.ndarray:
    return np.full((h, w, 3), GREY, np.uint8)


def painted(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """``[H, W]`` bool: pixels the drawing changed."""
    return (before != after).any(axis=2)


def test_colours_are_fixed_per_class_and_text_reads_on_them():
    assert class_color(0) == PALETTE[0] and class_color(3) == PALETTE[3]
    assert class_color(len(PALETTE) + 2) == class_color(2)
    assert len(set(PALETTE[:15])) == 15  # the synthetic benchmark's 15 classes all differ
    assert text_color((255, 225, 25)) == BLACK and text_color((0, 0, 128)) == WHITE
    assert text_color(WHITE) == BLACK and text_color(BLACK) == WHITE


def test_font_and_line_grow_with_the_short_side():
    assert font_size((200, 900)) == 12 and font_size((400, 300)) == 12  # never below 12
    assert font_size((1200, 1600)) == 30 and font_size((1600, 1200, 3)) == 30
    assert line_width((200, 200)) == 2 and line_width((2400, 3200)) == 8
    face = font(20)
    assert face.size == 20 and "DejaVu" in face.getname()[0]  # a real TrueType face, not PIL's bitmap


def test_boxes_are_drawn_inside_their_bounds_and_clipped():
    image = blank()
    out = draw_boxes(image, [[10, 20, 50, 60], [140, -30, 400, 100]], colors=(255, 0, 0), width=2)
    assert (image == GREY).all()  # the input is unchanged
    changed = painted(image, out)
    ys, xs = np.nonzero(changed[:, :100])
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (10, 49, 20, 59)  # continuous xyxy: x2 = 50 is outside
    assert changed[22:58, 12:48].sum() == 0  # an outline, not a fill
    assert changed[0, 140:].all() and changed[:100, 159].all()  # the clipped box keeps its edges in the image
    assert tuple(out[20, 30]) == (255, 0, 0)


def test_degenerate_and_non_finite_boxes_are_skipped():
    image = blank()
    out = draw_boxes(image, [[30, 30, 30, 60], [np.nan, 0, 10, 10], [200, 0, 300, 50]])
    assert (out == image).all()
    assert (draw_detections(image, np.zeros((0, 4)), []) == image).all()


def test_label_sits_on_a_filled_box_above_the_box():
    image = blank(300, 300)
    out = draw_detections(image, [[100, 150, 200, 250]], [3], [0.87], class_names=[f"c{k}" for k in range(5)])
    above = out[130:150, 100:140]
    colour = np.array(class_color(3))
    assert (above == colour).all(axis=2).mean() > 0.4  # the filled background
    assert (above == np.array(text_color(class_color(3)))).all(axis=2).any()  # and text on it
    assert painted(image, out)[:120].sum() == 0  # nothing far above


def test_label_at_the_top_edge_goes_inside_and_never_leaves_the_image():
    image = blank(100, 100)
    out = draw_detections(image, [[70, 0, 100, 40]], [0], [0.5], class_names=["a long class name"])
    changed = painted(image, out)
    # The label does not fit above (y1 = 0) nor right of x1 = 70: it is moved left, inside the image.
    assert changed[0:12, 0:70].any() and changed[:, 0].any()
    assert out.shape == image.shape


def test_higher_scores_are_drawn_on_top():
    image = blank(200, 200)
    boxes = [[40, 40, 160, 160], [40, 40, 160, 160]]
    out = draw_detections(image, boxes, [0, 1], [0.9, 0.2], width=3)
    assert tuple(out[100, 41]) == class_color(0)
    swapped = draw_detections(image, boxes, [0, 1], [0.2, 0.9], width=3)
    assert tuple(swapped[100, 41]) == class_color(1)


def test_label_text_names_score_and_extra():
    image = blank(200, 400)
    plain = draw_detections(image, [[10, 100, 60, 150]], [0], class_names=["cup"])
    scored = draw_detections(image, [[10, 100, 60, 150]], [0], [0.5], class_names=["cup"])
    extra = draw_detections(image, [[10, 100, 60, 150]], [0], [0.5], class_names=["cup"], extra_text=["IoU 0.43"])
    widths = [painted(image, o)[80:99].any(axis=0).sum() for o in (plain, scored, extra)]
    assert widths[0] < widths[1] < widths[2]  # each addition lengthens the label


def test_explicit_colours_and_bad_inputs():
    image = blank()
    out = draw_detections(image, [[10, 50, 50, 90]], [7], colors=[(1, 2, 3)], width=2)
    assert tuple(out[70, 10]) == (1, 2, 3)
    with pytest.raises(ValueError, match="2 colours for 1 boxes"):
        draw_boxes(image, [[0, 0, 5, 5]], colors=[(1, 2, 3), (4, 5, 6)])
    with pytest.raises(ValueError, match="1 boxes, 2 labels"):
        draw_detections(image, [[0, 0, 5, 5]], [0, 1])
    with pytest.raises(ValueError, match="uint8"):
        draw_boxes(image.astype(np.float32), [])
    with pytest.raises(ValueError, match="uint8"):
        draw_boxes(image[:, :, 0], [])


def test_title_is_white_on_black_at_the_corner():
    image = blank()
    out = draw_title(image, "val_000 merged")
    corner = out[0:14, 0:60]
    assert (corner == 0).all(axis=2).mean() > 0.4 and (corner > 200).all(axis=2).any()


def test_fit_within_and_contact_sheet_layout():
    small, scale = fit_within(blank(100, 200), 320)
    assert small.shape == (160, 320, 3) and scale == pytest.approx(1.6)
    tiles = [blank(100, 200), blank(300, 150), blank(50, 50)]
    sheet = contact_sheet(tiles, ["a", "b", "c"], cols=2, cell=100, gap=4)
    band = (sheet.shape[0] - 4) // 2 - 104
    assert sheet.shape == (2 * (100 + band + 4) + 4, 2 * 104 + 4, 3) and band >= 12
    assert (sheet[4:54, 4:104] == GREY).all()  # the wide tile fitted to 100 x 50
    assert (sheet[4:104, 108:158] == GREY).all()  # the tall one to 50 x 100
    assert (sheet[54 + 2:54 + band, 4:20] < 128).any()  # its title just under it, dark on white
    assert contact_sheet(tiles, cols=3, cell=100).shape == (108, 3 * 104 + 4, 3)  # no titles: no bands
    with pytest.raises(ValueError, match="no images"):
        contact_sheet([])


def test_save_image_round_trips_and_quantises(tmp_path):
    image = draw_detections(blank(), [[10, 10, 80, 80]], [2], [0.9])
    save_image(tmp_path / "a.png", image)
    assert (np.asarray(Image.open(tmp_path / "a.png")) == image).all()
    save_image(tmp_path / "q.png", image, colors=16)
    assert Image.open(tmp_path / "q.png").mode == "P"
    save_image(tmp_path / "j.jpg", image)
    assert Image.open(tmp_path / "j.jpg").format == "JPEG"
    with pytest.raises(InputError, match=r"x\.what: unknown image file extension '\.what'"):
        save_image(tmp_path / "x.what", image)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "j.jpg", "q.png"]  # no temporary left


def test_overlapping_labels_move_the_weaker_one_inside_its_box():
    image = blank(300, 300)
    boxes = [[100, 100, 250, 250], [100, 100, 180, 180]]  # the same top-left corner
    out = draw_detections(image, boxes, [0, 1], [0.9, 0.6], class_names=["cat", "dog"])
    band = out[100 - 14:100]  # above the boxes: the best one's label
    assert (band == np.array(class_color(0))).all(axis=2).any() and not (band == np.array(class_color(1))).all(axis=2).any()
    inside = out[102:116, 102:130]  # just inside: the weaker one's label
    assert (inside == np.array(class_color(1))).all(axis=2).mean() > 0.4
