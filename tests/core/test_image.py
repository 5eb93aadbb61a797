"""core.image: every odd format a user may pass becomes RGB uint8; every bad file is one ImageError."""
import io

import numpy as np
import pytest
from PIL import Image

from core.image import ImageError, list_images, load_image


def _rgb(h: int = 20, w: int = 30) -> np.ndarray:
    """A smooth RGB test image (lossy codecs keep it close)."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), np.full_like(x, 90)], 2).astype(np.uint8)


@pytest.mark.parametrize("suffix,fmt,lossless", [
    (".png", "PNG", True), (".bmp", "BMP", True), (".tif", "TIFF", True), (".webp", "WEBP", False),
    (".jpg", "JPEG", False), (".jpeg", "JPEG", False)])
def test_rgb_formats(tmp_path, suffix, fmt, lossless):
    path = tmp_path / f"img{suffix}"
    kwargs = {"lossless": True} if fmt == "WEBP" else {}
    Image.fromarray(_rgb()).save(path, fmt, **kwargs)
    img = load_image(path)
    assert img.pixels.dtype == np.uint8 and img.pixels.shape == (20, 30, 3)
    assert img.original_size == (30, 20) and (img.width, img.height) == (30, 20)
    if lossless or fmt == "WEBP":
        np.testing.assert_array_equal(img.pixels, _rgb())
    else:
        assert np.abs(img.pixels.astype(int) - _rgb()).mean() < 4


def test_grayscale_becomes_three_equal_channels(tmp_path):
    gray = _rgb()[..., 0]
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    px = load_image(tmp_path / "g.png").pixels
    assert px.shape == (20, 30, 3)
    for c in range(3):
        np.testing.assert_array_equal(px[..., c], gray)


def test_rgba_composited_on_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:2, :, 3] = 255  # top half opaque red, bottom half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    px = load_image(tmp_path / "a.png").pixels
    assert px.shape == (4, 4, 3)
    np.testing.assert_array_equal(px[0, 0], [200, 0, 0])
    np.testing.assert_array_equal(px[3, 3], [255, 255, 255])


def test_palette_with_transparency(tmp_path):
    p = Image.new("P", (4, 4), 1)
    p.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    p.info["transparency"] = 0
    p.save(tmp_path / "p.png", transparency=0)
    np.testing.assert_array_equal(load_image(tmp_path / "p.png").pixels[0, 0], [10, 20, 30])


def test_16_bit_png_scaled_not_clipped(tmp_path):
    a = np.array([[0, 32768, 65535]], np.uint16)
    Image.fromarray(a).save(tmp_path / "d.png")
    assert Image.open(tmp_path / "d.png").mode.startswith("I")
    px = load_image(tmp_path / "d.png").pixels
    assert px.shape == (1, 3, 3)
    np.testing.assert_array_equal(px[0, :, 0], [0, 128, 255])


def test_cmyk_jpeg(tmp_path):
    cmyk = Image.new("CMYK", (8, 6), (255, 0, 0, 0))  # pure cyan
    cmyk.save(tmp_path / "c.jpg", quality=95)
    assert Image.open(tmp_path / "c.jpg").mode == "CMYK"
    px = load_image(tmp_path / "c.jpg").pixels
    assert px.shape == (6, 8, 3)
    r, g, b = px[3, 4].astype(int)
    assert r < 40 and g > 215 and b > 215


def test_exif_orientation_rotates_and_reports_stored_size(tmp_path):
    rgb = _rgb(20, 40)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 clockwise to display
    Image.fromarray(rgb).save(tmp_path / "o.jpg", exif=exif.tobytes(), quality=95)
    img = load_image(tmp_path / "o.jpg")
    assert img.original_size == (40, 20)
    assert img.pixels.shape == (40, 20, 3)
    expected = np.rot90(rgb, k=-1)  # clockwise
    assert np.abs(img.pixels.astype(int) - expected).mean() < 4


def _png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.mark.parametrize("name,content,reason", [
    ("empty.jpg", b"", "empty"),
    ("text.png", b"hello, I am not an image\n" * 10, "not an image"),
    ("noise.jpg", bytes(range(256)) * 4, "not an image"),
    ("cut.png", _png_bytes()[:300], "truncated"),
    ("cut.jpg", _jpeg_bytes()[:400], "truncated"),
    ("badbody.png", _png_bytes()[:100] + b"\x00" * 400 + _png_bytes()[500:], "corrupt"),
])
def test_bad_files_raise_image_error_naming_the_file(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageError) as err:
        load_image(path)
    assert str(path) in str(err.value) and reason in str(err.value)
    assert err.value.path == str(path)


def test_missing_path_and_folder(tmp_path):
    with pytest.raises(ImageError, match="no such file") as err:
        load_image(tmp_path / "nope.jpg")
    assert "nope.jpg" in str(err.value)
    with pytest.raises(ImageError, match="not a file"):
        load_image(tmp_path)


def test_list_images_expands_folders_sorted_and_keeps_files(tmp_path):
    for name in ("b.png", "a.JPG", "c.txt", "d.webp"):
        (tmp_path / name).write_bytes(b"x")
    listed = list_images([str(tmp_path / "c.txt"), str(tmp_path)])
    assert listed == [str(tmp_path / "c.txt")] + [str(tmp_path / n) for n in ("a.JPG", "b.png", "d.webp")]


def test_very_large_image_loads(tmp_path):
    # 9500 x 9500 is above PIL's default decompression-bomb limit (89 M pixels); a 1-bit PNG
    # of one colour is a few kB on disk.
    Image.new("1", (9500, 9500), 1).save(tmp_path / "big.png")
    img = load_image(tmp_path / "big.png")
    assert img.original_size == (9500, 9500) and img.pixels.shape == (9500, 9500, 3)
    assert img.pixels[0, 0].tolist() == [255, 255, 255]


@pytest.mark.parametrize("size", [(12, 12), (30, 20)])  # warning range (limit..2x) and beyond 2x
def test_beyond_the_pixel_limit_is_an_image_error(tmp_path, monkeypatch, size):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    Image.new("RGB", size).save(tmp_path / "bomb.png")
    with pytest.raises(ImageError, match=rf"bomb.png: too large: {size[0] * size[1]} pixels"):
        load_image(tmp_path / "bomb.png")


def test_reduced_decoding_maps_boxes_back_to_full_pixels(tmp_path):
    Image.fromarray(_rgb(200, 300)).save(tmp_path / "big.png")
    full = load_image(tmp_path / "big.png")
    assert full.scale == 1 and full.to_full(np.ones((1, 4), np.float32)) is not None
    small = load_image(tmp_path / "big.png", max_pixels=6000)
    assert small.scale == 4 and small.pixels.shape == (50, 75, 3) and small.full_size == (300, 200)
    assert small.original_size == (300, 200)
    np.testing.assert_allclose(small.pixels[10, 10], full.pixels[40:44, 40:44].reshape(-1, 3).mean(0), atol=1)
    boxes = np.array([[1, 2, 10, 20], [70, 40, 75, 50]], np.float32)
    np.testing.assert_array_equal(small.to_full(boxes), [[4, 8, 40, 80], [280, 160, 300, 200]])
    same = load_image(tmp_path / "big.png", max_pixels=60000)  # within the limit: untouched
    np.testing.assert_array_equal(same.pixels, full.pixels)
    assert same.to_full(boxes) is boxes


def test_jpeg_is_decoded_at_reduced_scale(tmp_path):
    Image.fromarray(_rgb(600, 800)).save(tmp_path / "big.jpg", quality=95)
    img = load_image(tmp_path / "big.jpg", max_pixels=40000)
    assert img.scale == 4 and img.pixels.shape == (150, 200, 3)  # DCT scaling 1/4, no second step


def test_exif_rotated_reduced_image_maps_to_the_rotated_frame(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise
    Image.fromarray(_rgb(200, 300)).save(tmp_path / "r.jpg", exif=exif)
    img = load_image(tmp_path / "r.jpg", max_pixels=6000)
    assert img.full_size == (200, 300) and img.pixels.shape[:2] == (75, 50)
    assert img.to_full(np.array([[0, 0, 60, 80]], np.float32)).tolist() == [[0, 0, 200, 300]]


def test_decoded_size_beyond_the_bound_is_refused_unless_jpeg_can_reduce(tmp_path, monkeypatch):
    import core.image
    monkeypatch.setattr(core.image, "MAX_DECODE_BYTES", 4 * 100 * 100)
    Image.fromarray(_rgb(101, 100)).save(tmp_path / "p.png")
    Image.fromarray(_rgb(101, 100)).save(tmp_path / "j.jpg")
    for path, reducible in ((tmp_path / "p.png", True), (tmp_path / "j.jpg", False)):
        with pytest.raises(ImageError, match=r"too large to decode: 100 x 101 RGB needs 0.0 GiB"):
            load_image(path, max_pixels=5000 if reducible else None)
    assert load_image(tmp_path / "j.jpg", max_pixels=5000).scale == 2
