"""A split, read from whichever layout it comes in: the one loader every training and test tool uses.

A split is named by one path (``data.train``, ``data.val``, ``tools/test.py --split``), and the
path says the layout:

* **the synthetic split folder**: ``DIR/annotations.json`` (COCO) with the images in
  ``DIR/images/`` or beside the JSON (``tools/make_synthetic.py`` writes it);
* **COCO as it ships**: the instances JSON itself (``coco/annotations/instances_val2017.json``);
  the images are in a folder beside it or beside its folder, of any name: the folder named like
  the JSON's last ``_`` part (``val2017``) when it holds the first image, else the first folder
  there that does;
* **ILSVRC DET as it ships** (the ILSVRC2015-2017 packages; the DET data are those of 2014): the
  split's image folder ``ROOT/Data/DET/<split>``, or ``ROOT`` itself for ``val``. Beside it the
  loader reads ``ROOT/Annotations/DET/<split>/*.xml``, the lists in ``ROOT/ImageSets/DET/``
  (``train_<DET_ID>.txt`` with its positive, partial and negative images for ``train``,
  ``<split>.txt`` otherwise), ``meta_det.mat`` and, for ``val``, the validation blacklist from
  the devkit's ``data/`` folder (``ROOT/devkit/data``, ``ROOT/../devkit/data``, or ``ROOT``);
* **a devkit-format folder**: ``Annotations/``, ``image_list.txt``, ``meta_det.mat`` (or
  ``meta_det.txt``), as ``tools/make_synthetic.py`` writes under ``DIR/ilsvrc/``; the images are
  given separately or found in ``DIR/../images``.

Nothing is renamed or copied. :func:`open_split` returns the dataset with the format its results
are written in and the ILSVRC blacklist; :func:`read_split` just the dataset.
"""
from __future__ import annotations

import glob
import logging
import os
from dataclasses import dataclass, field

from core.errors import InputError
from core.formats import coco, ilsvrc
from core.structures import DetectionDataset

log = logging.getLogger(__name__)

DET_SPLITS = ("train", "val", "test")


@dataclass
class Split:
    """A split as read: its dataset, the results format (``coco`` or ``ilsvrc``), the path it
    was read from, and the ILSVRC validation blacklist ``[(image index, WNID)]`` (empty if none)."""

    dataset: DetectionDataset
    fmt: str
    source: str
    blacklist: list[tuple[int, str]] = field(default_factory=list)


def read_split(source, limit: int = 0) -> DetectionDataset:
    """The dataset of a split in any layout this module reads; ``limit`` keeps the first N images."""
    return open_split(source, limit=limit).dataset


def open_split(source, images: str = "", limit: int = 0) -> Split:
    """Read the split ``source`` names (see the module docstring for the layouts).

    Args:
        source: a split folder, a COCO instances JSON, an ILSVRC ``Data/DET/<split>`` folder or
            root, or a devkit-format folder.
        images: the image folder, when it is not where the layout puts it ("" = find it).
        limit: keep only the first ``limit`` images (0 = all); read before the annotations where
            the layout allows, so a few images of ILSVRC train are quick.

    Raises:
        InputError: a path that is no known layout, or a file of it that is missing or malformed.
    """
    source = os.fspath(source)
    det = _det_root_and_split(source)
    if os.path.isfile(source) and source.lower().endswith(".json"):
        split = open_coco(source, images)
    elif os.path.isfile(os.path.join(source, "annotations.json")):
        split = _synthetic_folder(source, images)
    elif det is not None:
        split = read_det_split(det[0], det[1], images, limit)
    elif os.path.isdir(os.path.join(source, "Annotations")) and _find_meta(source, near=False):
        split = _devkit_folder(source, images)
    else:
        raise InputError(f"{os.path.join(source, 'annotations.json')}: no such file, and {source} is "
                         "no other split layout either (a COCO instances JSON, an ILSVRC "
                         "Data/DET/<split> folder or root, a devkit folder with Annotations/ and "
                         "meta_det.mat; tools/make_synthetic.py makes a split)")
    if limit:
        split.dataset.images = split.dataset.images[:limit]
    return split


# ----------------------------------------------------------------------------- COCO


def _synthetic_folder(folder: str, images: str) -> Split:
    """``folder/annotations.json`` with images in ``images/`` or beside it."""
    dataset = coco.read_coco(os.path.join(folder, "annotations.json"), image_root=os.path.join(folder, "images"))
    if images:
        dataset.image_root = images
    elif dataset.images and not _holds(dataset.image_root, dataset.images[0].file_name):
        dataset.image_root = folder  # images beside annotations.json
    return Split(dataset, "coco", folder)


def _holds(folder: str, file_name: str) -> bool:
    return os.path.isfile(os.path.join(folder, file_name))


def coco_image_folder(json_path: str, first_file: str) -> str:
    """The image folder of a COCO instances JSON: a folder beside the JSON or beside its folder
    that holds ``first_file``, preferring the one named like the JSON's last ``_`` part
    (``instances_val2017.json`` → ``val2017``).

    Raises:
        InputError: no such folder.
    """
    here = os.path.dirname(os.path.abspath(json_path))
    stem = os.path.splitext(os.path.basename(json_path))[0].rsplit("_", 1)[-1]
    places = [here, os.path.dirname(here)]
    named = [os.path.join(p, stem) for p in places]
    others = [d for p in places for d in sorted(glob.glob(os.path.join(p, "*"))) if os.path.isdir(d)]
    for folder in named + places + others:
        if _holds(folder, first_file):
            return folder
    raise InputError(f"{json_path}: no folder beside it holds its first image {first_file!r} "
                     f"(looked in {named[0]}, {named[1]} and the other folders there; "
                     "give the image folder with --images)")


def open_coco(path, images: str = "") -> Split:
    """A COCO instances JSON with its images in ``images`` or found by :func:`coco_image_folder`."""
    path = os.fspath(path)
    dataset = coco.read_coco(path, image_root=images)
    if not images and dataset.images:
        dataset.image_root = coco_image_folder(path, dataset.images[0].file_name)
    return Split(dataset, "coco", path)


# ----------------------------------------------------------------------------- ILSVRC DET


def _det_root_and_split(source: str) -> tuple[str, str] | None:
    """``(ROOT, split)`` for ``ROOT/Data/DET/<split>`` or a ``ROOT`` holding ``ImageSets/DET`` (val)."""
    path = os.path.abspath(source)
    parent, split = os.path.split(path)
    if split in DET_SPLITS and os.path.basename(parent) == "DET" and \
            os.path.basename(os.path.dirname(parent)) == "Data":
        return os.path.dirname(os.path.dirname(parent)), split
    if os.path.isdir(os.path.join(path, "ImageSets", "DET")):
        return path, "val"
    return None


def _find_meta(root: str, near: bool = True) -> str | None:
    """``meta_det.mat`` (or ``meta_det.txt``) in ``root`` or, when ``near``, a devkit's ``data/``
    beside or inside it."""
    places = [root]
    if near:
        up = os.path.dirname(os.path.abspath(root))
        places += [os.path.join(root, "devkit", "data"), os.path.join(up, "devkit", "data"), up]
        places += sorted(glob.glob(os.path.join(root, "*devkit*", "data")))
        places += sorted(glob.glob(os.path.join(up, "*devkit*", "data")))
    for folder in places:
        for name in ("meta_det.mat", "meta_det.txt"):
            if os.path.isfile(os.path.join(folder, name)):
                return os.path.join(folder, name)
    return None


def _find_blacklist(meta: str) -> str | None:
    """The devkit's ``*det_validation_blacklist.txt`` beside ``meta_det.mat``."""
    found = sorted(glob.glob(os.path.join(os.path.dirname(meta), "*det_validation_blacklist.txt")))
    return found[-1] if found else None


def read_det_split(root: str, split: str, images: str = "", limit: int = 0) -> Split:
    """One split of the ILSVRC DET package under ``root`` (see the module docstring).

    ``train`` is every image of the per-class lists, negative-only ones included
    (:func:`core.formats.ilsvrc.det_train_entries`); images flagged partial (0) keep the boxes
    they have. Image ids are list indices (``val``/``test``) or positions in the train lists.
    """
    meta = _find_meta(root)
    if meta is None:
        raise InputError(f"{root}: no meta_det.mat in it, in devkit/data beside or inside it "
                         "(unpack the DET devkit next to the data)")
    synsets = ilsvrc.read_meta(meta)
    lists = os.path.join(root, "ImageSets", "DET")
    if split == "train":
        entries = ilsvrc.det_train_entries(lists, synsets)
    else:
        entries = ilsvrc.read_image_list(os.path.join(lists, f"{split}.txt"))
    if limit:
        entries = entries[:limit]
    image_root = images or os.path.join(root, "Data", "DET", split)
    dataset = ilsvrc.read_ilsvrc(os.path.join(root, "Annotations", "DET", split), entries, synsets,
                                 image_root=image_root)
    _fill_sizes(dataset)
    blacklist = _find_blacklist(meta) if split == "val" else None
    pairs = ilsvrc.read_blacklist(blacklist) if blacklist else []
    log.info("%s: ILSVRC DET %s, %d images, meta %s, blacklist %s", root, split, len(dataset.images),
             meta, blacklist or "none")
    return Split(dataset, "ilsvrc", root, pairs)


def _header_size(path: str) -> tuple[int, int]:
    """(width, height) as :func:`core.image.load_image` will decode it: the file header's size,
    swapped when the EXIF orientation turns the picture by 90 degrees; (0, 0) if unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            width, height = img.size
            turned = img.getexif().get(0x0112, 1) in (5, 6, 7, 8)  # EXIF Orientation tag
    except (OSError, UnidentifiedImageError, ValueError):
        return 0, 0  # the detector or trainer names the bad image when it reads it
    return (height, width) if turned else (width, height)


def _fill_sizes(dataset: DetectionDataset) -> None:
    """Images without an XML (the devkit allows that for images without objects, e.g. DET's
    negative training images) get their size from the image file, which training checks."""
    missing = [ann for ann in dataset.images if ann.width == 0 or ann.height == 0]
    for ann in missing:
        ann.width, ann.height = _header_size(os.path.join(dataset.image_root, ann.file_name))
    if missing:
        log.info("%d images without an XML: sizes read from the image files", len(missing))


def _devkit_folder(folder: str, images: str) -> Split:
    """``Annotations/``, ``image_list.txt`` and the meta file in ``folder`` (our devkit writer's
    layout); images from ``images`` or ``folder/../images``."""
    image_root = images or os.path.join(os.path.dirname(os.path.abspath(folder)), "images")
    dataset = ilsvrc.read_ilsvrc(os.path.join(folder, "Annotations"), os.path.join(folder, "image_list.txt"),
                                 _find_meta(folder, near=False), image_root=image_root)
    blacklist = sorted(glob.glob(os.path.join(folder, "*blacklist*.txt")))
    pairs = ilsvrc.read_blacklist(blacklist[-1]) if blacklist else []
    return Split(dataset, "ilsvrc", folder, pairs)
