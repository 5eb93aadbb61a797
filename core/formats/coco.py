"""COCO instances JSON and COCO results lists.

COCO boxes are ``[x, y, w, h]`` in continuous pixels; inside the project they become xyxy via
:func:`core.boxes.coco_xywh_to_xyxy`. COCO category ids are not contiguous (1..90 with gaps),
so labels are ``0..K-1`` over the categories sorted by id and ``DetectionDataset.class_ids``
keeps the ids for the way back.

Malformed input raises :class:`core.errors.InputError` naming the file and the image,
category, annotation or result (by id where it has one, else by index).
"""
from __future__ import annotations

import json
import logging
import math
import os
from collections import defaultdict

import numpy as np

from core.boxes import coco_xywh_to_xyxy, xyxy_to_coco_xywh
from core.errors import InputError
from core.io import write_json
from core.structures import DetectionDataset, Detections, ImageAnnotations

__all__ = ["read_coco", "write_coco", "write_coco_results", "read_coco_results", "category_ids"]
log = logging.getLogger(__name__)


def load_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not valid JSON: {err}") from None


def _field(path, where: str, record, key: str, kind):
    """``record[key]`` checked to be of ``kind`` (int, float, str or list); error names ``where``."""
    if not isinstance(record, dict):
        raise InputError(f"{path}: {where}: expected an object, got {type(record).__name__}")
    if key not in record:
        raise InputError(f"{path}: {where}: missing field '{key}'")
    value = record[key]
    ok = {
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
        str: isinstance(value, str),
        list: isinstance(value, list),
    }[kind]
    if not ok:
        raise InputError(f"{path}: {where}: field '{key}' must be {kind.__name__}, got {value!r}")
    return value


def _xywh(path, where: str, record) -> list[float]:
    """The record's ``bbox`` as 4 finite numbers with ``w, h >= 0``."""
    bbox = _field(path, where, record, "bbox", list)
    if len(bbox) != 4 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox):
        raise InputError(f"{path}: {where}: bbox must be 4 finite numbers [x, y, w, h], got {bbox!r}")
    if bbox[2] < 0 or bbox[3] < 0:
        raise InputError(f"{path}: {where}: bbox has negative width or height: {bbox!r}")
    return [float(v) for v in bbox]


def _ids(path, where: str, record, image_ids, cat_ids) -> tuple[int, int]:
    """The record's ``image_id`` and ``category_id``, checked to be known."""
    iid = _field(path, where, record, "image_id", int)
    cid = _field(path, where, record, "category_id", int)
    if iid not in image_ids:
        raise InputError(f"{path}: {where}: unknown image_id {iid}")
    if cid not in cat_ids:
        raise InputError(f"{path}: {where}: unknown category_id {cid}")
    return iid, cid


def _categories(path, data) -> tuple[list[int], list[str]]:
    """Category ids (ascending) and names, from the file's ``categories`` list."""
    cats = {}
    for i, cat in enumerate(_field(path, "top level", data, "categories", list)):
        cid = _field(path, f"category {i}", cat, "id", int)
        name = _field(path, f"category id {cid}", cat, "name", str)
        if cid in cats:
            raise InputError(f"{path}: category id {cid} appears twice")
        cats[cid] = name
    ids = sorted(cats)
    return ids, [cats[c] for c in ids]


def _images(path, data) -> list[dict]:
    """The ``images`` records, checked: id, file_name, width, height, and unique ids."""
    images, seen = [], set()
    for i, img in enumerate(_field(path, "top level", data, "images", list)):
        iid = _field(path, f"image {i}", img, "id", int)
        where = f"image id {iid}"
        rec = {"id": iid, "file_name": _field(path, where, img, "file_name", str),
               "width": _field(path, where, img, "width", int),
               "height": _field(path, where, img, "height", int)}
        if iid in seen:
            raise InputError(f"{path}: image id {iid} appears twice")
        seen.add(iid)
        images.append(rec)
    return images


def _annotations(path, data, image_ids: set, cat_label: dict) -> dict[int, list[tuple]]:
    """Per image id, ``(xyxy, label, iscrowd, area)`` tuples in file order.

    ``iscrowd`` defaults to 0 and ``area`` to the box area when absent (pycocotools needs both
    at evaluation time; :func:`write_coco` always writes them).
    """
    per_image = defaultdict(list)
    seen: set[int] = set()
    for i, ann in enumerate(_field(path, "top level", data, "annotations", list)):
        where = f"annotation {i}"
        if isinstance(ann, dict) and "id" in ann:
            aid = _field(path, where, ann, "id", int)
            if aid in seen:  # a copied object: pycocotools would count it twice as a positive
                raise InputError(f"{path}: annotation id {aid} appears twice")
            seen.add(aid)
            where = f"annotation id {aid}"
        iid, cid = _ids(path, where, ann, image_ids, cat_label)
        x, y, w, h = _xywh(path, where, ann)
        crowd = _field(path, where, ann, "iscrowd", int) if "iscrowd" in ann else 0
        area = _field(path, where, ann, "area", float) if "area" in ann else w * h
        per_image[iid].append(([x, y, x + w, y + h], cat_label[cid], bool(crowd), float(area)))
    return per_image


def read_coco(path, image_root: str = "") -> DetectionDataset:
    """Read a COCO instances JSON.

    Args:
        path: the ``instances_*.json`` file.
        image_root: folder the images' ``file_name`` is relative to (stored, not checked).

    Returns:
        A :class:`DetectionDataset` in the file's image order (images without annotations
        kept), labels ``0..K-1`` by ascending category id, ``class_ids`` = category ids,
        ``image_id`` = COCO image id, boxes xyxy float32, ``area`` from the annotations.
    """
    path = os.fspath(path)
    data = load_json(path)
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object with images/annotations/categories")
    cat_ids, names = _categories(path, data)
    images = _images(path, data)
    cat_label = {cid: k for k, cid in enumerate(cat_ids)}
    per_image = _annotations(path, data, {img["id"] for img in images}, cat_label)
    out = []
    for img in images:
        anns = per_image.get(img["id"], [])
        out.append(ImageAnnotations(
            image_id=img["id"], file_name=img["file_name"], width=img["width"], height=img["height"],
            boxes=np.array([a[0] for a in anns], np.float32).reshape(-1, 4),
            labels=np.array([a[1] for a in anns], np.int64),
            iscrowd=np.array([a[2] for a in anns], bool),
            area=np.array([a[3] for a in anns], np.float32)))
    return DetectionDataset(classes=names, images=out, class_ids=cat_ids, image_root=image_root)


def _floats(a) -> list[float]:
    """float32 values as the shortest decimals that read back to the same float32."""
    return [float(str(v)) for v in np.asarray(a, np.float32).reshape(-1)]


def category_ids(dataset: DetectionDataset) -> list[int]:
    """COCO category id per contiguous label: ``class_ids`` when they are ints, else ``1..K``."""
    ids = dataset.class_ids
    if len(ids) == len(dataset.classes) and all(
            isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in ids):
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate category ids in class_ids: {ids}")
        return [int(c) for c in ids]
    return list(range(1, len(dataset.classes) + 1))


def _image_record(img: ImageAnnotations) -> dict:
    return {"id": int(img.image_id), "file_name": img.file_name,
            "width": int(img.width), "height": int(img.height)}


def _annotation_records(img: ImageAnnotations, cat_ids: list[int], next_id: int) -> list[dict]:
    xywh = xyxy_to_coco_xywh(img.boxes)
    records = []
    for j in range(len(img.labels)):
        records.append({
            "id": next_id + j, "image_id": int(img.image_id),
            "category_id": cat_ids[int(img.labels[j])], "bbox": _floats(xywh[j]),
            "area": _floats(img.area[j : j + 1])[0], "iscrowd": int(img.iscrowd[j]),
            "segmentation": []})
    return records


def write_coco(dataset: DetectionDataset, path) -> None:
    """Write ``dataset`` as a COCO instances JSON (atomically) that ``pycocotools.coco.COCO`` loads.

    Category ids come from ``class_ids`` when they are ints (so a read → write round trip keeps
    them), else ``1..K`` in label order. Annotation ids run from 1 in dataset order; boxes are
    written as xywh, ``segmentation`` is empty (boxes only). VOC ``difficult`` flags have no
    COCO field and are not written.
    """
    cat_ids = category_ids(dataset)
    ids = [int(img.image_id) for img in dataset.images]
    if len(set(ids)) != len(ids):
        raise ValueError("write_coco: image ids are not unique")
    difficult = sum(int(img.difficult.sum()) for img in dataset.images)
    if difficult:  # COCO has no such flag; say so rather than drop it silently
        log.warning("write_coco: %d difficult flags not written (COCO has no such field)", difficult)
    annotations = []
    for img in dataset.images:
        annotations += _annotation_records(img, cat_ids, len(annotations) + 1)
    data = {
        "info": {"description": "written by core.formats.coco", "version": "1.0"},
        "licenses": [],
        "categories": [{"id": cid, "name": name, "supercategory": "object"}
                       for cid, name in zip(cat_ids, dataset.classes)],
        "images": [_image_record(img) for img in dataset.images],
        "annotations": annotations,
    }
    write_json(path, data)


def write_coco_results(path, dataset: DetectionDataset, dets: dict[int, Detections]) -> None:
    """Write detections as a COCO results list ``[{image_id, category_id, bbox, score}]``.

    Args:
        dets: per image id, xyxy detections with contiguous labels (mapped back to category ids).
            Images are written in dataset order; an id not in ``dataset`` is an error.
    """
    cat_ids = category_ids(dataset)
    known = {int(img.image_id) for img in dataset.images}
    unknown = sorted(set(int(i) for i in dets) - known)
    if unknown:
        raise InputError(f"{path}: detections for image ids not in the dataset: {unknown[:5]}")
    results = []
    for img in dataset.images:
        d = dets.get(int(img.image_id))
        if d is None:
            continue
        if len(d) and (d.labels.min() < 0 or d.labels.max() >= len(cat_ids)):
            raise InputError(f"{path}: image id {img.image_id}: label outside 0..{len(cat_ids) - 1}")
        xywh = xyxy_to_coco_xywh(d.boxes)
        for j in range(len(d)):
            results.append({"image_id": int(img.image_id), "category_id": cat_ids[int(d.labels[j])],
                            "bbox": _floats(xywh[j]), "score": _floats(d.scores[j : j + 1])[0]})
    write_json(path, results)


def read_split(folder, limit: int = 0) -> DetectionDataset:
    """A split folder: ``annotations.json`` (COCO) with its images in ``images/`` or beside it.

    The layout ``tools/make_synthetic.py`` writes; ``limit`` keeps the first ``limit`` images.
    Any other path goes to :func:`core.datasets.read_split`, which also reads COCO's own layout
    (an instances JSON beside its image folder) and ILSVRC DET's.
    """
    path = os.path.join(folder, "annotations.json")
    if not os.path.isfile(path):
        from core.datasets import read_split as read_any_layout  # imports this module
        return read_any_layout(folder, limit)
    dataset = read_coco(path, image_root=os.path.join(folder, "images"))
    first = dataset.images[0].file_name if dataset.images else ""
    if first and not os.path.exists(os.path.join(dataset.image_root, first)):
        dataset.image_root = str(folder)  # images beside annotations.json
    if limit:
        dataset.images = dataset.images[:limit]
    return dataset


def read_coco_results(path, dataset: DetectionDataset) -> dict[int, Detections]:
    """Read a COCO results list against ``dataset``.

    Returns:
        ``{image_id: Detections}`` for every image of ``dataset`` (empty where it has none),
        boxes xyxy, labels contiguous, in file order within an image. Unknown image or
        category ids, missing fields, non-finite or negative-size boxes raise InputError.
    """
    path = os.fspath(path)
    data = load_json(path)
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a JSON list of results")
    cat_label = {cid: k for k, cid in enumerate(category_ids(dataset))}
    rows = defaultdict(list)
    ids = {int(img.image_id) for img in dataset.images}
    for i, res in enumerate(data):
        where = f"result {i}"
        iid, cid = _ids(path, where, res, ids, cat_label)
        score = _field(path, where, res, "score", float)
        rows[iid].append((_xywh(path, where, res), score, cat_label[cid]))
    out = {}
    for img in dataset.images:
        r = rows.get(int(img.image_id), [])
        out[int(img.image_id)] = Detections(
            boxes=coco_xywh_to_xyxy([x[0] for x in r]), scores=[x[1] for x in r], labels=[x[2] for x in r])
    return out
