import re

import numpy as np
import pytest

from core.errors import InputError
from core.formats.voc import (
    VOC_CLASSES, read_image_set, read_voc, read_voc_results, write_voc, write_voc_results,
)
from core.structures import DetectionDataset, Detections, ImageAnnotations

XML = """<annotation><folder>VOC2007</folder><filename>{stem}.jpg</filename>
<size><width>353</width><height>500</height><depth>3</depth></size>
{objects}</annotation>"""


def _obj(name, box, difficult=None):
    diff = "" if difficult is None else f"<difficult>{difficult}</difficult>"
    tags = "".join(f"<{t}>{v}</{t}>" for t, v in zip(("xmin", "ymin", "xmax", "ymax"), box))
    return f"<object><name>{name}</name><pose>Left</pose>{diff}<bndbox>{tags}</bndbox></object>"


def _dataset() -> DetectionDataset:
    images = [
        ImageAnnotations(0, "000005.jpg", 500, 375, [[0, 0, 10, 20], [100, 50, 500, 375]], [1, 0],
                         difficult=[False, True]),
        ImageAnnotations(1, "000007.jpg", 64, 64),
    ]
    return DetectionDataset(classes=["chair", "dog"], images=images)


def test_round_trip(tmp_path):
    ds = _dataset()
    write_voc(ds, tmp_path, split="val")
    assert read_image_set(tmp_path / "ImageSets" / "Main" / "val.txt") == ["000005", "000007"]
    back = read_voc(tmp_path / "Annotations", str(tmp_path / "ImageSets" / "Main" / "val.txt"), ds.classes)
    assert back.classes == ds.classes and back.image_root == str(tmp_path / "JPEGImages")
    for a, b in zip(ds.images, back.images):
        assert (a.image_id, a.file_name, a.width, a.height) == (b.image_id, b.file_name, b.width, b.height)
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(a.difficult, b.difficult)
    assert "<xmin>1</xmin>" in (tmp_path / "Annotations" / "000005.xml").read_text()  # 1-based on disk


def test_reads_hand_written_devkit_files(tmp_path):
    ann = tmp_path / "Annotations"
    ann.mkdir()
    (ann / "a.xml").write_text(XML.format(stem="a", objects=_obj("dog", (1, 1, 10, 20), 0)
                                          + _obj("cat", (5, 6, 7, 8), 1)))
    (ann / "b.xml").write_text(XML.format(stem="b", objects=_obj("dog", (2, 3, 4, 5))))
    (tmp_path / "dog_val.txt").write_text("a  1\nb -1\n")  # a per-class list: every image counts
    ds = read_voc(ann, tmp_path / "dog_val.txt", image_root="/x")
    assert ds.classes == ["cat", "dog"] and ds.image_root == "/x"  # found names, sorted
    a, b = ds.images
    np.testing.assert_array_equal(a.boxes, [[0, 0, 10, 20], [4, 5, 7, 8]])
    assert a.labels.tolist() == [1, 0] and a.difficult.tolist() == [False, True]
    assert (a.file_name, a.width, a.height) == ("a.jpg", 353, 500)
    assert b.difficult.tolist() == [False]
    assert read_voc(ann, ["b"], VOC_CLASSES).images[0].labels.tolist() == [VOC_CLASSES.index("dog")]


@pytest.mark.parametrize("objects, reason", [
    (_obj("dog", (1, 1, 5, 5)) + _obj("horse", (1, 1, 5, 5)), "object 2: unknown class 'horse'"),
    (_obj("dog", (1, 1, 5, 5)) + _obj("dog", (9, 1, 5, 5)), "object 2: xmax < xmin (5 < 9)"),
    (_obj("dog", (1, 1, 5, 5)) + _obj("dog", (1, "", 5, 5)), "object 2 bndbox: missing <ymin>"),
    (_obj("dog", (1, 1, 5, 5)) + _obj("dog", (1, 1, 5, 5), "yes"), "object 2: <difficult> must be 0 or 1"),
    (_obj("dog", (1, 1, 5, 5)) + "<object><bndbox/></object>", "object 2: missing <name>"),
])
def test_malformed_xml_names_file_and_object(tmp_path, objects, reason):
    (tmp_path / "a.xml").write_text(XML.format(stem="a", objects=objects))
    with pytest.raises(InputError, match=re.escape(f"{tmp_path / 'a.xml'}: {reason}")):
        read_voc(tmp_path, ["a"], ["dog"])


def test_missing_files_and_bad_lists(tmp_path):
    with pytest.raises(InputError, match=re.escape(f"{tmp_path / 'zz.xml'}: file not found")):
        read_voc(tmp_path, ["zz"])
    (tmp_path / "l.txt").write_text("a\nb 1 2\n")
    with pytest.raises(InputError, match="l.txt:2: expected"):
        read_image_set(tmp_path / "l.txt")
    (tmp_path / "l.txt").write_text("a\na\n")
    with pytest.raises(InputError, match="l.txt:2: image 'a' already listed on line 1"):
        read_image_set(tmp_path / "l.txt")


def test_results_round_trip(tmp_path):
    ds = _dataset()
    dets = {0: Detections([[0, 0, 10.5, 20], [3, 4, 5, 6]], [0.75, 0.5], [1, 0]),
            1: Detections([[1, 1, 2, 2]], [0.1], [1])}
    paths = write_voc_results(tmp_path, ds, dets)
    assert [p.rsplit("/", 1)[1] for p in paths] == ["comp4_det_test_chair.txt", "comp4_det_test_dog.txt"]
    assert (tmp_path / "comp4_det_test_dog.txt").read_text().splitlines()[0] == "000005 0.75 1 1 10.5 20"
    back = read_voc_results(paths, ds.classes)
    assert list(back) == ["000005", "000007"]
    got = back["000005"]  # chair file first, then dog
    np.testing.assert_array_equal(got.boxes, [[3, 4, 5, 6], [0, 0, 10.5, 20]])
    assert got.labels.tolist() == [0, 1] and got.scores.tolist() == [0.5, 0.75]
    assert read_voc_results([], ds.classes) == {}


@pytest.mark.parametrize("line, reason", [
    ("a 0.5 1 1 5", "expected 'image_id score xmin ymin xmax ymax', got 5 fields"),
    ("a 0.5 1 1 5 x", "not a number"),
    ("a nan 1 1 5 5", "NaN or infinite"),
    ("a 0.5 6 1 5 5", "inverted box"),
])
def test_malformed_results_name_file_and_line(tmp_path, line, reason):
    path = tmp_path / "comp4_det_test_dog.txt"
    path.write_text("a 0.9 1 1 5 5\n\n" + line + "\n")
    with pytest.raises(InputError, match=re.escape(f"{path}:3: {reason}")):
        read_voc_results([path], ["dog"])


def test_results_file_for_unknown_class(tmp_path):
    path = tmp_path / "comp4_det_test_horse.txt"
    path.write_text("")
    with pytest.raises(InputError, match="does not end in '_<class>.txt'"):
        read_voc_results([path], ["dog", "cat"])
    # the longest matching class name wins (a class name may end with another one)
    (tmp_path / "comp4_det_test_hot_dog.txt").write_text("a 1 1 1 2 2\n")
    got = read_voc_results([tmp_path / "comp4_det_test_hot_dog.txt"], ["dog", "hot_dog"])
    assert got["a"].labels.tolist() == [1]
