"""Image loading a user can throw anything at.

Every decodable JPEG/PNG/BMP/TIFF/WebP, whether grayscale, palette, RGBA, 16-bit, CMYK or
EXIF-rotated, becomes an RGB uint8 ``H×W×3`` array. Anything else (a missing path, an empty,
truncated, corrupt or non-image file) raises :class:`ImageError`, whose message names the file
and the reason, so command lines can print it as one line.

Memory is bounded. An image is decoded at full resolution only if PIL's decoded copy takes at most
:data:`MAX_DECODE_BYTES` (2 GiB: 4 bytes per RGB pixel, so ~536 M pixels, e.g. 23,000 x 23,000);
a larger one is refused. A caller that works on a reduced image passes ``max_pixels``: the image
is then decoded at a reduced scale where the decoder allows it (JPEG's DCT scaling, 1/2 to 1/8,
which also admits JPEGs above the bound) and reduced by an integer factor (a box filter) right
after decoding, and :meth:`LoadedImage.to_full` maps boxes back to the original pixels.
"""
from __future__ import annotations

import math
import os
import re
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jpe")
# PIL refuses images above ~89 M pixels (a 9500 x 9500 photo) as possible decompression bombs.
# Any decodable image should load, so the limit is raised to 2**30 pixels (3 GiB as RGB uint8);
# beyond that an image is an ImageError ("too large"), not an out-of-memory crash.
MAX_PIXELS = 2 ** 30
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
MAX_DECODE_BYTES = 2 ** 31  # PIL's decoded image at full resolution (conversions add up to ~1.5x)
# What the per-image tools work on: selective search sees at most 500 px a side and the warps a few
# megapixels, so 2**25 pixels (e.g. 5,800 x 5,800; 96 MiB as RGB) leaves every photo untouched.
WORK_PIXELS = 2 ** 25
_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}  # others: 4


class ImageError(ValueError):
    """An input image could not be read; ``str(err)`` is ``"<path>: <reason>"``."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason

    def __reduce__(self):  # rebuilt from (path, reason) when a worker process sends it back
        return type(self), (self.path, self.reason)


@dataclass(frozen=True)
class LoadedImage:
    """An image as RGB uint8 ``[H, W, 3]`` plus its size as stored on disk (before EXIF rotation)."""

    pixels: np.ndarray
    original_size: tuple[int, int]  # (width, height) as stored in the file
    scale: int = 1  # original pixels per decoded pixel (1 unless decoded with max_pixels)
    full_size: tuple[int, int] | None = None  # (width, height) at full resolution, after EXIF rotation

    def to_full(self, boxes: np.ndarray) -> np.ndarray:
        """``[N, 4]`` xyxy boxes in ``pixels`` → the same boxes in full-resolution pixels.

        Returns ``boxes`` itself when the image was not reduced (so results are bit-identical).
        """
        if self.scale == 1:
            return boxes
        width, height = self.full_size
        limit = np.array([width, height, width, height], np.float32)
        return np.minimum(np.asarray(boxes, np.float32) * np.float32(self.scale), limit)

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


def _to_uint8(img: Image.Image, sixteen_bit: bool) -> Image.Image:
    """16-bit and 32-bit modes: scale the full range down to 8 bits instead of clipping."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float32 if img.mode == "F" else np.float64)
        hi = 65535.0 if sixteen_bit or a.max(initial=0) > 255 else 255.0
        if img.mode == "F":
            hi = max(float(a.max(initial=0)), 1.0)
        return Image.fromarray(np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    return img


def _check_bound(path: str, img: Image.Image, reducible: bool) -> None:
    """Refuse, before decoding, an image whose full-resolution decode would break the bound."""
    width, height = img.size
    need = width * height * _BYTES_PER_PIXEL.get(img.mode, 4)
    if need > MAX_DECODE_BYTES and not (reducible and img.format == "JPEG"):
        raise ImageError(path, f"too large to decode: {width} x {height} {img.mode} needs {need / 2**30:.1f} GiB "
                               f"(the bound is {MAX_DECODE_BYTES / 2**30:.0f} GiB)")


def _reduction(size: tuple[int, int], max_pixels: int | None) -> int:
    """The smallest integer factor that brings ``size`` to at most ``max_pixels`` (1: none)."""
    width, height = size
    if not max_pixels or width * height <= max_pixels:
        return 1
    factor = max(2, int(math.sqrt(width * height / max_pixels)))
    while math.ceil(width / factor) * math.ceil(height / factor) > max_pixels:
        factor += 1
    return factor


def _decode_reduced(path: str, img: Image.Image, max_pixels: int | None) -> tuple[Image.Image, int]:
    """Decode ``img`` (just opened) with at most ``max_pixels``; returns it and its integer scale."""
    _check_bound(path, img, max_pixels is not None)
    full = img.size
    factor = _reduction(full, max_pixels)
    if factor > 1 and img.format == "JPEG":  # DCT scaling: decodes at 1/2, 1/4 or 1/8 directly
        img.draft(img.mode, (math.ceil(full[0] / factor), math.ceil(full[1] / factor)))
    img.load()
    scale = round(full[0] / img.size[0])  # the draft's power of two, sides rounded up (1 without one)
    rest = _reduction(img.size, max_pixels)
    if rest > 1:
        if img.mode in ("1", "P") or img.mode.startswith("I;16"):  # modes reduce() cannot average
            img = img.convert({"1": "L", "P": "RGBA"}.get(img.mode, "I"))
        img = img.reduce(rest)
        scale *= rest
    return img, scale


def _full_size(img: Image.Image, stored: tuple[int, int]) -> tuple[int, int]:
    """The full-resolution (width, height) as shown: EXIF orientations 5-8 swap the sides."""
    return stored[::-1] if img.getexif().get(0x0112) in (5, 6, 7, 8) else stored


def _decode(path: str, max_pixels: int | None) -> LoadedImage:
    with warnings.catch_warnings():
        # Above MAX_PIXELS PIL only warns (up to twice the limit); make it an error to report.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as img:
            original, sixteen_bit = img.size, img.mode.startswith("I;16")
            full_size = _full_size(img, original)
            img, scale = _decode_reduced(path, img, max_pixels)
            ImageOps.exif_transpose(img, in_place=True)  # in place: no copy of a large image
            img = _to_uint8(img, sixteen_bit)
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                # Composite on white, as a viewer shows transparent regions.
                background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                img = Image.alpha_composite(background, rgba)
            if img.mode != "RGB":
                img = img.convert("RGB")
            rgb = np.asarray(img, dtype=np.uint8)
    return LoadedImage(np.ascontiguousarray(rgb), original, scale, full_size)


def _too_large(path: str, err: Exception) -> ImageError:
    """The ImageError for PIL's decompression-bomb check; its message holds the pixel count."""
    match = re.search(r"(\d+) pixels", str(err))
    pixels = f"{match.group(1)} pixels" if match else str(err)
    return ImageError(path, f"too large: {pixels} (the limit is {Image.MAX_IMAGE_PIXELS} pixels)")


def load_image(path, max_pixels: int | None = None) -> LoadedImage:
    """Read ``path`` as RGB uint8.

    Args:
        max_pixels: decode at a reduced size (an integer factor, see the module notes) when the
            image has more pixels than this (e.g. :data:`WORK_PIXELS`); None: full resolution.

    Raises:
        ImageError: the path is missing, not a file, empty, not a decodable image, larger
            than ``MAX_PIXELS``, or too large to decode within ``MAX_DECODE_BYTES``.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ImageError(path, "no such file")
    if not os.path.isfile(path):
        raise ImageError(path, "not a file")
    if os.path.getsize(path) == 0:
        raise ImageError(path, "empty file")
    try:
        loaded = _decode(path, max_pixels)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(path, "not an image PIL can decode") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as err:
        raise _too_large(path, err) from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(path, f"corrupt or truncated image ({err})") from None
    if loaded.pixels.ndim != 3 or loaded.pixels.shape[0] == 0 or loaded.pixels.shape[1] == 0:
        raise ImageError(path, f"decoded to an unusable shape {loaded.pixels.shape}")
    return loaded


def list_images(paths) -> list[str]:
    """Expand files and folders (one level, sorted) into a list of image paths, order kept."""
    out: list[str] = []
    for p in paths:
        p = os.fspath(p)
        if os.path.isdir(p):
            out.extend(os.path.join(p, n) for n in sorted(os.listdir(p))
                       if n.lower().endswith(IMAGE_SUFFIXES))
        else:
            out.append(p)
    return out
