import json

import numpy as np
import pytest
from pycocotools.coco import COCO

from core.errors import InputError
from core.formats.coco import read_coco, read_coco_results, read_split, write_coco, write_coco_results
from core.structures import DetectionDataset, Detections, ImageAnnotations


def _dataset() -> DetectionDataset:
    """Non-contiguous category ids, a crowd box, fractional coords and an image with no boxes."""
    images = [
        ImageAnnotations(11, "a/one.jpg", 640, 480, [[10.5, 20.25, 110.5, 220.0], [0, 0, 640, 480]],
                         [2, 0], iscrowd=[False, True], area=[1234.5, 300000.0]),
        ImageAnnotations(4, "two.png", 32, 48),
        ImageAnnotations(7, "three.png", 100, 100, [[1, 2, 3, 4]], [1]),
    ]
    return DetectionDataset(classes=["cat", "dog", "traffic light"], images=images, class_ids=[3, 17, 90])


def _assert_same(a: DetectionDataset, b: DetectionDataset) -> None:
    assert a.classes == b.classes and a.class_ids == b.class_ids
    assert [i.image_id for i in a.images] == [i.image_id for i in b.images]
    for x, y in zip(a.images, b.images):
        assert (x.file_name, x.width, x.height) == (y.file_name, y.width, y.height)
        np.testing.assert_array_equal(x.boxes, y.boxes)
        np.testing.assert_array_equal(x.labels, y.labels)
        np.testing.assert_array_equal(x.iscrowd, y.iscrowd)
        np.testing.assert_array_equal(x.area, y.area)


def test_round_trip_and_pycocotools_loads_it(tmp_path):
    ds = _dataset()
    path = tmp_path / "instances.json"
    write_coco(ds, path)
    _assert_same(ds, read_coco(path))
    coco = COCO(str(path))
    assert coco.getCatIds() == [3, 17, 90]
    assert sorted(coco.getImgIds()) == [4, 7, 11]
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[11]))
    assert [a["id"] for a in anns] == [1, 2]
    assert anns[0]["bbox"] == [10.5, 20.25, 100.0, 199.75] and anns[0]["category_id"] == 90
    assert anns[1]["iscrowd"] == 1 and anns[0]["area"] == 1234.5
    data = json.loads(path.read_text())
    assert {"info", "licenses", "categories", "images", "annotations"} <= set(data)


@pytest.mark.parametrize("images_dir", ["images", ""])
def test_read_split_finds_images_in_either_layout_and_keeps_the_first_n(tmp_path, images_dir):
    ds = _dataset()
    write_coco(ds, tmp_path / "annotations.json")
    (tmp_path / images_dir / "a").mkdir(parents=True)
    (tmp_path / images_dir / "a" / "one.jpg").write_bytes(b"")
    split = read_split(tmp_path, limit=2)
    assert split.image_root == str(tmp_path / images_dir).rstrip("/")
    assert [i.image_id for i in split.images] == [11, 4]
    with pytest.raises(InputError, match="annotations.json: no such file"):
        read_split(tmp_path / "missing")


def test_reads_hand_written_file(tmp_path):
    data = {
        "images": [{"id": 1, "file_name": "x.jpg", "width": 50, "height": 40},
                   {"id": 2, "file_name": "empty.jpg", "width": 10, "height": 10}],
        "categories": [{"id": 90, "name": "z"}, {"id": 5, "name": "a"}],
        "annotations": [{"id": 8, "image_id": 1, "category_id": 90, "bbox": [1, 2, 3, 4], "area": 7.0},
                        {"id": 9, "image_id": 1, "category_id": 5, "bbox": [0, 0, 50, 40], "iscrowd": 1}],
    }
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(data))
    ds = read_coco(path, image_root="/imgs")
    assert ds.classes == ["a", "z"] and ds.class_ids == [5, 90] and ds.image_root == "/imgs"
    one, empty = ds.images
    np.testing.assert_array_equal(one.boxes, [[1, 2, 4, 6], [0, 0, 50, 40]])
    assert one.labels.tolist() == [1, 0] and one.iscrowd.tolist() == [False, True]
    assert one.area.tolist() == [7.0, 2000.0]  # given area kept; missing area = box area
    assert len(empty.boxes) == 0 and empty.boxes.shape == (0, 4)


def _broken(**changes):
    ann = {"id": 12, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "area": 25, "iscrowd": 0}
    ann.update(changes)
    return {"images": [{"id": 1, "file_name": "x.jpg", "width": 9, "height": 9}],
            "categories": [{"id": 1, "name": "a"}], "annotations": [{k: v for k, v in ann.items() if v != "DROP"}]}


@pytest.mark.parametrize("changes, reason", [
    ({"bbox": "DROP"}, "annotation id 12: missing field 'bbox'"),
    ({"bbox": [0, 0, -1, 5]}, "annotation id 12: bbox has negative width"),
    ({"bbox": [0, 0, 5]}, "annotation id 12: bbox must be 4"),
    ({"bbox": [0, float("nan"), 5, 5]}, "annotation id 12: bbox must be 4 finite"),
    ({"category_id": 4}, "annotation id 12: unknown category_id 4"),
    ({"image_id": 3}, "annotation id 12: unknown image_id 3"),
    ({"iscrowd": "no"}, "annotation id 12: field 'iscrowd' must be int"),
    ({"id": "DROP", "image_id": "DROP"}, "annotation 0: missing field 'image_id'"),
])
def test_malformed_annotations_name_file_and_annotation(tmp_path, changes, reason):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(_broken(**changes)))
    with pytest.raises(InputError, match=f"^{path}: {reason}"):
        read_coco(path)


def test_malformed_file_level(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        read_coco(path)
    data = _broken()
    del data["images"][0]["width"]
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match="image id 1: missing field 'width'"):
        read_coco(path)
    data = _broken()
    data["categories"].append({"id": 1, "name": "again"})
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match="category id 1 appears twice"):
        read_coco(path)
    data = _broken()
    data["annotations"].append(dict(data["annotations"][0]))
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"bad.json: annotation id \d+ appears twice"):
        read_coco(path)
    with pytest.raises(InputError, match="file not found"):
        read_coco(tmp_path / "missing.json")


def test_results_round_trip_and_pycocotools_load_res(tmp_path):
    ds = _dataset()
    dets = {11: Detections([[1.5, 2, 30, 40], [0, 0, 5, 5]], [0.9, 0.25], [2, 0]), 4: Detections()}
    path = tmp_path / "results.json"
    write_coco_results(path, ds, dets)
    back = read_coco_results(path, ds)
    assert sorted(back) == [4, 7, 11] and len(back[7]) == 0 and len(back[4]) == 0
    np.testing.assert_array_equal(back[11].boxes, dets[11].boxes)
    np.testing.assert_array_equal(back[11].scores, dets[11].scores)
    np.testing.assert_array_equal(back[11].labels, dets[11].labels)
    assert json.loads(path.read_text())[0]["category_id"] == 90
    gt_path = tmp_path / "gt.json"
    write_coco(ds, gt_path)
    res = COCO(str(gt_path)).loadRes(str(path))
    assert len(res.getAnnIds()) == 2


@pytest.mark.parametrize("result, reason", [
    ({"image_id": 5, "category_id": 3, "bbox": [0, 0, 1, 1], "score": 1}, "result 1: unknown image_id 5"),
    ({"image_id": 4, "category_id": 4, "bbox": [0, 0, 1, 1], "score": 1}, "result 1: unknown category_id 4"),
    ({"image_id": 4, "category_id": 3, "bbox": [0, 0, float("nan"), 1], "score": 1}, "result 1: bbox"),
    ({"image_id": 4, "category_id": 3, "bbox": [0, 0, 1, 1], "score": float("inf")}, "result 1: field 'score'"),
    ({"image_id": 4, "category_id": 3, "bbox": [0, 0, 1, 1]}, "result 1: missing field 'score'"),
])
def test_malformed_results(tmp_path, result, reason):
    good = {"image_id": 4, "category_id": 3, "bbox": [0, 0, 1, 1], "score": 0.5}
    path = tmp_path / "res.json"
    path.write_text(json.dumps([good, result]))
    with pytest.raises(InputError, match=f"^{path}: {reason}"):
        read_coco_results(path, _dataset())


def test_empty_results_and_string_class_ids(tmp_path):
    ds = DetectionDataset(classes=["a", "b"], images=[ImageAnnotations(0, "x.png", 5, 5, [[0, 0, 1, 1]], [1])])
    path = tmp_path / "gt.json"
    write_coco(ds, path)  # class_ids are names here, so category ids become 1..K
    assert read_coco(path).class_ids == [1, 2]
    (tmp_path / "res.json").write_text("[]")
    assert len(read_coco_results(tmp_path / "res.json", ds)[0]) == 0
