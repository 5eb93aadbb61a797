"""core.datasets: the synthetic split folder, COCO's own layout and the ILSVRC DET package, read as
they come (small fixtures written in exactly those layouts)."""
import numpy as np
import pytest
from PIL import Image

from core.datasets import open_split, read_split
from core.errors import InputError
from core.formats import coco as coco_format
from core.formats.coco import write_coco
from core.formats.ilsvrc import Synset, det_train_entries, write_det_split
from core.structures import DetectionDataset, ImageAnnotations

CLASSES = ["cat", "dog"]


def _image(path, width=40, height=30):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(path, format="JPEG")


def _dataset(names, boxes_per_image, classes=CLASSES) -> DetectionDataset:
    images = [ImageAnnotations(i + 1, name, 40, 30, [b[0] for b in boxes], [b[1] for b in boxes])
              for i, (name, boxes) in enumerate(zip(names, boxes_per_image))]
    return DetectionDataset(list(classes), images)


def coco_layout(root, folder="val2017"):
    """COCO as it ships: annotations/instances_val2017.json beside the image folder."""
    ds = _dataset(["000000000139.jpg", "000000000285.jpg"], [[([1, 2, 11, 12], 0)], [([5, 5, 25, 20], 1)]])
    write_coco(ds, root / "annotations" / "instances_val2017.json")
    for img in ds.images:
        _image(root / folder / img.file_name)
    return root / "annotations" / "instances_val2017.json"


def det_layout(root):
    """The ILSVRC DET package: ILSVRC/{Annotations,Data,ImageSets}/DET, devkit/data beside them."""
    train = _dataset(["ILSVRC2013_train/n00000001/n00000001_7.JPEG", "ILSVRC2014_train_0000/ILSVRC2014_train_00000001.JPEG",
                      "ILSVRC2013_train_extra0/ILSVRC2013_train_00000004.JPEG"],
                     [[([1, 2, 11, 12], 0)], [([5, 5, 25, 20], 1), ([0, 0, 8, 8], 0)], []])
    val = _dataset(["ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000002.JPEG"],
                   [[([3, 3, 13, 13], 1)], []])
    ilsvrc = root / "ILSVRC"
    write_det_split(train, ilsvrc, "train")
    write_det_split(val, ilsvrc, "val")
    for split, ds in (("train", train), ("val", val)):
        for img in ds.images:
            _image(ilsvrc / "Data" / "DET" / split / img.file_name, width=40 + img.image_id)
    # the real negative images have no XML, and the partial flag (0) exists too
    (ilsvrc / "Annotations/DET/train/ILSVRC2013_train_extra0/ILSVRC2013_train_00000004.xml").unlink()
    with open(ilsvrc / "ImageSets/DET/train_2.txt", "a") as f:
        f.write("ILSVRC2013_train/n00000001/n00000001_7 0\n")
    (ilsvrc / "devkit/data/ILSVRC2015_det_validation_blacklist.txt").write_text("2 n00000001\n")
    return ilsvrc


def test_synthetic_folder_as_before(tmp_path):
    ds = _dataset(["a.jpg"], [[([1, 2, 11, 12], 0)]])
    write_coco(ds, tmp_path / "annotations.json")
    _image(tmp_path / "images" / "a.jpg")
    split = open_split(tmp_path)
    assert split.fmt == "coco" and split.dataset.image_root == str(tmp_path / "images")


@pytest.mark.parametrize("folder", ["val2017", "pictures"])
def test_coco_instances_json_finds_its_image_folder(tmp_path, folder):
    gt = coco_layout(tmp_path, folder)
    split = open_split(gt)
    assert split.fmt == "coco" and split.dataset.image_root == str(tmp_path / folder)
    assert [i.image_id for i in split.dataset.images] == [1, 2]
    # the loader the training tools call takes it too, without renaming anything
    assert coco_format.read_split(str(gt), limit=1).images[0].file_name == "000000000139.jpg"


def test_coco_json_without_its_images_says_so(tmp_path):
    gt = coco_layout(tmp_path)
    (tmp_path / "val2017" / "000000000139.jpg").unlink()
    with pytest.raises(InputError, match="no folder beside it holds its first image"):
        open_split(gt)
    assert open_split(gt, images=str(tmp_path / "val2017")).dataset.image_root == str(tmp_path / "val2017")


def test_det_train_reads_every_list_with_negative_only_images(tmp_path):
    root = det_layout(tmp_path)
    split = open_split(root / "Data" / "DET" / "train")
    ds = split.dataset
    assert split.fmt == "ilsvrc" and ds.classes == CLASSES and ds.class_ids == ["n00000001", "n00000002"]
    names = [img.file_name for img in ds.images]
    assert names == ["ILSVRC2013_train/n00000001/n00000001_7.JPEG",
                     "ILSVRC2014_train_0000/ILSVRC2014_train_00000001.JPEG",
                     "ILSVRC2013_train_extra0/ILSVRC2013_train_00000004.JPEG"]
    assert [len(img.labels) for img in ds.images] == [1, 2, 0]
    negative = ds.images[2]
    assert (negative.width, negative.height) == (43, 30)  # no XML: size from the image file
    assert ds.images[1].labels.tolist() == [1, 0]
    np.testing.assert_allclose(ds.images[0].boxes, [[1, 2, 11, 12]])
    assert len(read_split(root / "Data" / "DET" / "train", limit=1).images) == 1


def test_det_val_with_list_meta_and_blacklist(tmp_path):
    root = det_layout(tmp_path)
    for source in (root, root / "Data" / "DET" / "val"):
        split = open_split(source)
        assert split.fmt == "ilsvrc" and [i.image_id for i in split.dataset.images] == [1, 2]
        assert split.blacklist == [(2, "n00000001")]
        assert split.dataset.image_root == str(root / "Data" / "DET" / "val")
    # the devkit unpacked beside the data rather than inside it
    (root / "devkit").rename(tmp_path / "devkit")
    assert open_split(root).blacklist == [(2, "n00000001")]


def test_det_errors_name_the_missing_part(tmp_path):
    root = det_layout(tmp_path)
    (root / "ImageSets/DET/train_2.txt").unlink()
    with pytest.raises(InputError, match="train_2.txt: no such file"):
        open_split(root / "Data" / "DET" / "train")
    (root / "ImageSets/DET/train_1.txt").write_text("ILSVRC2013_train/n00000001/n00000001_7 2\n")
    with pytest.raises(InputError, match="train_1.txt:1: label must be 1, 0 or -1"):
        det_train_entries(root / "ImageSets/DET", [Synset(1, "n00000001", "cat")])
    (root / "devkit/data/meta_det.mat").unlink()
    with pytest.raises(InputError, match="no meta_det.mat"):
        open_split(root)
    with pytest.raises(InputError, match="annotations.json: no such file"):
        open_split(tmp_path / "nothing")


def test_devkit_folder_as_make_synthetic_writes_it(tmp_path):
    from core.formats.ilsvrc import write_ilsvrc_devkit
    ds = _dataset(["a.jpg"], [[([1, 2, 11, 12], 1)]])
    write_ilsvrc_devkit(ds, tmp_path / "ilsvrc")
    _image(tmp_path / "images" / "a.jpg")
    split = open_split(tmp_path / "ilsvrc")
    assert split.fmt == "ilsvrc" and split.dataset.image_root == str(tmp_path / "images")
    assert split.dataset.images[0].labels.tolist() == [1]
