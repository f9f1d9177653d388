"""Robust image decoding: every photo becomes RGB, or a short reason why it cannot.

Street-view collections contain the odd broken file: zero bytes after a failed download, a
truncated JPEG, an HTML error page saved as ``.jpg``, a 16-bit grey PNG, a CMYK scan. Everything
here either returns a clean RGB image or raises :class:`ImageError` with a short, stable reason
(the audit groups bad files by it). Paths may contain any characters (Japanese file names work:
files are opened through Python, never through a byte-string API).
"""

from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from geocam_gui.core.errors import ImageError

#: Largest image accepted, in pixels. A Pittsburgh 250k view is 0.3 MP and a full equirectangular
#: street-view panorama about 30 MP; anything above this is treated as a decompression bomb.
MAX_PIXELS = 100_000_000

#: File name extensions that are indexed as images (lower case).
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm"}
)

_WHITE = (255, 255, 255)

# Decoding runs on worker threads, where warnings.catch_warnings() is not safe (it swaps a
# process-wide filter list). The warnings Pillow gives for files we judge ourselves (bomb size,
# odd EXIF, palette transparency) are silenced once here instead; failures still raise.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")


def is_image_name(name: str) -> bool:
    """True when ``name`` has an image file extension (case-insensitive)."""
    dot = name.rfind(".")
    return dot > 0 and name[dot:].lower() in IMAGE_EXTENSIONS


def _open(path: str | os.PathLike) -> Image.Image:
    """Open the header of ``path`` (no pixel decoding) or raise ImageError with a reason."""
    p = os.fspath(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise ImageError(p, "missing file") from None
    except PermissionError:
        raise ImageError(p, "permission denied") from None
    except OSError as exc:
        raise ImageError(p, f"unreadable ({exc.strerror or exc})") from None
    if not os.path.isfile(p):
        raise ImageError(p, "not a regular file")
    if st.st_size == 0:
        raise ImageError(p, "empty file (0 bytes)")
    try:
        im = Image.open(p)
    except Image.DecompressionBombError:
        raise ImageError(p, f"decompression bomb (over {MAX_PIXELS // 1_000_000} MP)") from None
    except UnidentifiedImageError:
        raise ImageError(p, "not an image") from None
    except PermissionError:
        raise ImageError(p, "permission denied") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(p, _short(exc, "corrupt header")) from None
    except MemoryError:
        raise ImageError(p, "out of memory while reading the header") from None
    except Exception as exc:  # any other decoder failure is this file's, never a crash
        raise ImageError(p, _decode_error(exc)) from None
    w, h = im.size
    if w * h > MAX_PIXELS:
        im.close()
        raise ImageError(p, f"decompression bomb ({w}x{h} px, over {MAX_PIXELS // 1_000_000} MP)")
    if w <= 0 or h <= 0:
        im.close()
        raise ImageError(p, "empty image (0 px)")
    return im


def _decode_error(exc: BaseException) -> str:
    """``decode error: NotImplementedError: ...`` for failures outside the usual file errors."""
    text = str(exc).strip().splitlines()[0][:80] if str(exc).strip() else ""
    return f"decode error: {type(exc).__name__}" + (f": {text}" if text else "")


def _short(exc: BaseException, fallback: str) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if "truncated" in text.lower():
        return "truncated file"
    if not text:
        return fallback
    return f"{fallback} ({text[:80]})"


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode to RGB; transparency is composited on white, 16/32-bit scaled to 8-bit."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    elif mode == "PA":
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "La", "RGBa"):
        rgba = im.convert("RGBA")
        background = Image.new("RGB", rgba.size, _WHITE)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if mode in ("1", "L"):
        return im.convert("RGB")
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(im)
        if mode.startswith("I;16"):
            arr8 = (arr.astype(np.uint32) >> 8).astype(np.uint8)
        else:
            arr = arr.astype(np.float64)
            top = float(np.nanmax(arr)) if arr.size else 0.0
            lo = min(0.0, float(np.nanmin(arr))) if arr.size else 0.0
            scale = 255.0 if top <= 255 else (65535.0 if top <= 65535 else top)
            arr8 = np.clip(np.nan_to_num((arr - lo) / max(scale - lo, 1e-12) * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(arr8, "L").convert("RGB")
    try:
        return im.convert("RGB")  # CMYK, YCbCr, HSV, ...
    except (ValueError, OSError):
        raise ValueError(f"unsupported colour mode {mode}") from None


def _orient(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation (a copy only when there is one to apply)."""
    try:
        orientation = im.getexif().get(0x0112, 1)
    except Exception:  # unreadable EXIF: show the pixels as stored
        return im
    if orientation in (2, 3, 4, 5, 6, 7, 8):
        return ImageOps.exif_transpose(im) or im
    return im


def _decode_unchecked(p: str, draft: int | None) -> Image.Image:
    im = _open(p)
    try:
        if draft and im.format == "JPEG":
            # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when the target is small: both
            # sides stay >= draft, so the final resize still averages real pixels.
            im.draft("RGB", (draft, draft))
        im.load()
        out = _to_rgb(_orient(im))
        if out is not im:
            im.close()  # the pixels live in ``out``; multi-frame formats (GIF, TIFF) kept the file open
        elif getattr(im, "fp", None) is not None or getattr(im, "_fp", None) is not None:
            out = im.copy()
            im.close()
        return out
    except BaseException:
        im.close()  # release the file now: a scan of 250k files must not leak descriptors
        raise


def _decode(path: str | os.PathLike, draft: int | None = None) -> Image.Image:
    p = os.fspath(path)
    try:
        return _decode_unchecked(p, draft)
    except ImageError:
        raise
    except MemoryError:
        raise ImageError(p, "out of memory while decoding") from None
    except ValueError as exc:
        if "colour mode" in str(exc):
            raise ImageError(p, str(exc)) from None
        raise ImageError(p, _short(exc, "corrupt image data")) from None
    except (OSError, SyntaxError, EOFError, IndexError, struct.error) as exc:
        raise ImageError(p, _short(exc, "corrupt image data")) from None
    except Exception as exc:  # any other decoder failure is still "this file", never a crash
        raise ImageError(p, _decode_error(exc)) from None


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Decode ``path`` to an RGB image with its EXIF orientation applied.

    Raises :class:`ImageError` (``.reason`` is short: "empty file (0 bytes)", "not an image",
    "truncated file", "decompression bomb (...)", "permission denied", ...).
    """
    return _decode(path)


def load_resized(path: str | os.PathLike, size: int) -> np.ndarray:
    """The whole photo resized (no crop, aspect not kept) to a ``(size, size, 3)`` uint8 array.

    No crop means a class-activation map of the square maps back onto the original photo by a
    plain resize to the photo's width and height.
    """
    if int(size) <= 0:
        raise ValueError(f"size must be positive, got {size}")
    size = int(size)
    im = _decode(path, draft=size)
    if im.size != (size, size):
        im = im.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    arr = np.asarray(im, dtype=np.uint8)
    if arr.shape != (size, size, 3):  # pragma: no cover - _to_rgb guarantees RGB
        raise ImageError(os.fspath(path), f"unexpected decoded shape {arr.shape}")
    return arr


def probe(path: str | os.PathLike) -> tuple[str, int, int]:
    """``(format, width, height)`` from the header only (EXIF rotation applied to the size)."""
    im = _open(path)
    try:
        w, h = im.size
        try:
            orientation = im.getexif().get(0x0112, 1)
        except Exception:
            orientation = 1
        if orientation in (5, 6, 7, 8):
            w, h = h, w
        return (im.format or Path(os.fspath(path)).suffix.lstrip(".").upper() or "?", w, h)
    finally:
        im.close()
