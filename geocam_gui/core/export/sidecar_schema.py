"""The bounded schema of an export sidecar (``FILE.json``), checked before anything is used.

A sidecar is data from elsewhere: its ``output`` may only be a plain file name with the
extension its kind is written with, every number is bounded (opacity 0..1, dpi 36..2400,
figure width, model index) and every path GeoCAM reads from it is bounded text. Any violation
is one :class:`BadArgument` sentence naming the field and the file (CLI exit 2).
"""

from __future__ import annotations

import os
from typing import Any

from geocam_gui.core.errors import BadArgument
from geocam_gui.core.explain.cam import METHODS
from geocam_gui.core.explain.render import COLORMAPS
from geocam_gui.core.export.figure import FIGURE_FORMATS, MAX_WIDTH_IN, MIN_WIDTH_IN
from geocam_gui.core.validate import Fields, plain_file_name

# The same values as core/export/run.py's (a test keeps them equal; run.py imports this module).
SIDECAR_FORMAT = "geocam-export/1"
PANE_KINDS: tuple[str, ...] = ("overlay", "heatmap", "raw")
OVERLAY_FORMATS: tuple[str, ...] = ("png", "tiff")
MIN_DPI, MAX_DPI = 36, 2400
MAX_IMAGES = 10_000
MAX_MODELS = 16
MAX_REFERENCE_IMAGES = 1024  # as core/export/request.py's

#: File formats each kind of output is written in.
KIND_FORMATS: dict[str, tuple[str, ...]] = {
    "overlay": OVERLAY_FORMATS, "heatmap": ("png",), "raw": ("npy",), "figure": FIGURE_FORMATS,
}


def output_extensions(kind: str, fmt: str | None = None) -> tuple[str, ...]:
    formats = KIND_FORMATS[kind] if fmt is None else (fmt,)
    exts = tuple("." + f for f in formats)
    return exts + ((".tif",) if ".tiff" in exts else ())


def check_sidecar(data: Any, file: str | os.PathLike) -> dict:
    """Validate a parsed sidecar; returns it. Raises :class:`BadArgument` on the first problem."""
    top = Fields(data, file)
    if data.get("format") != SIDECAR_FORMAT:
        raise BadArgument(f"{file} is not a GeoCAM export sidecar (its 'format' is not {SIDECAR_FORMAT!r}).")
    params = top.require("params")
    p = Fields(params, file, where=" of 'params'")
    kind = p.text("kind", choices=(*PANE_KINDS, "figure"), required=True)
    fmt = p.text("format", choices=KIND_FORMATS[kind])
    output = top.require("output")
    plain_file_name(output, file, "output", output_extensions(kind, fmt))
    images = p.items("images", 1, MAX_IMAGES, required=True)
    for i, im in enumerate(images):
        f = Fields(im, file, where=f" of 'params.images[{i}]'")
        f.path("path", required=True)
        f.text("label")
    checkpoints = p.items("checkpoints", 1, MAX_MODELS, required=True)
    if not all(isinstance(c, str) and c and len(c) <= 4096 and "\x00" not in c for c in checkpoints):
        raise p.fail("checkpoints", "a list of checkpoint paths")
    p.text("method", choices=METHODS, required=True)
    p.text("class", required=True)
    p.text("device")
    if kind != "figure":
        p.integer("model_index", 0, len(checkpoints) - 1, required=True)
    if kind in ("overlay", "heatmap", "figure"):
        p.text("colormap", choices=COLORMAPS, required=True)
        normalize = p.text("normalize", choices=("per_map", "shared", "p99"), required=True)
        p.integer("dpi", MIN_DPI, MAX_DPI, required=True)
        if normalize == "p99":
            p.number("reference_q", 0.0, 100.0, required=True)
            refs = p.items("reference_images", 1, MAX_REFERENCE_IMAGES, required=True)
            if not all(isinstance(r, str) and r and len(r) <= 4096 and "\x00" not in r for r in refs):
                raise p.fail("reference_images", "a list of image paths")
    if kind in ("overlay", "figure"):
        p.number("opacity", 0.0, 1.0, required=True)
    if kind == "figure":
        p.number("width_in", MIN_WIDTH_IN, MAX_WIDTH_IN, required=True)
        p.flag("show_predictions", required=True)
    for key in ("sources", "models"):
        for i, item in enumerate(top.items(key, 0, MAX_IMAGES)):
            f = Fields(item, file, where=f" of '{key}[{i}]'")
            f.text("sha256", max_len=64)
            if key == "models":
                f.path("weights", required=True)
                f.path("checkpoint")
            else:
                f.path("path")
    return data
