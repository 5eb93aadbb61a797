import re

import numpy as np
import pytest
import scipy.io

from core.errors import InputError
from core.formats.ilsvrc import (
    Synset, read_blacklist, read_ilsvrc, read_image_list, read_meta, read_submission,
    submission_from_detections, write_ilsvrc_devkit, write_submission,
)
from core.structures import DetectionDataset, Detections, ImageAnnotations

XML = """<annotation>
  <folder>val</folder><filename>{name}</filename>
  <size><width>500</width><height>375</height></size>
  {objects}
</annotation>"""
OBJ = "<object><name>{}</name><bndbox><xmin>{}</xmin><ymin>{}</ymin><xmax>{}</xmax><ymax>{}</ymax></bndbox></object>"


def _dataset() -> DetectionDataset:
    images = [
        ImageAnnotations(0, "img/a.png", 64, 48, [[0, 0, 10, 20], [5, 6, 64, 48]], [1, 0]),
        ImageAnnotations(1, "img/b.jpg", 30, 30),
        ImageAnnotations(2, "img/c.png", 40, 40, [[3, 3, 4, 4]], [2]),
    ]
    return DetectionDataset(classes=["red square", "blue disc", "star"], images=images)


@pytest.mark.parametrize("meta_name", ["meta_det.mat", "meta_det.txt"])
def test_devkit_round_trip(tmp_path, meta_name):
    ds = _dataset()
    write_ilsvrc_devkit(ds, tmp_path)
    assert (tmp_path / "image_list.txt").read_text() == "img/a 1\nimg/b 2\nimg/c 3\n"
    meta = read_meta(tmp_path / meta_name)
    assert meta == [Synset(1, "n00000001", "red square"), Synset(2, "n00000002", "blue disc"),
                    Synset(3, "n00000003", "star")]
    back = read_ilsvrc(tmp_path / "Annotations", str(tmp_path / "image_list.txt"), str(tmp_path / meta_name))
    assert back.classes == ds.classes and back.class_ids == ["n00000001", "n00000002", "n00000003"]
    assert [i.image_id for i in back.images] == [1, 2, 3]
    for a, b in zip(ds.images, back.images):
        assert (a.file_name, a.width, a.height) == (b.file_name, b.width, b.height)
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.labels, b.labels)


def test_meta_mat_mirrors_devkit_layout(tmp_path):
    write_ilsvrc_devkit(_dataset(), tmp_path)
    synsets = scipy.io.loadmat(tmp_path / "meta_det.mat")["synsets"]
    assert synsets.shape == (1, 3)
    assert set(synsets.dtype.names) == {"ILSVRC2014_DET_ID", "WNID", "name", "description"}


def test_meta_mat_is_byte_identical_between_runs(tmp_path, monkeypatch):
    import time
    stamps = iter(["Mon Jan  1 00:00:00 2024", "Tue Jan  2 12:34:56 2024"])
    monkeypatch.setattr(time, "asctime", lambda *a: next(stamps))  # scipy's "Created on:" text
    write_ilsvrc_devkit(_dataset(), tmp_path / "a")
    write_ilsvrc_devkit(_dataset(), tmp_path / "b")
    first, second = (tmp_path / "a" / "meta_det.mat").read_bytes(), (tmp_path / "b" / "meta_det.mat").read_bytes()
    assert first == second and first.startswith(b"MATLAB 5.0 MAT-file")
    assert scipy.io.loadmat(tmp_path / "a" / "meta_det.mat")["synsets"].shape == (1, 3)
    assert [s.name for s in read_meta(tmp_path / "a" / "meta_det.mat")] == _dataset().classes


def test_wnid_class_ids_are_kept(tmp_path):
    ds = _dataset()
    ds.class_ids = ["n02691156", "n02419796", "n01503061"]
    write_ilsvrc_devkit(ds, tmp_path)
    assert [s.wnid for s in read_meta(tmp_path / "meta_det.txt")] == ds.class_ids


@pytest.mark.parametrize("field", ["ILSVRC2013_DET_ID", "ILSVRC2015_DET_ID"])
@pytest.mark.parametrize("n", [1, 3])
def test_read_meta_hand_built_mat(tmp_path, field, n):
    # Like the devkit: a 1xN struct, DET_ID as double, given here out of order, one empty string.
    arr = np.empty((1, n), dtype=[(field, object), ("WNID", object), ("name", object), ("description", object)])
    for j in range(n):
        arr[0, j] = (np.array([[float(n - j)]]), f"n0000000{n - j}", f"class {n - j}", "" if j else "d")
    scipy.io.savemat(tmp_path / "meta_det.mat", {"synsets": arr})
    meta = read_meta(tmp_path / "meta_det.mat")
    assert meta == [Synset(k, f"n0000000{k}", f"class {k}") for k in range(1, n + 1)]


def test_read_meta_errors(tmp_path):
    (tmp_path / "m.txt").write_text("1 n01 a b\n2 n02\n")
    with pytest.raises(InputError, match=r"m.txt:2: expected 'DET_ID WNID name'"):
        read_meta(tmp_path / "m.txt")
    (tmp_path / "m.txt").write_text("1 n01 a\nx n02 b\n")
    with pytest.raises(InputError, match=r"m.txt:2: DET_ID is not an integer"):
        read_meta(tmp_path / "m.txt")
    (tmp_path / "m.txt").write_text("1 n01 a\n2 n01 b\n")
    with pytest.raises(InputError, match=r"duplicate wnid"):
        read_meta(tmp_path / "m.txt")
    scipy.io.savemat(tmp_path / "m.mat", {"other": np.zeros(2)})
    with pytest.raises(InputError, match=r"m.mat: no 'synsets'"):
        read_meta(tmp_path / "m.mat")


def test_reads_real_format_xml(tmp_path):
    """Devkit conventions: 0-based inclusive boxes, <filename> without extension, list names with
    folders, an image without objects that has no XML, meta lines out of DET_ID order."""
    ann = tmp_path / "Annotations" / "n0001"
    ann.mkdir(parents=True)
    objects = OBJ.format("n02", 0, 0, 9, 19) + OBJ.format("n01", 10, 10, 10, 10)
    (ann / "x_1.xml").write_text(XML.format(name="x_1", objects=objects))
    (tmp_path / "list.txt").write_text("n0001/x_1 1\n\nn0001/x_2 2\n")
    (tmp_path / "meta.txt").write_text("2 n02 second class\n1 n01 first\n")
    ds = read_ilsvrc(tmp_path / "Annotations", tmp_path / "list.txt", tmp_path / "meta.txt")
    assert ds.classes == ["first", "second class"] and ds.class_ids == ["n01", "n02"]
    a, b = ds.images
    assert (a.image_id, a.file_name, a.width, a.height) == (1, "n0001/x_1.JPEG", 500, 375)
    np.testing.assert_array_equal(a.boxes, [[0, 0, 10, 20], [10, 10, 11, 11]])
    assert a.labels.tolist() == [1, 0]
    assert (b.image_id, b.width, len(b.boxes)) == (2, 0, 0)


def test_image_file_extension_found_under_image_root(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "p.png").write_bytes(b"")
    (tmp_path / "q.xml").write_text(XML.format(name="q", objects=""))  # q.JPEG: the devkit's guess
    ds = read_ilsvrc(tmp_path, [("p", 1), ("q", 2)], [Synset(1, "n01", "a")], image_root=str(tmp_path / "imgs"))
    assert [i.file_name for i in ds.images] == ["p.png", "q.JPEG"]


def test_gt_dir_not_a_folder_or_without_any_listed_xml(tmp_path):
    meta = [Synset(1, "n01", "a")]
    (tmp_path / "file").write_text("x")
    for gt_dir, reason in [(tmp_path / "file", "not a folder"), (tmp_path / "nope", "no such folder")]:
        with pytest.raises(InputError, match=re.escape(f"{gt_dir}: {reason}")):
            read_ilsvrc(gt_dir, [("x", 1)], meta)
    (tmp_path / "other.xml").write_text(XML.format(name="other", objects=""))
    with pytest.raises(InputError, match=re.escape(f"{tmp_path}: none of the 2 listed images has an XML")):
        read_ilsvrc(tmp_path, [("x", 1), ("y", 2)], meta)
    assert read_ilsvrc(tmp_path, [], meta).images == []  # an empty list is not a wrong folder


@pytest.mark.parametrize("body, reason", [
    ("<annotation><size>", "XML parse error"),
    (XML.format(name="x", objects=OBJ.format("n01", 0, 0, 5, 5) + "<object><name>n01</name></object>"),
     "object 2: missing <bndbox>"),
    (XML.format(name="x", objects=OBJ.format("n01", 0, 0, 5, 5) + OBJ.format("n01", 0, 0, "", 5)),
     "object 2 bndbox: missing <xmax>"),
    (XML.format(name="x", objects=OBJ.format("n01", 0, 0, 5, 5) + OBJ.format("n01", 0, "a", 5, 5)),
     "object 2 bndbox: <ymin> is not a number: 'a'"),
    (XML.format(name="x", objects=OBJ.format("n01", 0, 0, 5, 5) + OBJ.format("n01", 6, 0, 5, 5)),
     "object 2: xmax < xmin"),
    (XML.format(name="x", objects=OBJ.format("n01", 0, 0, 5, 5) + OBJ.format("n01", 0, 6, 5, 5)),
     "object 2: ymax < ymin"),
    (XML.format(name="x", objects=OBJ.format("n01", 0, 0, 5, 5) + OBJ.format("n99", 0, 0, 5, 5)),
     "object 2: WNID 'n99' is not in the meta file"),
    ("<root/>", "root element is <root>"),
])
def test_malformed_xml_names_file_and_object(tmp_path, body, reason):
    (tmp_path / "x.xml").write_text(body)
    with pytest.raises(InputError, match=re.escape(f"{tmp_path / 'x.xml'}: {reason}")):
        read_ilsvrc(tmp_path, [("x", 1)], [Synset(1, "n01", "a")])


def test_image_list_and_blacklist(tmp_path):
    (tmp_path / "l.txt").write_text("a 1\r\nb/c 3\n\n")
    assert read_image_list(tmp_path / "l.txt") == [("a", 1), ("b/c", 3)]
    (tmp_path / "bl.txt").write_text("36 n01443537\n36 n01495701\n")
    assert read_blacklist(tmp_path / "bl.txt") == [(36, "n01443537"), (36, "n01495701")]
    for text, reason in [("a 1\nb\n", "l.txt:2: expected '<name> <index>'"),
                         ("a 1\nb x\n", "l.txt:2: index is not an integer"),
                         ("a 1\nb 1\n", "l.txt:2: index 1 already used on line 1")]:
        (tmp_path / "l.txt").write_text(text)
        with pytest.raises(InputError, match=re.escape(reason)):
            read_image_list(tmp_path / "l.txt")
    (tmp_path / "bl.txt").write_text("x n01\n")
    with pytest.raises(InputError, match=re.escape("bl.txt:1: index is not an integer")):
        read_blacklist(tmp_path / "bl.txt")


def test_submission_round_trip_200k_lines(tmp_path):
    rng = np.random.default_rng(0)
    n = 200_000
    idx, det = rng.integers(1, 5000, n), rng.integers(1, 201, n)
    score = rng.random(n).astype(np.float32)
    boxes = (rng.random((n, 4)) * 300).astype(np.float32)
    boxes[:, 2:] += boxes[:, :2]
    write_submission(tmp_path / "sub.txt", idx, det, score, boxes)
    sub = read_submission(tmp_path / "sub.txt")
    assert len(sub) == n and sub.image_index.dtype == np.int64 and sub.boxes.shape == (n, 4)
    np.testing.assert_array_equal(sub.image_index, idx)
    np.testing.assert_array_equal(sub.det_id, det)
    np.testing.assert_array_equal(sub.score.astype(np.float32), score)  # 9 digits: float32 exact
    np.testing.assert_array_equal(sub.boxes.astype(np.float32), boxes)
    np.testing.assert_array_equal(sub.line, np.arange(1, n + 1))


def test_submission_layout_variants(tmp_path):
    path = tmp_path / "s.txt"
    path.write_text("\n1 2 0.5 0 0 9 9\r\n\n  3 4 1e-3 1.5 2 3 4\t\n5 6 7 8 9 10 11")  # no final newline
    sub = read_submission(path)
    assert sub.line.tolist() == [2, 4, 5] and sub.image_index.tolist() == [1, 3, 5]
    assert sub.score.tolist() == [0.5, 0.001, 7.0] and sub.boxes[1].tolist() == [1.5, 2, 3, 4]
    for text in ["", "\n\n", "   "]:
        path.write_text(text)
        sub = read_submission(path)
        assert len(sub) == 0 and sub.boxes.shape == (0, 4)


@pytest.mark.parametrize("bad, reason", [
    ("1 2 0.5 0 0 9", "expected 7 fields"),
    ("1 2 0.5 0 0 9 9 9", "expected 7 fields"),
    ("1 2 high 0 0 9 9", "confidence is not a number: 'high'"),
    ("1 2 0.5 0 0 9 9,", "ymax is not a number"),
    ("1 2 0.5 0 0 0x9 9", "xmax is not a number"),
    ("1 2 nan 0 0 9 9", "NaN or infinite"),
    ("1 2 0.5 0 0 inf 9", "NaN or infinite"),
    ("1 2 0.5 5 0 4 9", "xmax < xmin"),
    ("1 2 0.5 0 5 9 4", "ymax < ymin"),
    ("1.5 2 0.5 0 0 9 9", "index and DET_ID must be integers"),
    ("0 2 0.5 0 0 9 9", "index and DET_ID must be >= 1"),
])
def test_submission_errors_name_file_and_line(tmp_path, bad, reason):
    path = tmp_path / "s.txt"
    path.write_text("1 1 0.9 0 0 5 5\n\n2 1 0.8 0 0 5 5\n" + bad + "\n3 1 0.7 0 0 5 5\n")
    with pytest.raises(InputError, match=re.escape(f"{path}:4: {reason}")):
        read_submission(path)


def test_submission_from_detections(tmp_path):
    ds = _dataset()
    ds.images[0].image_id, ds.images[2].image_id = 10, 30
    dets = {10: Detections([[0, 0, 10, 20]], [0.5], [2]), 30: Detections([[1, 1, 3, 3]], [0.25], [0]),
            1: Detections()}
    sub = submission_from_detections(ds, dets)
    assert sub.image_index.tolist() == [10, 30] and sub.det_id.tolist() == [3, 1]
    assert sub.boxes.tolist() == [[0, 0, 9, 19], [1, 1, 2, 2]]
    write_submission(tmp_path / "s.txt", sub.image_index, sub.det_id, sub.score, sub.boxes)
    assert (tmp_path / "s.txt").read_text() == "10 3 0.5 0 0 9 19\n30 1 0.25 1 1 2 2\n"
    assert len(submission_from_detections(ds, {})) == 0
