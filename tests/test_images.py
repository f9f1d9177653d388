"""Robust decoding: modes, EXIF orientation, bad files, bombs, non-ASCII paths."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

from geocam_gui.core.data import images
from geocam_gui.core.errors import ImageError


def _rgb(w=40, h=20, colour=(200, 30, 10)):
    return Image.new("RGB", (w, h), colour)


@pytest.mark.parametrize(
    ("mode", "fmt", "expect"),
    [
        ("L", "PNG", (128, 128, 128)),
        ("1", "PNG", (255, 255, 255)),
        ("P", "PNG", None),
        ("CMYK", "JPEG", None),
        ("CMYK", "TIFF", None),
        ("RGB", "BMP", (200, 30, 10)),
        ("RGB", "WEBP", None),
        ("RGB", "GIF", None),
    ],
)
def test_modes_become_rgb(tmp_path, mode, fmt, expect):
    if mode == "L":
        im = Image.new("L", (40, 20), 128)
    elif mode == "1":
        im = Image.new("1", (40, 20), 1)
    elif mode == "CMYK":
        im = _rgb().convert("CMYK")
    elif mode == "P":
        im = _rgb().convert("P")
    else:
        im = _rgb()
    path = tmp_path / f"x.{fmt.lower()}"
    im.save(path, format=fmt)
    out = images.load_rgb(path)
    assert out.mode == "RGB" and out.size == (40, 20)
    px = out.getpixel((5, 5))
    if expect is not None:
        assert px == expect
    else:
        assert abs(px[0] - 200) < 30 and px[2] < 60  # red-ish survives the conversion


def test_alpha_is_composited_on_white(tmp_path):
    im = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    im.putpixel((0, 0), (0, 0, 255, 255))
    im.save(tmp_path / "a.png")
    out = images.load_rgb(tmp_path / "a.png")
    assert out.getpixel((5, 5)) == (255, 255, 255)
    assert out.getpixel((0, 0)) == (0, 0, 255)
    Image.new("LA", (4, 4), (0, 0)).save(tmp_path / "la.png")
    assert images.load_rgb(tmp_path / "la.png").getpixel((1, 1)) == (255, 255, 255)
    p = Image.new("P", (4, 4), 0)
    p.putpalette([10, 20, 30] + [0, 0, 0] * 255)
    p.info["transparency"] = 0
    p.save(tmp_path / "p.png", transparency=0)
    assert images.load_rgb(tmp_path / "p.png").getpixel((1, 1)) == (255, 255, 255)


def test_sixteen_bit_grey_is_scaled(tmp_path):
    arr = np.full((8, 8), 65535, dtype=np.uint16)
    arr[0, 0] = 0
    Image.fromarray(arr).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as im:
        assert im.mode.startswith("I")
    out = images.load_rgb(tmp_path / "g16.png")
    assert out.getpixel((4, 4)) == (255, 255, 255) and out.getpixel((0, 0)) == (0, 0, 0)


def test_exif_orientation_is_applied(tmp_path):
    im = Image.new("RGB", (40, 20), (0, 0, 0))
    im.paste((255, 255, 255), (0, 0, 10, 20))  # white left edge
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 clockwise for display
    im.save(tmp_path / "r.jpg", exif=exif, quality=95)
    out = images.load_rgb(tmp_path / "r.jpg")
    assert out.size == (20, 40)
    assert np.asarray(out)[2, 10].mean() > 200 and np.asarray(out)[-3, 10].mean() < 50  # left edge now on top
    assert images.probe(tmp_path / "r.jpg") == ("JPEG", 20, 40)


def test_load_resized_keeps_the_whole_photo(tmp_path):
    im = Image.new("RGB", (640, 480), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 64, 480))  # red strip on the left tenth
    im.save(tmp_path / "w.jpg", quality=95)
    arr = images.load_resized(tmp_path / "w.jpg", 50)
    assert arr.shape == (50, 50, 3) and arr.dtype == np.uint8
    assert arr[25, 1, 0] > 200 and arr[25, 48, 2] > 200  # no crop: both ends present


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty file (0 bytes)"),
        (b"<!DOCTYPE html><html>quota exceeded</html>", "not an image"),
    ],
)
def test_bad_content_reasons(tmp_path, content, reason):
    p = tmp_path / "bad.jpg"
    p.write_bytes(content)
    with pytest.raises(ImageError) as info:
        images.load_rgb(p)
    assert info.value.reason == reason and info.value.path == str(p)


def test_truncated_jpeg_and_png(tmp_path):
    rng = np.random.default_rng(0)
    im = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    for fmt in ("JPEG", "PNG"):
        buf = io.BytesIO()
        im.save(buf, format=fmt)
        p = tmp_path / f"cut.{fmt.lower()}"
        p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
        with pytest.raises(ImageError) as info:
            images.load_resized(p, 16)
        assert info.value.reason == "truncated file" or info.value.reason.startswith("corrupt")


def test_missing_and_unreadable(tmp_path):
    with pytest.raises(ImageError, match="missing file"):
        images.load_rgb(tmp_path / "nope.png")
    p = tmp_path / "locked.png"
    _rgb().save(p)
    os.chmod(p, 0)
    try:
        if os.access(p, os.R_OK):  # running as root: permissions do not bite
            pytest.skip("cannot make a file unreadable as this user")
        with pytest.raises(ImageError, match="permission denied"):
            images.load_rgb(p)
    finally:
        os.chmod(p, 0o644)
    with pytest.raises(ImageError, match="not a regular file"):
        images.load_rgb(tmp_path)


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    p = tmp_path / "huge.png"
    Image.new("L", (400, 300)).save(p)
    monkeypatch.setattr(images, "MAX_PIXELS", 100_000)
    with pytest.raises(ImageError, match="decompression bomb"):
        images.load_rgb(p)
    monkeypatch.setattr(images, "MAX_PIXELS", 200_000)
    assert images.load_rgb(p).size == (400, 300)


def test_pillow_own_bomb_guard_is_reported(tmp_path, monkeypatch):
    p = tmp_path / "huge.png"
    Image.new("L", (400, 300)).save(p)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageError, match="decompression bomb"):
        images.load_rgb(p)


def test_japanese_path(tmp_path):
    p = tmp_path / "東京" / "新宿_夜景.png"
    p.parent.mkdir()
    _rgb().save(p)
    assert images.load_resized(p, 8).shape == (8, 8, 3)
    assert images.is_image_name("写真.JPG") and not images.is_image_name("メモ.txt")
