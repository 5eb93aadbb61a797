"""PASCAL-style annotation XML, shared by the ILSVRC DET and PASCAL VOC formats.

Both use ``<annotation><filename/><size><width/><height/></size><object><name/><bndbox>
<xmin/><ymin/><xmax/><ymax/></bndbox></object>...</annotation>``; they differ only in the pixel
convention of the numbers (VOC 1-based, ILSVRC 0-based, both inclusive), which the callers
convert with :mod:`core.boxes`. Boxes here are the raw file numbers, ``[4]`` float64.
Also :func:`read_lines`, the text-file reader both devkits' lists and result files use.
"""
from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import numpy as np

from core.errors import InputError
from core.io import atomic_path

__all__ = ["XmlObject", "XmlAnnotation", "read_annotation_xml", "write_annotation_xml", "read_lines"]

BOX_FIELDS = ("xmin", "ymin", "xmax", "ymax")


@dataclass
class XmlObject:
    """One ``<object>``: class ``name``, raw inclusive ``box [4]`` and the ``difficult`` flag."""

    name: str
    box: np.ndarray
    difficult: bool = False


@dataclass
class XmlAnnotation:
    """One annotation file; ``width``/``height`` are 0 when the file has no ``<size>``."""

    filename: str
    width: int
    height: int
    objects: list[XmlObject] = field(default_factory=list)


def read_lines(path) -> list[str]:
    """The lines of a UTF-8 text file (devkit lists, meta and result files share this)."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not UTF-8 text: {err}") from None


def _text(path, where: str, parent, tag: str, required: bool = True) -> str | None:
    node = parent.find(tag)
    if node is None or node.text is None or not node.text.strip():
        if required:
            raise InputError(f"{path}: {where}: missing <{tag}>")
        return None
    return node.text.strip()


def _number(path, where: str, parent, tag: str) -> float:
    text = _text(path, where, parent, tag)
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{path}: {where}: <{tag}> is not a number: {text!r}") from None
    if not math.isfinite(value):  # math, not numpy: ~10x cheaper on one float, 260k calls on ILSVRC val
        raise InputError(f"{path}: {where}: <{tag}> is not finite: {text!r}")
    return value


def _size(path, root) -> tuple[int, int]:
    size = root.find("size")
    if size is None:
        return 0, 0
    w, h = (_number(path, "size", size, tag) for tag in ("width", "height"))
    if w != int(w) or h != int(h) or w < 0 or h < 0:
        raise InputError(f"{path}: size: width/height must be non-negative integers, got {w} x {h}")
    return int(w), int(h)


def _object(path, index: int, node) -> XmlObject:
    where = f"object {index}"
    name = _text(path, where, node, "name")
    bndbox = node.find("bndbox")
    if bndbox is None:
        raise InputError(f"{path}: {where}: missing <bndbox>")
    box_where = f"{where} bndbox"
    box = np.array([_number(path, box_where, bndbox, t) for t in BOX_FIELDS], np.float64)
    if box[2] < box[0]:
        raise InputError(f"{path}: {where}: xmax < xmin ({box[2]:g} < {box[0]:g})")
    if box[3] < box[1]:
        raise InputError(f"{path}: {where}: ymax < ymin ({box[3]:g} < {box[1]:g})")
    difficult = _text(path, where, node, "difficult", required=False)
    if difficult not in (None, "0", "1"):
        raise InputError(f"{path}: {where}: <difficult> must be 0 or 1, got {difficult!r}")
    return XmlObject(name=name, box=box, difficult=difficult == "1")


def read_annotation_xml(path) -> XmlAnnotation:
    """Parse one annotation XML; objects are numbered from 1 in error messages.

    Raises:
        InputError: unreadable file, XML syntax error, missing element, non-number,
            ``xmax < xmin`` or ``ymax < ymin``, naming the file and the object.
    """
    path = os.fspath(path)
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except ET.ParseError as err:
        raise InputError(f"{path}: XML parse error: {err}") from None
    if root.tag != "annotation":
        raise InputError(f"{path}: root element is <{root.tag}>, expected <annotation>")
    filename = _text(path, "annotation", root, "filename", required=False) or ""
    width, height = _size(path, root)
    objects = [_object(path, i + 1, node) for i, node in enumerate(root.findall("object"))]
    return XmlAnnotation(filename=filename, width=width, height=height, objects=objects)


def _sub(parent, tag: str, text) -> ET.Element:
    node = ET.SubElement(parent, tag)
    node.text = str(text)
    return node


def _integer_box(box) -> list[int]:
    """Round to the nearest pixel (halves up); a sub-pixel box keeps ``max >= min``."""
    x1, y1, x2, y2 = np.floor(np.asarray(box, np.float64) + 0.5).astype(int).tolist()
    return [x1, y1, max(x2, x1), max(y2, y1)]


def write_annotation_xml(path, ann: XmlAnnotation, folder: str = "", write_difficult: bool = True) -> None:
    """Write ``ann`` atomically; box numbers are rounded to integers (both devkits use pixels).

    Args:
        write_difficult: write ``<difficult>`` for every object (VOC); when False it is written
            only for objects flagged difficult (ILSVRC has no such flag, but nothing is dropped).
    """
    root = ET.Element("annotation")
    _sub(root, "folder", folder)
    _sub(root, "filename", ann.filename)
    size = ET.SubElement(root, "size")
    for tag, value in (("width", ann.width), ("height", ann.height), ("depth", 3)):
        _sub(size, tag, int(value))
    for obj in ann.objects:
        node = ET.SubElement(root, "object")
        _sub(node, "name", obj.name)
        if write_difficult or obj.difficult:
            _sub(node, "difficult", int(obj.difficult))
        bndbox = ET.SubElement(node, "bndbox")
        for tag, value in zip(BOX_FIELDS, _integer_box(obj.box)):
            _sub(bndbox, tag, value)
    ET.indent(root)
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(ET.tostring(root, encoding="unicode") + "\n")
