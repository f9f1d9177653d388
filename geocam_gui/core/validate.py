"""Bounded checks for metadata read from files GeoCAM may not have written.

Checkpoint JSON, export sidecars, manifests and index files can come from a colleague, a
download or a disk that filled up. Every field is checked here against a type and a bound
*before* anything is allocated from it (an ``image_size`` of 100000 would otherwise make an
explanation allocate until the kernel kills the process), and a path read from such a file
that decides where GeoCAM *writes* must be a plain file name that stays inside the folder the
user chose. A violation is one sentence naming the field and the file.

JSON is strict both ways: ``NaN``/``Infinity`` tokens are refused when read (they are not JSON)
and never written (:func:`dumps` writes non-finite numbers as ``null``).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from geocam_gui.core.errors import BadArgument, BadCheckpoint

MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 16, 2048
MAX_CLASSES = 1000
MAX_NAME = 200  # characters of a class name, model title, method...
MAX_PATH = 4096  # characters of a path read from a file


# --------------------------------------------------------------------------- strict JSON
def _no_constant(token: str) -> Any:
    raise ValueError(f"{token} is not a JSON value")


def loads(text: str) -> Any:
    """``json.loads`` that refuses ``NaN``, ``Infinity`` and ``-Infinity`` (ValueError)."""
    return json.loads(text, parse_constant=_no_constant)


def finite_or_none(obj: Any) -> Any:
    """``obj`` ready for strict JSON, recursively in lists and dicts: non-finite floats become
    None, numpy scalars Python numbers, dict keys strings."""
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, dict):
        return {str(k): finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def dumps(obj: Any, **kwargs: Any) -> str:
    """Strict JSON text: non-finite numbers become ``null``, never a bare ``NaN`` token."""
    return json.dumps(finite_or_none(obj), allow_nan=False, **kwargs)


# --------------------------------------------------------------------------- field checks
class Fields:
    """Checks fields of one mapping read from ``file``; errors are ``error`` instances."""

    def __init__(self, data: Any, file: str | os.PathLike, error: type[Exception] = BadArgument, where: str = ""):
        self.file = str(file)
        self.error = error
        self.where = where
        if not isinstance(data, dict):
            raise error(f"{self.file} does not hold a JSON object{where}.")
        self.data = data

    def fail(self, key: str, what: str) -> Exception:
        value = repr(self.data.get(key))
        if len(value) > 60:
            value = value[:57] + "..."
        return self.error(f"{self.file}: the field {key!r}{self.where} must be {what}, not {value}.")

    def has(self, key: str) -> bool:
        return key in self.data and self.data[key] is not None

    def require(self, key: str) -> Any:
        if key not in self.data:
            raise self.error(f"{self.file}: the field {key!r}{self.where} is missing.")
        return self.data[key]

    def integer(self, key: str, lo: int, hi: int, *, required: bool = False) -> int | None:
        if not required and not self.has(key):
            return None
        v = self.require(key)
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise self.fail(key, f"a whole number from {lo} to {hi}")
        return v

    def number(self, key: str, lo: float, hi: float, *, required: bool = False) -> float | None:
        if not required and not self.has(key):
            return None
        v = self.require(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
            raise self.fail(key, f"a number from {lo:g} to {hi:g}")
        return float(v)

    def text(self, key: str, *, choices: tuple[str, ...] | None = None, required: bool = False,
             max_len: int = MAX_NAME) -> str | None:
        if not required and not self.has(key):
            return None
        v = self.require(key)
        if choices is not None and v not in choices:
            raise self.fail(key, "one of " + ", ".join(choices))
        if not isinstance(v, str) or not v or len(v) > max_len or "\x00" in v:
            raise self.fail(key, f"a non-empty text of at most {max_len} characters")
        return v

    def flag(self, key: str, *, required: bool = False) -> bool | None:
        if not required and not self.has(key):
            return None
        v = self.require(key)
        if not isinstance(v, bool):
            raise self.fail(key, "true or false")
        return v

    def path(self, key: str, *, required: bool = False) -> str | None:
        """A path GeoCAM only reads (a photo, a checkpoint): bounded text without NUL."""
        return self.text(key, required=required, max_len=MAX_PATH)

    def names(self, key: str, *, required: bool = False, max_items: int = MAX_CLASSES) -> list[str] | None:
        """A non-empty list of distinct non-empty strings (class names)."""
        if not required and not self.has(key):
            return None
        v = self.require(key)
        if (not isinstance(v, list) or not 1 <= len(v) <= max_items
                or not all(isinstance(x, str) and x and len(x) <= MAX_NAME and "\x00" not in x for x in v)
                or len(set(v)) != len(v)):
            raise self.fail(key, f"a list of 1 to {max_items} distinct non-empty names")
        return list(v)

    def triple(self, key: str, lo: float, hi: float) -> list[float] | None:
        """Three finite numbers in ``lo..hi`` (a per-channel mean or std)."""
        if not self.has(key):
            return None
        v = self.data[key]
        if (not isinstance(v, list) or len(v) != 3
                or not all(not isinstance(x, bool) and isinstance(x, (int, float)) and math.isfinite(x)
                           and lo <= x <= hi for x in v)):
            raise self.fail(key, f"three numbers from {lo:g} to {hi:g}")
        return [float(x) for x in v]

    def items(self, key: str, lo: int, hi: int, *, required: bool = False) -> list:
        if not required and not self.has(key):
            return []
        v = self.require(key)
        if not isinstance(v, list) or not lo <= len(v) <= hi:
            raise self.fail(key, f"a list of {lo} to {hi} entries")
        return v


# --------------------------------------------------------------------------- checkpoints
def check_checkpoint_meta(meta: Any, file: str | os.PathLike, model_names: tuple[str, ...] | list[str] = (),
                          ) -> dict:
    """Check the metadata of a checkpoint; returns it. Raises :class:`BadCheckpoint` (exit 2)."""
    f = Fields(meta, file, BadCheckpoint)
    f.text("model", choices=tuple(model_names) or None)
    f.names("classes")
    f.integer("image_size", MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)
    f.triple("mean", -10.0, 10.0)
    f.triple("std", 1e-6, 10.0)
    f.integer("epoch", 0, 1_000_000)
    f.integer("best_epoch", 0, 1_000_000)
    f.integer("format_version", 0, 1_000)
    for key in ("metrics", "versions", "hyper_parameters"):
        if f.has(key) and not isinstance(meta[key], dict):
            raise f.fail(key, "a JSON object")
    return meta


def check_head_width(classes: list[str], width: int, file: str | os.PathLike) -> None:
    """The class list must name each output of the model's last layer."""
    if len(classes) != int(width):
        raise BadCheckpoint(f"{file}: the field 'classes' names {len(classes)} classes but the weights' last "
                            f"layer has {int(width)} outputs.")


# --------------------------------------------------------------------------- write containment
def plain_file_name(name: Any, file: str | os.PathLike, key: str, extensions: tuple[str, ...]) -> str:
    """``name`` if it is a plain file name (no folder, no ``..``, not hidden, not absolute) with one
    of ``extensions`` (lower-case, with the dot); else :class:`BadArgument` naming ``key`` and ``file``."""
    what = f"a plain file name ending in {' or '.join(extensions)}"
    if (not isinstance(name, str) or not name or len(name) > 255 or "\x00" in name
            or "/" in name or "\\" in name or (os.name == "nt" and ":" in name) or name.startswith(".")
            or name != name.strip() or Path(name).name != name or os.path.isabs(name)):
        raise BadArgument(f"{file}: the field {key!r} must be {what}, not {name!r}; "
                          "a file from elsewhere never decides where GeoCAM writes.")
    if Path(name).suffix.lower() not in extensions:
        raise BadArgument(f"{file}: the field {key!r} must be {what}, not {name!r}.")
    return name


def contained(folder: str | os.PathLike, name: str, file: str | os.PathLike) -> Path:
    """``folder/name`` after checking that it resolves inside ``folder`` (symbolic links followed)."""
    base = Path(folder).resolve()
    out = base / name
    if out.parent.resolve() != base or (out.is_symlink() and not out.resolve().is_relative_to(base)):
        raise BadArgument(f"{file}: its output {name!r} would be written outside {base}; refused.")
    return out
