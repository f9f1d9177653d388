"""Colormaps and overlay compositing in numpy, fast enough to re-blend on every slider move.

Colormap lookup tables come from matplotlib (imported lazily, once per colormap) and are
256-entry uint8 RGB tables; a value ``v`` in [0, 1] picks entry ``min(floor(v * 256), 255)``,
matplotlib's own rule, so ``colorize`` equals ``matplotlib.cm.ScalarMappable.to_rgba`` with
``bytes=True``. "jet" is the paper's colormap: blue for low values, dark red for high ones.

Blending is integer arithmetic on uint16: ``(image * (256 - w) + colour * w + 128) >> 8`` with
``w = round(opacity * 256)``, so opacity 0 returns the image and opacity 1 the colormap
exactly. Maps of another size than the image are resized bilinearly (``resize_map``,
``align_corners=False`` semantics, like ``torch.nn.functional.interpolate`` and ``cv2.resize``).
NaN in a map counts as 0 (and is transparent in ``heatmap_rgba``).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from geocam_gui.core.errors import BadArgument

COLORMAPS: tuple[str, ...] = ("jet", "turbo", "viridis", "inferno", "magma", "gray")


@lru_cache(maxsize=None)
def _lut(name: str) -> np.ndarray:
    import matplotlib

    cmap = matplotlib.colormaps[name].resampled(256)
    rgba = cmap(np.arange(256))  # float64 (256, 4), the exact entries to_rgba uses
    lut = (rgba[:, :3] * 255).astype(np.uint8)  # matplotlib's bytes=True conversion
    lut.setflags(write=False)
    return lut


@lru_cache(maxsize=None)
def _lut32(name: str) -> np.ndarray:
    """The LUT packed as one uint32 per entry (R, G, B, 255 in memory order): a single ``take``
    of 4-byte words is several times faster than fancy-indexing (256, 3) rows."""
    packed = np.empty((256, 4), np.uint8)
    packed[:, :3] = _lut(name)
    packed[:, 3] = 255
    out = packed.view(np.uint32).reshape(256)
    out.setflags(write=False)
    return out


def _colour4(map01: np.ndarray, cmap: str) -> np.ndarray:
    """(H, W, 4) uint8 view: RGB from the colormap, alpha 255."""
    colormap_lut(cmap)  # validates the name
    idx = _indices(map01)
    return np.take(_lut32(cmap), idx).view(np.uint8).reshape(idx.shape + (4,))


def colormap_lut(name: str) -> np.ndarray:
    """The (256, 3) uint8 RGB table of a colormap in ``COLORMAPS`` (read-only, cached)."""
    if name not in COLORMAPS:
        raise BadArgument(f"Unknown colormap {name!r}: choose one of {', '.join(COLORMAPS)}.")
    return _lut(name)


def _as_map(map01, what: str = "map") -> np.ndarray:
    m = np.asarray(map01)
    if m.ndim != 2:
        raise BadArgument(f"A {what} must be a 2-D array (H, W), got shape {m.shape}.")
    if m.size == 0:
        raise BadArgument(f"A {what} must not be empty.")
    if not np.issubdtype(m.dtype, np.number) or np.iscomplexobj(m):
        raise BadArgument(f"A {what} must hold real numbers, got dtype {m.dtype}.")
    return m


def _indices(map01: np.ndarray) -> np.ndarray:
    """Map values -> LUT indices (uint8): ``floor(v * 256)`` clipped to [0, 255], NaN -> 0."""
    idx = np.multiply(map01, np.float32(256.0), dtype=np.float32)  # always a fresh array
    np.fmax(idx, np.float32(0.0), out=idx)  # fmax also turns NaN into 0
    np.minimum(idx, np.float32(255.0), out=idx)
    return idx.astype(np.uint8)


def colorize(map01, cmap: str = "jet") -> np.ndarray:
    """A map with values in [0, 1] (H, W) -> RGB image (H, W, 3) uint8 (values outside are clipped)."""
    m = _as_map(map01)
    return np.ascontiguousarray(_colour4(m, cmap)[..., :3])


def heatmap_rgba(map01, cmap: str = "jet", *, alpha_from_value: bool = True) -> np.ndarray:
    """The heat map alone as RGBA (H, W, 4) uint8, for export over any background.

    With ``alpha_from_value`` the opacity follows the value (cold areas transparent), else it is
    opaque everywhere except at NaN.
    """
    m = _as_map(map01)
    out = _colour4(m, cmap)
    v = m.astype(np.float32, copy=False)
    if alpha_from_value:
        a = np.clip(np.nan_to_num(v, nan=0.0) * np.float32(255.0) + np.float32(0.5), 0, 255)
        out[..., 3] = a.astype(np.uint8)
    else:
        out[..., 3] = np.where(np.isnan(v), 0, 255).astype(np.uint8)
    return out


@lru_cache(maxsize=64)
def _interp_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) float32 linear-interpolation weights, align_corners=False, edges clamped."""
    scale = n_in / n_out
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * scale - 0.5
    src = np.maximum(src, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = src - i0
    mat = np.zeros((n_out, n_in), np.float64)
    rows = np.arange(n_out)
    np.add.at(mat, (rows, i0), 1.0 - frac)
    np.add.at(mat, (rows, i1), frac)
    mat = mat.astype(np.float32)
    mat.setflags(write=False)
    return mat


def resize_map(map_, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a 2-D map to ``size = (H, W)`` as float32, with the semantics of
    ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)`` (no antialias)."""
    m = _as_map(map_)
    try:
        H, W = int(size[0]), int(size[1])
    except (TypeError, ValueError, IndexError):
        raise BadArgument(f"A size must be (H, W), got {size!r}.") from None
    if H < 1 or W < 1:
        raise BadArgument(f"A size must be at least 1 x 1 pixel, got {H} x {W}.")
    m = m.astype(np.float32, copy=False)
    h, w = m.shape
    if (h, w) == (H, W):
        return m.copy()
    out = m if h == H else _interp_matrix(h, H) @ m
    return out if w == W else out @ _interp_matrix(w, W).T


def overlay(image, map01, *, opacity: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """Blend the colorized map over an RGB uint8 image (H, W, 3); a map of another size is
    resized bilinearly to the image. ``opacity`` 0 gives the image, 1 the colormap."""
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise BadArgument(f"The image must be uint8 RGB (H, W, 3), got {img.dtype} {img.shape}.")
    if not 0.0 <= float(opacity) <= 1.0:
        raise BadArgument(f"Opacity must be between 0 and 1, got {opacity}.")
    m = _as_map(map01)
    if m.shape != img.shape[:2]:
        m = resize_map(m, img.shape[:2])
    w = int(round(float(opacity) * 256))
    if w == 0:
        return img.copy()
    colour = _colour4(m, cmap)[..., :3]
    if w == 256:
        return np.ascontiguousarray(colour)
    acc = img.astype(np.uint16) * np.uint16(256 - w)
    acc += colour.astype(np.uint16) * np.uint16(w)
    acc += np.uint16(128)
    acc >>= 8
    return acc.astype(np.uint8)


def colorbar(cmap: str = "jet", length: int = 256, thickness: int = 16, vertical: bool = True) -> np.ndarray:
    """A colour bar as an RGB uint8 image: (length, thickness, 3) with high values at the top
    when ``vertical``, else (thickness, length, 3) with high values on the right."""
    if int(length) < 2 or int(thickness) < 1:
        raise BadArgument(f"A colour bar needs length >= 2 and thickness >= 1, got {length} and {thickness}.")
    ramp = np.linspace(0.0, 1.0, int(length), dtype=np.float32)
    row = colorize(ramp[None, :], cmap)[0]  # (length, 3)
    if vertical:
        return np.ascontiguousarray(np.broadcast_to(row[::-1, None, :], (int(length), int(thickness), 3)))
    return np.ascontiguousarray(np.broadcast_to(row[None, :, :], (int(thickness), int(length), 3)))


def format_value(value: float) -> str:
    """A colour-bar value with 3 significant digits ("0", "0.5", "1", "0.0123", "1.23e+04")."""
    v = float(value)
    return "0" if v == 0 else f"{v:.3g}"


def scale_ticks(top: float, n: int = 3) -> list[tuple[float, str]]:
    """``n`` evenly spaced ticks of a colour bar whose top stands for ``top`` (its bottom for 0):
    (fraction of the bar from the bottom, label). A map value ``v`` on that scale is drawn at
    ``v / top`` of the bar, so the labels are the values the colours stand for."""
    if int(n) < 2:
        raise BadArgument(f"A colour bar needs at least 2 ticks, got {n}.")
    top = float(top)
    if not np.isfinite(top) or top < 0:
        raise BadArgument(f"A colour-bar top must be a finite value >= 0, got {top}.")
    return [(float(f), format_value(f * top)) for f in np.linspace(0.0, 1.0, int(n))]
