"""PASCAL VOC: ``Annotations/*.xml``, ``ImageSets/Main/*.txt`` lists and per-class result files.

VOC boxes are 1-based inclusive pixels, converted with :func:`core.boxes.voc_to_xyxy`; objects
carry a ``difficult`` flag. Result files (devkit ``comp4_det_test_<class>.txt``) hold lines
``image_id score xmin ymin xmax ymax`` in the same 1-based inclusive pixels.

Malformed input raises :class:`core.errors.InputError` naming the file and line or element.
"""
from __future__ import annotations

import os
from collections import defaultdict

import numpy as np

from core.boxes import voc_to_xyxy, xyxy_to_voc
from core.errors import InputError
from core.io import write_text
from core.structures import DetectionDataset, Detections, ImageAnnotations
from core.formats.xmlutil import (
    XmlAnnotation, XmlObject, read_annotation_xml, read_lines, write_annotation_xml,
)

__all__ = [
    "VOC_CLASSES", "read_image_set", "read_voc", "write_voc_xml", "write_voc", "read_voc_results",
    "write_voc_results",
]

# The 20 VOC classes in devkit order (which is alphabetical).
VOC_CLASSES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
]


def read_image_set(path) -> list[str]:
    """Image stems of an ``ImageSets/Main`` list, in file order.

    Accepts the split lists (``stem`` a line) and the per-class lists (``stem  1|0|-1``; every
    listed image is part of the split, so the flag is not used). Duplicates are errors.
    """
    path = os.fspath(path)
    stems, seen = [], {}
    for lineno, line in enumerate(read_lines(path), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) > 2:
            raise InputError(f"{path}:{lineno}: expected '<image stem> [flag]', got {line.strip()!r}")
        if parts[0] in seen:
            raise InputError(f"{path}:{lineno}: image {parts[0]!r} already listed on line {seen[parts[0]]}")
        seen[parts[0]] = lineno
        stems.append(parts[0])
    return stems


def _labels(xml_path: str, objects: list[XmlObject], class_index: dict) -> list[int]:
    labels = []
    for j, obj in enumerate(objects):
        if obj.name not in class_index:
            raise InputError(f"{xml_path}: object {j + 1}: unknown class {obj.name!r}")
        labels.append(class_index[obj.name])
    return labels


def read_voc(ann_dir, image_list, classes: list[str] | None = None,
             image_root: str | None = None) -> DetectionDataset:
    """Read VOC ground truth.

    Args:
        ann_dir: the ``Annotations`` folder (``<stem>.xml`` per image; a missing one is an error).
        image_list: an ``ImageSets/Main/*.txt`` path, or a list of stems.
        classes: class names in label order; None = the names found, sorted (for real VOC that
            is :data:`VOC_CLASSES`). A name not in ``classes`` raises InputError.
        image_root: images folder; default the ``JPEGImages`` folder beside ``ann_dir``.

    Returns:
        Images in list order, ``image_id`` = position in the list (0-based), ``file_name`` =
        the XML's ``<filename>`` (``<stem>.jpg`` when absent), boxes xyxy, ``difficult`` flags.
    """
    ann_dir = os.fspath(ann_dir)
    stems = read_image_set(image_list) if isinstance(image_list, (str, os.PathLike)) else list(image_list)
    paths = [os.path.join(ann_dir, stem + ".xml") for stem in stems]
    anns = [read_annotation_xml(p) for p in paths]
    if classes is None:
        classes = sorted({o.name for a in anns for o in a.objects})
    class_index = {name: k for k, name in enumerate(classes)}
    images = []
    for i, (stem, path, ann) in enumerate(zip(stems, paths, anns)):
        images.append(ImageAnnotations(
            image_id=i, file_name=ann.filename or stem + ".jpg", width=ann.width, height=ann.height,
            boxes=voc_to_xyxy([o.box for o in ann.objects]), labels=_labels(path, ann.objects, class_index),
            difficult=[o.difficult for o in ann.objects]))
    if image_root is None:
        image_root = os.path.join(os.path.dirname(os.path.abspath(ann_dir)), "JPEGImages")
    return DetectionDataset(classes=list(classes), images=images, image_root=image_root)


def write_voc_xml(path, ann: ImageAnnotations, classes: list[str]) -> None:
    """Write one image's ground truth as a VOC XML (1-based inclusive integer boxes, difficult flags)."""
    boxes = xyxy_to_voc(ann.boxes)
    objects = [XmlObject(classes[int(k)], boxes[j], bool(ann.difficult[j])) for j, k in enumerate(ann.labels)]
    xml = XmlAnnotation(filename=os.path.basename(ann.file_name), width=ann.width, height=ann.height,
                        objects=objects)
    write_annotation_xml(path, xml, folder="VOC", write_difficult=True)


def image_stem(ann: ImageAnnotations) -> str:
    """The VOC image id of an image: its file name without folder and extension."""
    return os.path.splitext(os.path.basename(ann.file_name))[0]


def write_voc(dataset: DetectionDataset, out_dir, split: str = "trainval") -> None:
    """Write ``out_dir/Annotations/<stem>.xml`` per image and ``out_dir/ImageSets/Main/<split>.txt``."""
    out_dir = os.fspath(out_dir)
    stems = [image_stem(img) for img in dataset.images]
    if len(set(stems)) != len(stems):
        raise ValueError("write_voc: two images share a file name stem")
    for stem, img in zip(stems, dataset.images):
        write_voc_xml(os.path.join(out_dir, "Annotations", stem + ".xml"), img, dataset.classes)
    write_text(os.path.join(out_dir, "ImageSets", "Main", split + ".txt"), "".join(s + "\n" for s in stems))


def _class_of_file(path: str, classes: list[str]) -> int:
    """The class a result file is for: the longest class name ``c`` with the file stem ``*_c``."""
    stem = os.path.splitext(os.path.basename(path))[0]
    matches = [k for k, c in enumerate(classes) if stem == c or stem.endswith("_" + c)]
    if not matches:
        raise InputError(f"{path}: file name does not end in '_<class>.txt' for any of {classes}")
    return max(matches, key=lambda k: len(classes[k]))


def _result_rows(path: str):
    """``(stem, score, [xmin, ymin, xmax, ymax])`` per non-blank line, checked."""
    for lineno, line in enumerate(read_lines(path), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 6:
            raise InputError(f"{path}:{lineno}: expected 'image_id score xmin ymin xmax ymax', "
                             f"got {len(parts)} fields")
        try:
            nums = [float(t) for t in parts[1:]]
        except ValueError:
            raise InputError(f"{path}:{lineno}: not a number in {' '.join(parts[1:])!r}") from None
        if not np.isfinite(nums).all():
            raise InputError(f"{path}:{lineno}: NaN or infinite value")
        if nums[3] < nums[1] or nums[4] < nums[2]:
            raise InputError(f"{path}:{lineno}: inverted box (xmax < xmin or ymax < ymin)")
        yield parts[0], nums[0], nums[1:]


def read_voc_results(paths: list[str], classes: list[str]) -> dict[str, Detections]:
    """Read devkit per-class result files.

    Args:
        paths: files named ``..._<class>.txt`` (e.g. ``comp4_det_test_car.txt``).
        classes: class names in label order.

    Returns:
        ``{image stem: Detections}`` (xyxy boxes, contiguous labels), stems in first-seen order,
        detections in file then line order.
    """
    rows = defaultdict(list)
    for path in map(os.fspath, paths):
        label = _class_of_file(path, classes)
        for stem, score, box in _result_rows(path):
            rows[stem].append((score, box, label))
    return {stem: Detections(boxes=voc_to_xyxy([r[1] for r in rs]), scores=[r[0] for r in rs],
                             labels=[r[2] for r in rs]) for stem, rs in rows.items()}


def write_voc_results(out_dir, dataset: DetectionDataset, dets: dict[int, Detections],
                      prefix: str = "comp4_det_test_") -> list[str]:
    """Write one ``<prefix><class>.txt`` per class (every class, empty files included).

    Lines are ``stem score xmin ymin xmax ymax`` (1-based inclusive, 9 significant digits) in
    dataset image order. Returns the paths written, in class order.
    """
    lines = [[] for _ in dataset.classes]
    for img in dataset.images:
        d = dets.get(int(img.image_id))
        if d is None:
            continue
        boxes = xyxy_to_voc(d.boxes).tolist()
        for box, score, label in zip(boxes, d.scores.tolist(), d.labels.tolist()):
            lines[label].append("%s %.9g %.9g %.9g %.9g %.9g\n" % (image_stem(img), score, *box))
    paths = [os.path.join(os.fspath(out_dir), f"{prefix}{c}.txt") for c in dataset.classes]
    for path, rows in zip(paths, lines):
        write_text(path, "".join(rows))
    return paths
