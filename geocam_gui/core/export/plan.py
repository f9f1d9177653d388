"""Planning an export: every output's name and parameters, and whether it is new, up to date
(its sidecar matches the parameters and the current files' hashes) or a conflict. Writes nothing."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

from geocam_gui.core.errors import BadArgument, Cancelled
from geocam_gui.core.explain.reference import REFERENCE_Q
from geocam_gui.core.export.figure import FIGURE_FORMATS, parse_width
from geocam_gui.core.export.request import (
    CLASS_PREDICTED, CLASS_TRUE, MAX_FIGURE_ROWS, MODEL_OUTPUTS, SIDECAR_FORMAT, SUMMARY_NAME, Cancel, ExportImage,
    ExportPlan, ExportRequest, ModelInfo, Progress, Target, check_options, check_writable_folder, file_sha256,
    normalize_class_choice, read_models,
)
from geocam_gui.core.export.sidecar import is_our_summary, jsonable, read_json, sidecar_path


# --------------------------------------------------------------------------- naming
def _stems(images: Sequence[ExportImage]) -> list[str]:
    """A distinct file stem per image: the file's stem, else parent_stem, else with a hash."""
    base = [Path(im.path).stem for im in images]
    out = list(base)
    lowered = [s.lower() for s in base]
    for i, im in enumerate(images):
        if lowered.count(lowered[i]) > 1:
            out[i] = f"{Path(im.path).parent.name}_{base[i]}"
    lowered = [s.lower() for s in out]
    for i, im in enumerate(images):
        if lowered.count(lowered[i]) > 1:
            out[i] = f"{out[i]}_{hashlib.sha1(im.path.encode('utf-8')).hexdigest()[:8]}"
    return out


def _output_file(stem: str, model: ModelInfo, kind: str, fmt: str) -> str:
    if kind == "overlay":
        return f"{stem}_{model.key}.{'tif' if fmt == 'tiff' else 'png'}"
    if kind == "heatmap":
        return f"{stem}_{model.key}_heatmap.png"
    return f"{stem}_{model.key}_cam.npy"


def _params(kind: str, req: ExportRequest, image_idx: list[int], model_index: int | None, models) -> dict:
    o = req.options
    p: dict = {
        "kind": kind,
        "images": [{"path": req.images[i].path, "label": req.images[i].label} for i in image_idx],
        "checkpoints": [m.checkpoint for m in models],
        "method": o.method,
        "class": o.class_choice,
        "device": o.device,
    }
    if model_index is not None:
        p["model_index"] = model_index
    if kind in ("overlay", "heatmap", "figure"):
        p.update(normalize=o.normalize, colormap=o.cmap, dpi=int(o.dpi))
        if o.normalize == "p99":
            p.update(reference_q=REFERENCE_Q, reference_images=list(o.reference_images))
    if kind in ("overlay", "figure"):
        p["opacity"] = float(o.opacity)
    if kind == "overlay":
        p["format"] = o.overlay_format
    elif kind == "heatmap":
        p["format"] = "png"
    elif kind == "raw":
        p["format"] = "npy"
    else:
        p.update(format=Path(req.destination).suffix.lower().lstrip("."), width_in=float(parse_width(o.width_in)),
                 show_predictions=bool(o.show_predictions))
    return jsonable(p)

# --------------------------------------------------------------------------- plan
def plan_export(request: ExportRequest, *, progress: Progress = None, cancel: Cancel = None) -> ExportPlan:
    """Validate ``request`` and list every output with its status; writes nothing.

    Raises ``BadArgument`` for inconsistent arguments (unknown class, mixed class lists, figure
    of too many images...), ``ExportWriteError`` for a destination that cannot be written.
    """
    req = request
    if req.kind not in ("overlays", "figure"):
        raise BadArgument(f"Unknown export kind {req.kind!r}: overlays or figure.")
    req.options.class_choice = normalize_class_choice(req.options.class_choice)
    check_options(req.options, req.kind)
    refs = req.options.reference_images if req.options.normalize == "p99" else ()
    if not all(isinstance(r, str) and r and "\x00" not in r for r in refs):
        raise BadArgument("Each reference image must be a file path.")
    req.options.reference_images = tuple(str(Path(r).expanduser().absolute()) for r in refs)
    if not req.images:
        raise BadArgument("There are no images to export.")
    seen: set[str] = set()
    images = []
    for im in req.images:
        p = str(Path(im.path).expanduser().absolute())
        if p not in seen:
            seen.add(p)
            images.append(ExportImage(p, im.label))
    req.images = images
    models = read_models(req.checkpoints)
    req.checkpoints = [m.checkpoint for m in models]
    classes = models[0].classes
    choice = req.options.class_choice
    if choice not in (CLASS_PREDICTED, CLASS_TRUE) and choice not in classes:
        raise BadArgument(f"Unknown class {choice!r}: choose predicted, true or one of {', '.join(classes)}.")
    if choice == CLASS_TRUE:
        missing = [im.path for im in images if not im.label]
        if missing:
            raise BadArgument(f"--class true needs a ground-truth label, and {missing[0]} has none.")

    dest = Path(req.destination).expanduser().absolute()
    req.destination = str(dest)
    if req.kind == "figure":
        fmt = dest.suffix.lower().lstrip(".")
        if fmt not in FIGURE_FORMATS:
            raise BadArgument(f"A figure is written as .pdf, .svg or .png, not {dest.name!r}.")
        if len(images) > MAX_FIGURE_ROWS:
            raise BadArgument(
                f"A figure of {len(images)} images would not be readable; choose at most {MAX_FIGURE_ROWS} "
                "(e.g. with --limit), or export overlays of the whole split instead."
            )
        if dest.is_dir():
            raise BadArgument(f"The figure path {dest} is a folder; give a file name ending in .pdf, .svg or .png.")
        check_writable_folder(dest.parent)
    else:
        if dest.exists() and not dest.is_dir():
            raise BadArgument(f"The overlay folder {dest} exists and is not a folder.")
        check_writable_folder(dest)

    sources: list[str | None] = []
    errors: dict[int, str] = {}
    for i, im in enumerate(images):
        if cancel is not None and cancel():
            raise Cancelled("Export cancelled.")
        try:
            sources.append(file_sha256(im.path))
        except OSError as exc:
            sources.append(None)
            errors[i] = f"unreadable ({exc.strerror or exc})"
        if progress is not None:
            progress(i + 1, len(images))

    targets: list[Target] = []
    if req.kind == "figure":
        idx = list(range(len(images)))
        targets.append(Target(dest, "figure", idx, None, _params("figure", req, idx, None, models)))
    else:
        for i, stem in enumerate(_stems(images)):
            for j, m in enumerate(models):
                for kind in MODEL_OUTPUTS:
                    if kind in req.options.outputs:
                        out = dest / _output_file(stem, m, kind, req.options.overlay_format)
                        targets.append(Target(out, kind, [i], j, _params(kind, req, [i], j, models)))
    plan = ExportPlan(req, models, sources, errors, targets)
    for t in targets:
        t.status = _status(t, plan)
    if req.kind == "overlays" and req.write_summary:
        summary = dest / SUMMARY_NAME
        if summary.exists() and not is_our_summary(summary):
            targets.append(Target(summary, "summary", [], None, {}, "conflict"))
    return plan


def _status(t: Target, plan: ExportPlan) -> str:
    side = sidecar_path(t.output)
    if not t.output.exists() and not side.exists():
        return "new"
    if not t.output.exists():
        return "new" if read_json(side) is not None else "conflict"
    data = read_json(side)
    if not data or data.get("format") != SIDECAR_FORMAT:
        return "conflict"
    try:
        same = (
            data["params"] == t.params
            and [s.get("sha256") for s in data["sources"]] == [plan.sources[i] for i in t.images]
            and [m.get("sha256") for m in data["models"]] == [m.sha256 for m in plan.models]
            and None not in [plan.sources[i] for i in t.images]
        )
    except (KeyError, TypeError, AttributeError):
        same = False
    return "up_to_date" if same else "conflict"


