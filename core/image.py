"""Image loading a user can throw anything at.

Every decodable JPEG/PNG/BMP/TIFF/WebP, whether grayscale, palette, RGBA, 16-bit, CMYK or
EXIF-rotated, becomes an RGB uint8 ``H×W×3`` array. Anything else (a missing path, an empty,
truncated, corrupt or non-image file) raises :class:`ImageError`, whose message names the file
and the reason, so command lines can print it as one line.
"""
from __future__ import annotations

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

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


def _to_uint8(img: Image.Image) -> Image.Image:
    """16-bit and 32-bit modes: scale the full range down to 8 bits instead of clipping."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
        if img.mode == "F":
            hi = max(float(a.max(initial=0)), 1.0)
        return Image.fromarray(np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    return img


def _decode(path: str) -> tuple[np.ndarray, tuple[int, int]]:
    with warnings.catch_warnings():
        # Above MAX_PIXELS PIL only warns (up to twice the limit); make it an error to report.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as img:
            original = img.size
            img.load()
            img = ImageOps.exif_transpose(img)
            img = _to_uint8(img)
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                # Composite on white, as a viewer shows transparent regions.
                background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                img = Image.alpha_composite(background, rgba)
            rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(rgb), original


def _too_large(path: str, err: Exception) -> ImageError:
    """The ImageError for PIL's decompression-bomb check; its message holds the pixel count."""
    match = re.search(r"(\d+) pixels", str(err))
    pixels = f"{match.group(1)} pixels" if match else str(err)
    return ImageError(path, f"too large: {pixels} (the limit is {Image.MAX_IMAGE_PIXELS} pixels)")


def load_image(path) -> LoadedImage:
    """Read ``path`` as RGB uint8.

    Raises:
        ImageError: the path is missing, not a file, empty, not a decodable image, or larger
            than ``MAX_PIXELS``.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ImageError(path, "no such file")
    if not os.path.isfile(path):
        raise ImageError(path, "not a file")
    if os.path.getsize(path) == 0:
        raise ImageError(path, "empty file")
    try:
        pixels, original = _decode(path)
    except UnidentifiedImageError:
        raise ImageError(path, "not an image PIL can decode") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as err:
        raise _too_large(path, err) from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(path, f"corrupt or truncated image ({err})") from None
    if pixels.ndim != 3 or pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise ImageError(path, f"decoded to an unusable shape {pixels.shape}")
    return LoadedImage(pixels=pixels, original_size=original)


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
