"""A seeded, bounded fuzzer for every parser of user files and the image loader.

Valid files are written by the project's own writers, then each is replaced by random bytes,
truncations and random edits (byte flips, deletions, and tokens a parser may choke on). Whatever
the damage, a parser must either accept the file or raise one of the project's error types
(core.cli.USER_ERRORS), which command lines print as one line: nothing else may escape.
"""
from __future__ import annotations

import io
import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.cli import USER_ERRORS
from core.config import load_config
from core.formats.coco import read_coco, read_coco_results, write_coco, write_coco_results
from core.formats.ilsvrc import (read_blacklist, read_ilsvrc, read_image_list, read_meta, read_submission,
                                 write_ilsvrc_devkit)
from core.formats.voc import read_image_set, read_voc, read_voc_results, write_voc, write_voc_results
from core.formats.xmlutil import read_annotation_xml
from core.image import load_image
from core.structures import DetectionDataset, Detections, ImageAnnotations
from detector.config import DetectSchema
from eval.inputs import read_detect_json, read_propose_json
from proposals.build import ProposalsConfig

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs")
VARIANTS = 40  # per file: a few seconds for the whole test
TOKENS = [b"-1", b"0", b"nan", b"inf", b"1e999", b"-0.5", b'"', b"'", b"<", b">", b"</", b"{", b"}", b"[", b"]",
          b":", b",", b"\x00", b"\xff", b"\n", b" ", b"null", b"true", b"99999999999999999999", b"&#0;", b"\t"]


def mutations(data: bytes, rng: random.Random):
    """Random bytes, truncations and edits of ``data``."""
    yield b""
    yield bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
    for _ in range(VARIANTS):
        kind = rng.randrange(4)
        if kind == 0 and data:
            yield data[:rng.randrange(len(data))]
            continue
        out = bytearray(data)
        for _ in range(rng.randrange(1, 6)):
            at = rng.randrange(len(out) + 1)
            if kind == 1 and out:
                out[min(at, len(out) - 1)] ^= 1 << rng.randrange(8)
            elif kind == 2:
                del out[at:at + rng.randrange(1, 8)]
            else:
                out[at:at + rng.randrange(0, 3)] = rng.choice(TOKENS)
        yield bytes(out)


def dataset() -> DetectionDataset:
    images = [ImageAnnotations(1, "a.jpg", 60, 40, [[2, 3, 30, 20], [10, 10, 50, 35]], [0, 1]),
              ImageAnnotations(2, "b.jpg", 50, 50, [[5, 5, 20, 25]], [1])]
    return DetectionDataset(["cat", "dog"], images, class_ids=["n00000001", "n00000002"])


def detections() -> dict[int, Detections]:
    return {1: Detections([[2, 3, 29, 21]], [0.9], [0]), 2: Detections([[4, 5, 20, 24]], [0.5], [1])}


FORMATS = ["coco gt", "coco results", "ilsvrc xml", "ilsvrc xml in split", "ilsvrc list", "ilsvrc meta text",
           "ilsvrc meta mat", "ilsvrc submission", "ilsvrc blacklist", "voc xml", "voc image set", "voc results",
           "detect json", "propose json", "yaml detector", "yaml proposals"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Valid files of every format, and a reader for each (a path → parsed result)."""
    root = tmp_path_factory.mktemp("valid")
    ds, dets = dataset(), detections()
    write_coco(ds, root / "gt.json")
    write_coco_results(root / "results.json", ds, dets)
    write_ilsvrc_devkit(ds, root / "devkit")
    write_voc(ds, root / "voc")
    voc_results = write_voc_results(root / "vocres", ds, dets)
    for name in ("detector.yaml", "proposals.yaml"):
        shutil.copy(os.path.join(CONFIGS, name), root / name)
    (root / "sub.txt").write_text("1 1 0.9 2 3 28 20\n2 2 0.5 4 5 19 23\n")
    (root / "blacklist.txt").write_text("1 n00000001\n")
    (root / "detect.json").write_text('[{"image": "a.jpg", "width": 60, "height": 40, "detections": '
                                      '[{"box": [2, 3, 29, 21], "score": 0.9, "label": 0, "category": "cat"}]}]')
    (root / "propose.json").write_text('[{"image": "a.jpg", "boxes": [[2, 3, 29, 21]], "seconds": 0.1}]')
    dev, voc = root / "devkit", root / "voc"
    return {
        "coco gt": (root / "gt.json", read_coco),
        "coco results": (root / "results.json", lambda p: read_coco_results(p, ds)),
        "ilsvrc xml": (dev / "Annotations" / "a.xml", read_annotation_xml),
        "ilsvrc xml in split": (dev / "Annotations" / "b.xml",
                                lambda p: read_ilsvrc(dev / "Annotations", dev / "image_list.txt", dev / "meta_det.txt")),
        "ilsvrc list": (dev / "image_list.txt", read_image_list),
        "ilsvrc meta text": (dev / "meta_det.txt", read_meta),
        "ilsvrc meta mat": (dev / "meta_det.mat", read_meta),
        "ilsvrc submission": (root / "sub.txt", read_submission),
        "ilsvrc blacklist": (root / "blacklist.txt", read_blacklist),
        "voc xml": (voc / "Annotations" / "a.xml", lambda p: read_voc(voc / "Annotations", ["a", "b"], ds.classes)),
        "voc image set": (voc / "ImageSets" / "Main" / "trainval.txt", read_image_set),
        "voc results": (Path(voc_results[0]), lambda p: read_voc_results(voc_results, ds.classes)),
        "detect json": (root / "detect.json", lambda p: read_detect_json(p, ds)),
        "propose json": (root / "propose.json", lambda p: read_propose_json(p, ds)),
        "yaml detector": (root / "detector.yaml", lambda p: load_config(DetectSchema, p)),
        "yaml proposals": (root / "proposals.yaml", lambda p: load_config(ProposalsConfig, p)),
    }


def _images() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    out = {}
    for fmt, mode in (("PNG", "RGB"), ("JPEG", "RGB"), ("BMP", "RGB"), ("TIFF", "RGB"), ("WEBP", "RGB"),
                      ("PNG", "P"), ("GIF", "P")):
        buf = io.BytesIO()
        Image.fromarray(pixels).convert(mode).save(buf, fmt)
        out[f"{fmt} {mode}"] = buf.getvalue()
    return out


def _check(read, path, name: str, variant: int) -> None:
    try:
        read(path)
    except USER_ERRORS:
        pass
    except Exception as err:  # anything else would reach the user as a traceback
        pytest.fail(f"{name}, variant {variant}: {type(err).__name__}: {err}")


@pytest.mark.parametrize("name", FORMATS)
def test_every_parser_raises_only_the_projects_errors(files, name):
    """Each file is damaged in place (some readers read it beside valid others), then restored."""
    path, read = files[name]
    valid = path.read_bytes()
    read(path)  # the valid file parses
    rng = random.Random(name)
    try:
        for i, data in enumerate(mutations(valid, rng)):
            path.write_bytes(data)
            _check(read, path, name, i)
    finally:
        path.write_bytes(valid)


@pytest.mark.parametrize("name,data", sorted(_images().items()))
def test_image_loader_raises_only_image_errors(tmp_path, name, data):
    rng = random.Random(name)
    path = tmp_path / "img"
    for i, damaged in enumerate(mutations(data, rng)):
        path.write_bytes(damaged)
        _check(load_image, path, name, i)
        _check(lambda p: load_image(p, max_pixels=200), path, name + " reduced", i)


def test_a_mat_file_that_crashes_scipy_is_an_input_error(tmp_path):
    """A flipped bit in an element's size makes scipy's MAT reader segfault: read in a child
    process, it is one InputError instead of a dead process (found by this fuzzer)."""
    from core.errors import InputError
    from core.formats.ilsvrc import read_meta, write_meta
    write_meta(tmp_path / "meta_det.mat", read_meta_text_synsets())
    data = bytearray((tmp_path / "meta_det.mat").read_bytes())
    data[321] = 2  # as the fuzzer's variant 13 of "ilsvrc meta mat"
    (tmp_path / "meta_det.mat").write_bytes(bytes(data))
    with pytest.raises(InputError, match="meta_det.mat: cannot read MATLAB file"):
        read_meta(tmp_path / "meta_det.mat")


def read_meta_text_synsets():
    from core.formats.ilsvrc import devkit_synsets
    return devkit_synsets(dataset())
