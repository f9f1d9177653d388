"""The provenance sidecar ``FILE.json`` beside every exported ``FILE``: what it records
(sources and checkpoints with their SHA-256, layer, method, class, normalisation, colormap,
opacity, sizes, versions, the exact export parameters) and the request that re-creates it."""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path

from geocam_gui.core import validate
from geocam_gui.core.errors import BadArgument, DataError
from geocam_gui.core.files import atomic_write
from geocam_gui.core.export.request import (
    MAX_SIDECAR_BYTES, MODEL_OUTPUTS, SIDECAR_FORMAT, ExportImage, ExportOptions, ExportPlan, ExportRequest, Target, file_sha256,
)


def sidecar_path(output: str | os.PathLike) -> Path:
    """The provenance sidecar of an output: ``FILE`` -> ``FILE.json``."""
    p = Path(output)
    return p.with_name(p.name + ".json")


def jsonable(obj) -> object:
    """``obj`` as it reads back from JSON (tuples become lists...)."""
    return json.loads(json.dumps(obj))


def read_json(path: Path) -> dict | None:
    try:
        data = validate.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # UnicodeDecodeError and NaN tokens are ValueErrors
        return None
    return data if isinstance(data, dict) else None


def is_our_summary(path: Path) -> bool:
    data = read_json(path)
    return bool(data) and data.get("format") == SIDECAR_FORMAT + "-summary"


def versions() -> dict:
    import matplotlib
    import PIL

    from geocam_gui.core.checkpoints import library_versions

    v = library_versions()
    v.update(matplotlib=matplotlib.__version__, pillow=PIL.__version__)
    return v


def build_sidecar(t: Target, plan: ExportPlan, layers: dict[int, str], extra: dict) -> dict:
    req = plan.request
    o = req.options
    return {
        "format": SIDECAR_FORMAT,
        "kind": t.kind,
        "output": t.output.name,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
        "method": o.method,
        "class": o.class_choice,
        "normalisation": o.normalize if t.kind != "raw" else "none (raw map)",
        "colormap": o.cmap if t.kind != "raw" else None,
        "opacity": float(o.opacity) if t.kind in ("overlay", "figure") else None,
        "sources": [{"path": req.images[i].path, "label": req.images[i].label, "sha256": plan.sources[i]}
                    for i in t.images],
        "models": [{"model": m.model, "title": m.title, "checkpoint": m.checkpoint, "weights": m.weights,
                    "sha256": m.sha256, "layer": layers.get(j), "image_size": m.image_size, "classes": m.classes,
                    "chance": m.chance}
                   for j, m in enumerate(plan.models)],
        "params": t.params,
        **extra,
    }


def write_sidecar(t: Target, data: dict) -> None:
    """``FILE.json`` beside the output (no fsync: it is re-created with the output)."""
    atomic_write(sidecar_path(t.output), validate.dumps(data, indent=2, ensure_ascii=False) + "\n", fsync=False)


def model_result(j: int, pane) -> dict:
    """The sidecar's record of model ``j``'s answer for one image."""
    return {"model_index": j, "class": pane.class_name, "class_index": pane.class_index,
            "predicted_index": pane.predicted, "probabilities": pane.probs}


def read_sidecar(path: str | os.PathLike) -> dict:
    """A GeoCAM export sidecar (``FILE.json``), checked for format."""
    p = Path(path)
    if not p.is_file():
        raise BadArgument(f"The sidecar {p} does not exist.")
    from geocam_gui.core.export.sidecar_schema import check_sidecar

    if p.stat().st_size > MAX_SIDECAR_BYTES:
        raise BadArgument(f"{p} is too large to be a GeoCAM export sidecar.")
    data = read_json(p)
    if not data or data.get("format") != SIDECAR_FORMAT or "params" not in data:
        raise BadArgument(f"{p} is not a GeoCAM export sidecar (or not strict JSON).")
    return check_sidecar(data, p)


def request_from_sidecar(path: str | os.PathLike, destination: str | os.PathLike | None = None) -> tuple[ExportRequest, Path]:
    """The single-output request that re-creates the export described by a sidecar, and the
    output path (``destination``: a folder or file name; default: beside the sidecar)."""
    side = Path(path).absolute()
    data = read_sidecar(side)
    p = data["params"]
    kind = p.get("kind")
    name = data["output"]  # a plain file name with its kind's extension (checked by read_sidecar)
    if destination is None:  # beside the sidecar
        out = validate.contained(side.parent, side.name.removesuffix(".json") if side.name.endswith(".json")
                                 else name, side)
    else:  # a figure goes to a file the user named, the other outputs into a folder
        d = Path(destination).expanduser().absolute()
        out = validate.contained(d, name, side) if kind != "figure" or d.is_dir() else d
    if out.suffix.lower() != Path(name).suffix.lower():
        raise BadArgument(f"{out.name} must keep the original extension {Path(name).suffix} to re-create {name}.")
    for src, want in zip(p["images"], data.get("sources", [])):
        if want.get("sha256") and os.path.isfile(src["path"]) and file_sha256(src["path"]) != want["sha256"]:
            raise DataError(f"The image {src['path']} changed since the export (its SHA-256 differs), "
                            "so the export cannot be re-created exactly.")
    for m in data.get("models", []):
        if m.get("sha256") and os.path.isfile(m["weights"]) and file_sha256(m["weights"]) != m["sha256"]:
            raise DataError(f"The checkpoint {m.get('checkpoint', m['weights'])} changed since the export "
                            "(its SHA-256 differs).")
    opts = ExportOptions(class_choice=p["class"], method=p["method"], device=p.get("device", "cpu"))
    if "colormap" in p:
        opts.cmap, opts.normalize, opts.dpi = p["colormap"], p["normalize"], int(p["dpi"])
        opts.reference_images = tuple(p.get("reference_images", ()))
    if "opacity" in p:
        opts.opacity = float(p["opacity"])
    images = [ExportImage(s["path"], s.get("label")) for s in p["images"]]
    if kind == "figure":
        opts.width_in, opts.show_predictions = float(p["width_in"]), bool(p["show_predictions"])
        return ExportRequest("figure", images, list(p["checkpoints"]), str(out), opts), out
    if kind not in MODEL_OUTPUTS:
        raise BadArgument(f"{side} describes an unknown export kind {kind!r}.")
    if kind == "overlay":
        opts.overlay_format = p["format"]
    opts.outputs = (kind,)
    return ExportRequest("overlays", images, list(p["checkpoints"]), str(out.parent), opts, write_summary=False), out


