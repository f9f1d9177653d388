"""Colormaps, overlays and map resizing (numpy only; matplotlib and torch as references)."""

from __future__ import annotations

import numpy as np
import pytest

from geocam_gui.core.explain import render
from geocam_gui.core.errors import BadArgument
from geocam_gui.core.explain.render import (
    COLORMAPS,
    colorbar,
    colorize,
    colormap_lut,
    heatmap_rgba,
    overlay,
    resize_map,
)


def _map(h: int = 20, w: int = 30, seed: int = 0) -> np.ndarray:
    m = np.random.default_rng(seed).random((h, w), dtype=np.float32)
    m[0, 0], m[0, 1] = 0.0, 1.0
    return m


def _image(h: int = 20, w: int = 30, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def test_luts_shape_dtype_and_jet_endpoints():
    for name in COLORMAPS:
        lut = colormap_lut(name)
        assert lut.shape == (256, 3) and lut.dtype == np.uint8
        assert not lut.flags.writeable
    jet = colormap_lut("jet")
    low, high = jet[0].astype(int), jet[255].astype(int)
    assert low[2] > 100 and low[0] == 0 and low[1] == 0, "jet low end is blue"
    assert high[0] > 100 and high[1] == 0 and high[2] == 0, "jet high end is dark red"
    assert high[0] < 200, "dark red, not bright red"
    gray = colormap_lut("gray")
    assert gray[0].tolist() == [0, 0, 0] and gray[255].tolist() == [255, 255, 255]
    with pytest.raises(BadArgument, match="Unknown colormap"):
        colormap_lut("rainbow-ish")


@pytest.mark.parametrize("name", COLORMAPS)
def test_colorize_equals_matplotlib(name):
    import matplotlib

    m = _map()
    sm = matplotlib.cm.ScalarMappable(cmap=name, norm=matplotlib.colors.Normalize(0, 1))
    ref = sm.to_rgba(m, bytes=True)[..., :3]
    out = colorize(m, name)
    assert out.dtype == np.uint8 and out.shape == (20, 30, 3)
    assert np.array_equal(out, ref)


def test_colorize_clips_and_handles_nan():
    m = np.array([[-1.0, 0.0, 1.0, 2.0, np.nan]], np.float64)
    out = colorize(m, "jet")
    lut = colormap_lut("jet")
    assert np.array_equal(out[0], lut[[0, 0, 255, 255, 0]])
    with pytest.raises(BadArgument, match="2-D"):
        colorize(np.zeros((2, 2, 2)), "jet")


def test_opacity_zero_is_the_image_and_one_is_the_colormap():
    img, m = _image(), _map()
    assert np.array_equal(overlay(img, m, opacity=0.0), img)
    assert np.array_equal(overlay(img, m, opacity=1.0, cmap="viridis"), colorize(m, "viridis"))
    out = overlay(img, m, opacity=0.5)
    assert out.dtype == np.uint8 and out.shape == img.shape
    expected = 0.5 * img.astype(np.float64) + 0.5 * colorize(m, "jet")
    assert np.abs(out.astype(np.float64) - expected).max() <= 1.0
    quarter = overlay(img, m, opacity=0.25)
    expected = 0.75 * img.astype(np.float64) + 0.25 * colorize(m, "jet")
    assert np.abs(quarter.astype(np.float64) - expected).max() <= 1.0


def test_overlay_resizes_a_small_map_to_the_image():
    img = _image(64, 48)
    small = _map(4, 3)
    out = overlay(img, small, opacity=1.0)
    assert out.shape == (64, 48, 3)
    assert np.array_equal(out, colorize(resize_map(small, (64, 48)), "jet"))


def test_overlay_rejects_bad_input():
    m = _map()
    with pytest.raises(BadArgument, match="uint8 RGB"):
        overlay(_image().astype(np.float32), m)
    with pytest.raises(BadArgument, match="uint8 RGB"):
        overlay(_image()[..., 0], m)
    with pytest.raises(BadArgument, match="Opacity"):
        overlay(_image(), m, opacity=1.5)


def test_resize_map_matches_torch_bilinear():
    import torch

    m = _map(7, 9)
    for size in [(7, 9), (14, 18), (224, 224), (3, 4), (20, 5), (1, 1)]:
        ref = torch.nn.functional.interpolate(
            torch.from_numpy(m)[None, None], size=size, mode="bilinear", align_corners=False
        )[0, 0].numpy()
        out = resize_map(m, size)
        assert out.dtype == np.float32 and out.shape == size
        assert np.abs(out - ref).max() <= 1e-5, size
    assert resize_map(m, (7, 9)) is not m  # a copy, never the caller's array
    const = np.full((3, 3), 0.25)
    assert np.allclose(resize_map(const, (10, 11)), 0.25)
    with pytest.raises(BadArgument, match="at least 1"):
        resize_map(m, (0, 4))


def test_heatmap_rgba():
    m = _map()
    rgba = heatmap_rgba(m, "magma")
    assert rgba.shape == (20, 30, 4) and rgba.dtype == np.uint8
    assert np.array_equal(rgba[..., :3], colorize(m, "magma"))
    assert rgba[0, 0, 3] == 0 and rgba[0, 1, 3] == 255
    assert np.abs(rgba[..., 3].astype(int) - np.round(m * 255)).max() <= 1
    opaque = heatmap_rgba(m, "magma", alpha_from_value=False)
    assert (opaque[..., 3] == 255).all()
    m[2, 2] = np.nan
    assert heatmap_rgba(m, alpha_from_value=False)[2, 2, 3] == 0


def test_colorbar_orientation():
    bar = colorbar("jet", 100, 12)
    assert bar.shape == (100, 12, 3) and bar.dtype == np.uint8
    lut = colormap_lut("jet")
    assert np.array_equal(bar[0, 0], lut[255]) and np.array_equal(bar[-1, 0], lut[0])  # high on top
    flat = colorbar("gray", 50, 4, vertical=False)
    assert flat.shape == (4, 50, 3)
    assert flat[0, 0].tolist() == [0, 0, 0] and flat[0, -1].tolist() == [255, 255, 255]
    assert (np.diff(flat[0, :, 0].astype(int)) >= 0).all()


def test_lut_is_built_once():
    render._lut.cache_clear()
    colormap_lut("turbo")
    colormap_lut("turbo")
    info = render._lut.cache_info()
    assert info.misses == 1 and info.hits == 1


def test_scale_ticks_label_the_values_the_colours_stand_for():
    assert render.scale_ticks(1.0) == [(0.0, "0"), (0.5, "0.5"), (1.0, "1")]
    assert [t for _f, t in render.scale_ticks(0.0123456)] == ["0", "0.00617", "0.0123"]
    assert [t for _f, t in render.scale_ticks(12345.0, n=2)] == ["0", "1.23e+04"]
    assert render.format_value(3.14159) == "3.14" and render.format_value(0) == "0"
    # A value v on a scale topped by `top` is coloured like v / top: the tick's fraction.
    bar = colorbar("jet", 256, 1)
    for frac, _text in render.scale_ticks(40.0):
        assert np.array_equal(bar[255 - min(int(frac * 256), 255), 0], colorize(np.array([[frac]]), "jet")[0, 0])
    with pytest.raises(BadArgument):
        render.scale_ticks(1.0, n=1)
    with pytest.raises(BadArgument):
        render.scale_ticks(float("nan"))
