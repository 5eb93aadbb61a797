"""ILSVRC DET as the devkit ships it.

* One PASCAL-style XML per image (object ``<name>`` = WNID), boxes 0-based inclusive pixels
  (converted with :func:`core.boxes.ilsvrc_to_xyxy`); an image without objects may have no XML.
* The image list, ``<name> <index>`` a line (1-based indices); the index is the image's id.
* ``meta_det.mat``: struct array ``synsets`` with fields ``ILSVRC20xx_DET_ID``, ``WNID``,
  ``name``, ``description`` (or a text file ``DET_ID WNID name with spaces``).
* The validation blacklist, ``<index> <WNID>`` a line.
* The DET train lists, ``ImageSets/DET/train_<DET_ID>.txt``, ``<image_id> <flag>`` a line (1 all
  instances boxed, 0 some, -1 none present), read into one image list with
  :func:`det_train_entries`; :func:`write_det_split` writes a split in the package's layout.
* Submissions, ``<index> <DET_ID> <confidence> <xmin> <ymin> <xmax> <ymax>`` a line, in the
  devkit's raw inclusive coordinates; parsed vectorised because real ones have millions of lines.

Malformed input raises :class:`core.errors.InputError` as ``FILE:LINE: reason`` (text files) or
``FILE: object N: reason`` (XML).
"""
from __future__ import annotations

import faulthandler
import logging
import multiprocessing
import os
import re
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np
import scipy.io

from core.boxes import ilsvrc_to_xyxy, xyxy_to_ilsvrc
from core.errors import InputError
from core.io import atomic_path, write_text
from core.structures import DetectionDataset, Detections, ImageAnnotations
from core.formats.xmlutil import (
    XmlAnnotation, XmlObject, read_annotation_xml, read_lines, write_annotation_xml,
)

__all__ = [
    "Synset", "Submission", "read_meta", "write_meta", "read_image_list", "read_blacklist",
    "read_ilsvrc", "read_submission", "write_submission", "submission_from_detections",
    "write_ilsvrc_devkit", "read_train_list", "det_train_entries", "write_det_split",
]
log = logging.getLogger(__name__)

_DET_ID_FIELD = re.compile(r"^ILSVRC\d{4}_DET_ID$")
_WNID = re.compile(r"^n\d{8}$")
IMAGE_EXTENSIONS = (".JPEG", ".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class Synset:
    """One DET class: ``det_id`` (1..200 in the real devkit), ``wnid`` (``n\\d{8}``), ``name``."""

    det_id: int
    wnid: str
    name: str


# ----------------------------------------------------------------------------- meta files


def _mat_str(value) -> str:
    """A MATLAB char array as loaded by scipy (``str``, or an empty ndarray for ``''``)."""
    if isinstance(value, np.ndarray):
        return "".join(str(v) for v in value.ravel()) if value.size else ""
    return str(value)


def _mat_synsets(path: str) -> list[Synset]:
    """The synsets of ``meta_det.mat``, read in a child process.

    Some damaged MAT files (a flipped bit in an element's size) crash scipy's C reader with a
    segmentation fault, which no ``except`` can catch; in a child, the crash becomes an InputError.
    """
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    # the child's crash is reported as one line below, not as a faulthandler dump
    with ProcessPoolExecutor(1, mp_context=context, initializer=faulthandler.disable) as pool:
        try:
            return pool.submit(_read_mat_synsets, path).result()
        except BrokenProcessPool:
            raise InputError(f"{path}: cannot read MATLAB file (scipy's reader crashed on it: "
                             "the file is damaged)") from None


def _read_mat_synsets(path: str) -> list[Synset]:
    try:
        mat = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
    except Exception as err:  # scipy raises several types (ValueError, MatReadError, OSError)
        raise InputError(f"{path}: cannot read MATLAB file: {err}") from None
    if "synsets" not in mat:
        raise InputError(f"{path}: no 'synsets' variable (found: {sorted(k for k in mat if k[0] != '_')})")
    # squeeze_me turns a 1x1 struct into a bare mat_struct and 1xN into a 1-D object array.
    structs = np.atleast_1d(mat["synsets"]).ravel()
    out = []
    for i, s in enumerate(structs):
        fields = getattr(s, "_fieldnames", None) or []
        id_field = next((f for f in fields if _DET_ID_FIELD.match(f)), None)
        if id_field is None or "WNID" not in fields or "name" not in fields:
            raise InputError(f"{path}: synsets({i + 1}): needs fields ILSVRC20xx_DET_ID, WNID, name; "
                             f"has {fields}")
        try:
            det_id = int(np.asarray(getattr(s, id_field)).item())
        except (TypeError, ValueError):
            raise InputError(f"{path}: synsets({i + 1}): {id_field} is not a number") from None
        out.append(Synset(det_id, _mat_str(s.WNID), _mat_str(s.name)))
    return out


def _text_synsets(path: str) -> list[Synset]:
    out = []
    for lineno, line in enumerate(read_lines(path), 1):
        parts = line.split(None, 2)
        if not parts:
            continue
        if len(parts) < 3:
            raise InputError(f"{path}:{lineno}: expected 'DET_ID WNID name', got {line.strip()!r}")
        out.append(Synset(_int(path, lineno, parts[0], "DET_ID"), parts[1], parts[2].strip()))
    return out


def read_meta(path) -> list[Synset]:
    """Read the DET synsets from ``meta_det.mat`` (by the ``.mat`` suffix) or a text file.

    Returns:
        The synsets sorted by ``det_id``; duplicate DET_IDs or WNIDs raise InputError.
    """
    path = os.fspath(path)
    synsets = _mat_synsets(path) if path.lower().endswith(".mat") else _text_synsets(path)
    for key in ("det_id", "wnid"):
        values = [getattr(s, key) for s in synsets]
        dup = {v for v in values if values.count(v) > 1} if len(set(values)) != len(values) else set()
        if dup:
            raise InputError(f"{path}: duplicate {key}: {sorted(dup)[:5]}")
    if not synsets:
        raise InputError(f"{path}: no synsets")
    return sorted(synsets, key=lambda s: s.det_id)


# scipy's savemat stamps "Created on: <time>" into the 116-byte text header of a MAT-file (it
# has no option to set it), so write_meta overwrites it with this fixed text, padded with spaces
# as MATLAB pads it; loadmat reads only the version and byte-order fields after it.
_MAT_HEADER = b"MATLAB 5.0 MAT-file, written by core.formats.ilsvrc".ljust(116, b" ")


def write_meta(path, synsets: list[Synset]) -> None:
    """Write ``meta_det.mat`` like the devkit's: a 1xN struct array ``synsets`` with
    ``ILSVRC2014_DET_ID`` (double), ``WNID``, ``name`` and ``description`` (empty here)."""
    dtype = [("ILSVRC2014_DET_ID", object), ("WNID", object), ("name", object), ("description", object)]
    arr = np.empty((1, len(synsets)), dtype=dtype)
    for j, s in enumerate(synsets):
        arr[0, j] = (np.array([[float(s.det_id)]]), s.wnid, s.name, "")
    with atomic_path(path) as tmp:
        scipy.io.savemat(tmp, {"synsets": arr}, appendmat=False)
        with open(tmp, "r+b") as f:  # the same synsets give the same bytes (see _MAT_HEADER)
            f.write(_MAT_HEADER)


def write_meta_text(path, synsets: list[Synset]) -> None:
    """Write the plain-text meta file, ``DET_ID WNID name`` a line."""
    write_text(path, "".join(f"{s.det_id} {s.wnid} {s.name}\n" for s in synsets))


# ----------------------------------------------------------------------------- lists


def _int(path, lineno: int, token: str, what: str) -> int:
    try:
        return int(token)
    except ValueError:
        raise InputError(f"{path}:{lineno}: {what} is not an integer: {token!r}") from None


def _two_columns(path, what: tuple[str, str]) -> list[tuple[int, list[str]]]:
    """``(line number, [a, b])`` for every non-blank line; anything but 2 fields is an error."""
    rows = []
    for lineno, line in enumerate(read_lines(path), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise InputError(f"{path}:{lineno}: expected '<{what[0]}> <{what[1]}>', got {line.strip()!r}")
        rows.append((lineno, parts))
    return rows


def read_image_list(path) -> list[tuple[str, int]]:
    """Read an image list (``<name> <index>`` lines) in file order; duplicate indices are errors."""
    path = os.fspath(path)
    out, seen = [], {}
    for lineno, (name, index) in _two_columns(path, ("name", "index")):
        idx = _int(path, lineno, index, "index")
        if idx in seen:
            raise InputError(f"{path}:{lineno}: index {idx} already used on line {seen[idx]}")
        seen[idx] = lineno
        out.append((name, idx))
    return out


def read_blacklist(path) -> list[tuple[int, str]]:
    """Read the validation blacklist, ``(image index, WNID)`` pairs in file order."""
    path = os.fspath(path)
    return [(_int(path, lineno, idx, "index"), wnid)
            for lineno, (idx, wnid) in _two_columns(path, ("index", "WNID"))]


# DET train lists (``ImageSets/DET/train_<DET_ID>.txt``, ``<image_id> <flag>`` a line): flag 1 =
# every instance of the class in the image is boxed, 0 = some are, -1 = verified to hold none.
TRAIN_FLAGS = (1, 0, -1)


def read_train_list(path) -> list[tuple[str, int]]:
    """Read one DET train list: ``(image name, flag)`` in file order, flag in 1, 0, -1."""
    path = os.fspath(path)
    out = []
    for lineno, (name, flag) in _two_columns(path, ("image_id", "label")):
        value = _int(path, lineno, flag, "label")
        if value not in TRAIN_FLAGS:
            raise InputError(f"{path}:{lineno}: label must be 1, 0 or -1, got {value}")
        out.append((name, value))
    return out


def det_train_entries(list_dir, synsets: list[Synset]) -> list[tuple[str, int]]:
    """Every image of the DET train lists, as ``(name, index)`` for :func:`read_ilsvrc`.

    Reads ``list_dir/train_<DET_ID>.txt`` for every synset; an image is listed once in the
    order it first appears (lists by DET_ID, lines in file order) and numbered from 1 in that
    order. Negative-only images (flag -1 in every list naming them) are kept: they have no
    objects, so all their regions are background. A missing list is an error: without it the
    class would silently lose its positive images.

    Raises:
        InputError: a missing or malformed list.
    """
    list_dir = os.fspath(list_dir)
    index: dict[str, int] = {}
    positive: set[str] = set()
    for s in synsets:
        path = os.path.join(list_dir, f"train_{s.det_id}.txt")
        if not os.path.isfile(path):
            raise InputError(f"{path}: no such file (the DET train list of {s.wnid}, {s.name})")
        for name, flag in read_train_list(path):
            index.setdefault(name, len(index) + 1)
            if flag >= 0:
                positive.add(name)
    log.info("%s: %d train images, %d of them negative-only", list_dir, len(index), len(index) - len(positive))
    return list(index.items())


# ----------------------------------------------------------------------------- annotations


def _image_file(name: str, xml_filename: str, image_root: str) -> str:
    """The image path relative to ``image_root``.

    Real XMLs name the file without extension (``ILSVRC2012_val_00000001``) and images are
    ``.JPEG``; our writer stores the full relative file name. When the root is given and the
    ``.JPEG`` guess does not exist, the first existing common extension is used.
    """
    if xml_filename and PurePosixPath(xml_filename).suffix:
        return xml_filename
    if image_root and not os.path.exists(os.path.join(image_root, name + ".JPEG")):
        for ext in IMAGE_EXTENSIONS:
            if os.path.exists(os.path.join(image_root, name + ext)):
                return name + ext
    return name + ".JPEG"


def _read_image(gt_dir: str, name: str, index: int, wnid_label: dict, image_root: str) -> ImageAnnotations:
    xml_path = os.path.join(gt_dir, name + ".xml")
    if os.path.exists(xml_path):
        ann = read_annotation_xml(xml_path)
    else:  # the devkit allows images without objects to have no XML; size unknown then
        ann = XmlAnnotation(filename="", width=0, height=0)
    labels = []
    for j, obj in enumerate(ann.objects):
        if obj.name not in wnid_label:
            raise InputError(f"{xml_path}: object {j + 1}: WNID {obj.name!r} is not in the meta file")
        labels.append(wnid_label[obj.name])
    boxes = ilsvrc_to_xyxy([o.box for o in ann.objects])
    return ImageAnnotations(image_id=index, file_name=_image_file(name, ann.filename, image_root),
                            width=ann.width, height=ann.height, boxes=boxes, labels=labels,
                            difficult=[o.difficult for o in ann.objects])


def _check_xml_coverage(gt_dir: str, names: list[str]) -> None:
    """Log how many listed images have no XML; none at all means a wrong folder, an InputError
    (it would otherwise score as a split without objects, mAP undefined)."""
    missing = [n for n in names if not os.path.exists(os.path.join(gt_dir, n + ".xml"))]
    if names and len(missing) == len(names):
        raise InputError(f"{gt_dir}: none of the {len(names)} listed images has an XML annotation "
                         f"(looked for {os.path.join(gt_dir, names[0] + '.xml')})")
    if missing:
        log.info("%s: %d of %d listed images have no XML (no objects)", gt_dir, len(missing), len(names))


def read_ilsvrc(gt_dir, image_list, meta, image_root: str = "") -> DetectionDataset:
    """Read ILSVRC DET ground truth.

    Args:
        gt_dir: folder of ``<name>.xml`` files (``<name>`` from the image list, may contain ``/``).
        image_list: path of the list file, or ``[(name, index)]`` as from :func:`read_image_list`.
        meta: path of ``meta_det.mat`` / text meta, or ``[Synset]``.
        image_root: folder of the images.

    Returns:
        Images in list order with ``image_id`` = list index; ``classes`` = synset names in
        DET_ID order, ``class_ids`` = WNIDs; boxes xyxy. A missing XML gives an image with no
        objects and size 0 x 0; an unknown WNID, a ``gt_dir`` that is not a folder, or no XML
        for any listed image raises InputError.
    """
    gt_dir = os.fspath(gt_dir)
    if not os.path.isdir(gt_dir):
        why = "not a folder" if os.path.exists(gt_dir) else "no such folder"
        raise InputError(f"{gt_dir}: {why} (expected the folder of the XML annotations)")
    entries = read_image_list(image_list) if isinstance(image_list, (str, os.PathLike)) else list(image_list)
    synsets = read_meta(meta) if isinstance(meta, (str, os.PathLike)) else sorted(meta, key=lambda s: s.det_id)
    _check_xml_coverage(gt_dir, [name for name, _ in entries])
    wnid_label = {s.wnid: k for k, s in enumerate(synsets)}
    images = [_read_image(gt_dir, name, int(idx), wnid_label, image_root) for name, idx in entries]
    return DetectionDataset(classes=[s.name for s in synsets], images=images,
                            class_ids=[s.wnid for s in synsets], image_root=image_root)


def devkit_synsets(dataset: DetectionDataset) -> list[Synset]:
    """Synsets for a dataset: DET_ID = label + 1; WNIDs from ``class_ids`` when they all look
    like WNIDs (``n`` + 8 digits), else made up as ``n%08d`` of the DET_ID."""
    ids = [str(c) for c in dataset.class_ids]
    use_ids = len(ids) == len(dataset.classes) and all(_WNID.match(c) for c in ids)
    return [Synset(k + 1, ids[k] if use_ids else f"n{k + 1:08d}", name)
            for k, name in enumerate(dataset.classes)]


def _stem(file_name: str) -> str:
    return str(PurePosixPath(file_name.replace(os.sep, "/")).with_suffix(""))


def write_ilsvrc_devkit(dataset: DetectionDataset, out_dir) -> None:
    """Write ``dataset`` in the devkit layout under ``out_dir``.

    Writes ``Annotations/<stem>.xml`` (stem = ``file_name`` without extension; 0-based inclusive
    integer boxes; ``<filename>`` = the full ``file_name``), ``image_list.txt`` (``<stem> <i>``,
    ``i`` = 1-based position in the dataset), ``meta_det.mat`` and ``meta_det.txt``.
    """
    out_dir = os.fspath(out_dir)
    synsets = devkit_synsets(dataset)
    stems = [_stem(img.file_name) for img in dataset.images]
    if len(set(stems)) != len(stems):
        raise ValueError("write_ilsvrc_devkit: two images share a file name stem")
    crowd = sum(int(img.iscrowd.sum()) for img in dataset.images)
    if crowd:  # the devkit has no crowd regions; say so rather than change them silently
        log.warning("write_ilsvrc_devkit: %d crowd boxes written as ordinary objects", crowd)
    for img, stem in zip(dataset.images, stems):
        boxes = xyxy_to_ilsvrc(img.boxes)
        objects = [XmlObject(synsets[int(k)].wnid, boxes[j], bool(img.difficult[j]))
                   for j, k in enumerate(img.labels)]
        ann = XmlAnnotation(filename=img.file_name, width=img.width, height=img.height, objects=objects)
        write_annotation_xml(os.path.join(out_dir, "Annotations", stem + ".xml"), ann,
                             folder="Annotations", write_difficult=False)
    write_text(os.path.join(out_dir, "image_list.txt"),
               "".join(f"{stem} {i + 1}\n" for i, stem in enumerate(stems)))
    write_meta(os.path.join(out_dir, "meta_det.mat"), synsets)
    write_meta_text(os.path.join(out_dir, "meta_det.txt"), synsets)


def _det_train_lists(dataset: DetectionDataset, stems: list[str], n_classes: int) -> list[list[str]]:
    """``train_<k>.txt`` lines: an image is positive (1) for every class it has a box of; an image
    without boxes is negative (-1) for class 1, so it is listed, as the devkit lists negatives."""
    lines: list[list[str]] = [[] for _ in range(n_classes)]
    for img, stem in zip(dataset.images, stems):
        labels = sorted(set(int(k) for k in img.labels))
        for k in labels:
            lines[k].append(f"{stem} 1\n")
        if not labels:
            lines[0].append(f"{stem} -1\n")
    return lines


def write_det_split(dataset: DetectionDataset, root, split: str) -> None:
    """Write ``dataset``'s annotations as split ``split`` of the ILSVRC DET package under ``root``.

    Writes ``Annotations/DET/<split>/<stem>.xml`` with ``<filename>`` the bare stem as in the real
    files (``stem`` = ``file_name`` without extension; 0-based inclusive boxes),
    ``ImageSets/DET/train_<DET_ID>.txt`` (``train``: positives 1, images without boxes -1) or
    ``ImageSets/DET/<split>.txt`` (``<stem> <i>``, 1-based), and ``devkit/data/meta_det.mat``.
    The images are the caller's: ``Data/DET/<split>/<file_name>``.
    """
    root = os.fspath(root)
    synsets = devkit_synsets(dataset)
    stems = [_stem(img.file_name) for img in dataset.images]
    for img, stem in zip(dataset.images, stems):
        boxes = xyxy_to_ilsvrc(img.boxes)
        objects = [XmlObject(synsets[int(k)].wnid, boxes[j]) for j, k in enumerate(img.labels)]
        write_annotation_xml(os.path.join(root, "Annotations", "DET", split, stem + ".xml"),
                             XmlAnnotation(PurePosixPath(stem).name, img.width, img.height, objects),
                             folder=split, write_difficult=False)
    sets = os.path.join(root, "ImageSets", "DET")
    if split == "train":
        for k, lines in enumerate(_det_train_lists(dataset, stems, len(synsets))):
            write_text(os.path.join(sets, f"train_{k + 1}.txt"), "".join(lines))
    else:
        write_text(os.path.join(sets, f"{split}.txt"), "".join(f"{s} {i + 1}\n" for i, s in enumerate(stems)))
    write_meta(os.path.join(root, "devkit", "data", "meta_det.mat"), synsets)


# ----------------------------------------------------------------------------- submissions


@dataclass
class Submission:
    """A parsed submission, one entry per detection line (``N`` lines).

    Attributes:
        image_index: ``int64[N]`` image list index.
        det_id: ``int64[N]`` DET_ID of the class.
        score: ``float64[N]`` confidence.
        boxes: ``float64[N, 4]`` raw devkit ``xmin ymin xmax ymax`` (0-based inclusive).
        line: ``int64[N]`` 1-based line numbers in the file (for error messages).
    """

    image_index: np.ndarray
    det_id: np.ndarray
    score: np.ndarray
    boxes: np.ndarray
    line: np.ndarray

    def __len__(self) -> int:
        return len(self.score)


_SPACE = np.zeros(256, bool)
_SPACE[list(b" \t\r\n\v\f")] = True
_SUB_FIELDS = ("index", "DET_ID", "confidence", "xmin", "ymin", "xmax", "ymax")
_NUMBER = re.compile(r"^[+-]?((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|nan|inf|infinity)$", re.IGNORECASE)


def _tokens_in_chunk(b: np.ndarray) -> np.ndarray:
    """Tokens per line of a byte chunk ``b`` (uint8, not empty) that ends with a newline or at EOF.

    A token starts where a space byte is followed by a non-space byte; the starts are summed
    between newline positions with ``np.add.reduceat``.
    """
    space = _SPACE[b]
    if len(b) < 2:
        return np.array([0 if space[0] else 1])
    starts = (space[:-1] & ~space[1:]).view(np.uint8)  # starts[i]: a token begins at byte i + 1
    newlines = np.flatnonzero(b == 10)
    # line k + 1 begins after newlines[k], so its starts are summed from index newlines[k]
    bounds = np.concatenate(([0], newlines[newlines < len(starts)]))
    counts = np.add.reduceat(starts, bounds, dtype=np.int64)
    if b[0] == 10:  # reduceat gives starts[0] for the empty segment [0, 0)
        counts[0] = 0
    counts[0] += not space[0]
    return counts


def _tokens_per_line(data: bytes, chunk: int = 1 << 22) -> np.ndarray:
    """Number of whitespace-separated tokens on each line (entry ``k`` = line ``k + 1``).

    Works in newline-aligned chunks of about 4 MB: the same memory is reused, which is several
    times faster on a 100 MB file than allocating file-sized temporaries.
    """
    b = np.frombuffer(data, np.uint8)
    parts, pos = [], 0
    while pos < len(b):
        end = data.find(b"\n", min(pos + chunk, len(b)) - 1)
        end = len(b) if end < 0 else end + 1
        parts.append(_tokens_in_chunk(b[pos:end]))
        pos = end
    if not parts or b[-1] == 10:  # the (empty) line after a final newline, as in text.split("\n")
        parts.append(np.zeros(1, np.int64))
    return np.concatenate(parts)


def _check_line(path, lineno: int, line: str) -> None:
    """Raise the InputError for one submission line that the fast path rejected (if any)."""
    parts = line.split()
    if parts and len(parts) != 7:
        raise InputError(f"{path}:{lineno}: expected 7 fields ({' '.join(_SUB_FIELDS)}), got {len(parts)}")
    for token, name in zip(parts, _SUB_FIELDS):
        if not _NUMBER.match(token):
            raise InputError(f"{path}:{lineno}: {name} is not a number: {token!r}")


def _locate_bad_line(path, data: bytes) -> None:
    """Slow pass, only after the fast parse failed: raise for the first bad line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not UTF-8 text: {err}") from None
    for lineno, line in enumerate(text.split("\n"), 1):
        _check_line(path, lineno, line)
    raise InputError(f"{path}: cannot parse the file as a submission")


def _validate(path, values: np.ndarray, lines: np.ndarray) -> None:
    """Integral positive index/DET_ID, finite numbers, ``xmax >= xmin``, ``ymax >= ymin``."""
    checks = (
        (~np.isfinite(values).all(axis=1), "NaN or infinite value"),
        ((values[:, :2] != np.round(values[:, :2])).any(axis=1), "index and DET_ID must be integers"),
        ((values[:, :2] < 1).any(axis=1), "index and DET_ID must be >= 1"),
        (values[:, 5] < values[:, 3], "xmax < xmin"),
        (values[:, 6] < values[:, 4], "ymax < ymin"),
    )
    for bad, reason in checks:
        if bad.any():
            i = int(np.argmax(bad))
            raise InputError(f"{path}:{lines[i]}: {reason}")


def _parse_numbers(path, data: bytes, n_tokens: int) -> np.ndarray:
    """All tokens as float64 in one C-level pass; any mismatch goes to the slow locating pass."""
    if n_tokens == 0:
        return np.zeros(0, np.float64)
    try:
        # text-mode fromstring is not deprecated (only sep="" is); it stops at the first bad token
        values = np.fromstring(data, dtype=np.float64, sep=" ")
    except ValueError:
        values = None
    if values is None or len(values) != n_tokens:
        _locate_bad_line(path, data)
    return values


def read_submission(path) -> Submission:
    """Parse a submission file, vectorised (2M lines in about two seconds).

    Blank lines are allowed; an empty file is zero detections. Raises InputError
    ``FILE:LINE: reason`` for a line without exactly 7 fields, a non-number, NaN/inf, a
    non-integral or non-positive index/DET_ID, or an inverted box.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    counts = _tokens_per_line(data)
    if ((counts != 0) & (counts != 7)).any():
        _locate_bad_line(path, data)
    lines = np.flatnonzero(counts == 7).astype(np.int64) + 1
    values = _parse_numbers(path, data, 7 * len(lines)).reshape(-1, 7)
    _validate(path, values, lines)
    return Submission(image_index=values[:, 0].astype(np.int64), det_id=values[:, 1].astype(np.int64),
                      score=values[:, 2].copy(), boxes=values[:, 3:7].copy(), line=lines)


def write_submission(path, image_index, det_id, score, boxes) -> None:
    """Write a submission file atomically.

    Args:
        image_index, det_id: ``[N]`` ints; score: ``[N]``; boxes: ``[N, 4]`` raw devkit
            ``xmin ymin xmax ymax`` (0-based inclusive, floats allowed). Floats are written
            with 9 significant digits, so float32 values read back exactly.
    """
    image_index = np.asarray(image_index, np.int64).reshape(-1)
    det_id = np.asarray(det_id, np.int64).reshape(-1)
    score = np.asarray(score, np.float64).reshape(-1)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if not len(image_index) == len(det_id) == len(score) == len(boxes):
        raise ValueError("write_submission: arrays of different lengths")
    rows = zip(image_index.tolist(), det_id.tolist(), score.tolist(), boxes.tolist())
    write_text(path, "".join("%d %d %.9g %.9g %.9g %.9g %.9g\n" % (i, d, s, *b) for i, d, s, b in rows))


def submission_from_detections(dataset: DetectionDataset, dets: dict[int, Detections],
                               det_ids: list[int] | None = None) -> Submission:
    """Detections (xyxy, contiguous labels) → submission rows in dataset order.

    ``image_index`` = the image's ``image_id`` (the list index for a dataset from
    :func:`read_ilsvrc`); ``det_id`` = ``det_ids[label]``, default ``label + 1`` (the devkit
    numbering, as :func:`write_ilsvrc_devkit` writes it); boxes become 0-based inclusive.
    """
    det_ids = np.asarray(det_ids if det_ids is not None else range(1, len(dataset.classes) + 1), np.int64)
    parts = [(int(img.image_id), dets[int(img.image_id)]) for img in dataset.images
             if int(img.image_id) in dets and len(dets[int(img.image_id)])]
    n = sum(len(d) for _, d in parts)
    return Submission(
        image_index=np.concatenate([np.full(len(d), i, np.int64) for i, d in parts] or [np.zeros(0, np.int64)]),
        det_id=det_ids[np.concatenate([d.labels for _, d in parts] or [np.zeros(0, np.int64)])],
        score=np.concatenate([d.scores for _, d in parts] or [np.zeros(0)]).astype(np.float64),
        boxes=xyxy_to_ilsvrc(np.concatenate([d.boxes for _, d in parts] or [np.zeros((0, 4))])).astype(np.float64),
        line=np.arange(1, n + 1, dtype=np.int64))
