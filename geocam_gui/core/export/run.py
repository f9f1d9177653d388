"""Export Grad-CAM overlays and publication figures, each with a provenance sidecar.

Two kinds of export, both planned first and then run (so every argument is checked and every
clash with an existing file found before anything is written):

* **overlays** (``ExportRequest(kind="overlays", destination=FOLDER)``): for every image and
  every checkpoint, up to three files at the photo's *native* resolution:
  ``<stem>_<model>.png`` (or ``.tif``: the heat map blended over the photo with the chosen
  colormap and opacity, DPI metadata set), ``<stem>_<model>_heatmap.png`` (the heat map alone,
  RGBA, alpha following the value so cold areas are transparent) and ``<stem>_<model>_cam.npy``
  (the raw map for the explained class, float32 at the layer's resolution, before any ReLU or
  normalisation). A ``summary.json`` in the folder lists what was written, skipped and failed.
* **figure** (``kind="figure"``, ``destination=FILE.pdf|.svg|.png``): the grid of
  ``core.figure`` (photos in rows, one column per model).

The CAM is computed on the photo squashed to the checkpoint's ``image_size`` (as in training)
and mapped back onto the whole photo by a bilinear resize to its native size. Normalisation is
the viewer's (``inference.display_maps``): ``per_map`` = ReLU then min-max of each map,
``shared`` = ReLU then one scale for all models and classes of an image.

Every output ``FILE`` gets ``FILE.json`` beside it (``SIDECAR_FORMAT``): the sources with their
SHA-256, the checkpoints with theirs, layer, method, class, normalisation, colormap, opacity,
sizes, versions, date and the exact export parameters (``params``). An output whose sidecar
matches the planned parameters and the current files' hashes is up to date and skipped; any
other existing file is a conflict, never overwritten unless asked. ``export_from_sidecar``
re-creates an output byte for byte from its sidecar. Files are written to a temporary name in
the same folder and renamed, so a failure (full disk, no permission) leaves no partial file.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import secrets
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from geocam_gui.core.errors import BadArgument, DataError, GeoCamError, ImageError
from geocam_gui.core.export.figure import FIGURE_FORMATS, SINGLE_COLUMN_IN, parse_width

SIDECAR_FORMAT = "geocam-export/1"
SUMMARY_NAME = "summary.json"
OVERLAY_FORMATS: tuple[str, ...] = ("png", "tiff")
PANE_OUTPUTS: tuple[str, ...] = ("overlay", "heatmap", "raw")
NORMALIZATIONS: tuple[str, ...] = ("per_map", "shared")
CLASS_PREDICTED = "predicted"
CLASS_TRUE = "true"
MAX_FIGURE_ROWS = 24
MIN_DPI, MAX_DPI = 50, 2400

Progress = Callable[[int, int], None] | None
Cancel = Callable[[], bool] | None


class ExportWriteError(GeoCamError):
    """An output could not be written (no permission, disk full...)."""


# --------------------------------------------------------------------------- requests
@dataclass
class ExportImage:
    """A photo to export and its ground-truth label (None when unknown)."""

    path: str
    label: str | None = None


@dataclass
class ExportOptions:
    """How to explain and draw. ``class_choice``: "predicted", "true" or a class name."""

    class_choice: str = CLASS_PREDICTED
    method: str = "gradcam"
    cmap: str = "jet"
    opacity: float = 0.5
    normalize: str = "per_map"
    dpi: int = 300
    device: str = "cpu"
    overlay_format: str = "png"
    outputs: tuple[str, ...] = PANE_OUTPUTS
    width_in: float = SINGLE_COLUMN_IN
    show_predictions: bool = True


@dataclass
class ExportRequest:
    """What to export: ``kind`` "overlays" (destination: a folder) or "figure" (a file)."""

    kind: str
    images: list[ExportImage]
    checkpoints: list[str]
    destination: str
    options: ExportOptions = field(default_factory=ExportOptions)
    write_summary: bool = True


@dataclass
class ModelInfo:
    """A checkpoint of the export, read from its metadata (weights are loaded when run)."""

    checkpoint: str
    weights: str
    sha256: str
    model: str
    title: str
    key: str
    classes: list[str]
    image_size: int
    chance: dict | None = None  # core.chance verdict on the checkpoint's test metrics (None: none stored)


@dataclass
class Target:
    """One planned output file; ``status`` is "new", "up_to_date" or "conflict"."""

    output: Path
    kind: str
    images: list[int]
    model_index: int | None
    params: dict
    status: str = "new"


@dataclass
class ExportPlan:
    """A validated request: models, source hashes and every output with its status."""

    request: ExportRequest
    models: list[ModelInfo]
    sources: list[str | None]  # SHA-256 per image, None when unreadable
    source_errors: dict[int, str]
    targets: list[Target]

    @property
    def conflicts(self) -> list[Path]:
        """Existing files this export would replace (not written by an identical export)."""
        return [t.output for t in self.targets if t.status == "conflict"]

    @property
    def up_to_date(self) -> list[Path]:
        return [t.output for t in self.targets if t.status == "up_to_date"]


@dataclass
class ExportSummary:
    """What an export did. ``failed``: (image path, reason) of images skipped."""

    kind: str
    destination: str
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    cancelled: bool = False
    images: int = 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["failed"] = [{"path": p, "reason": r} for p, r in self.failed]
        return d

    def text(self) -> str:
        """A short human summary (several lines)."""
        lines = [f"{len(self.written)} file(s) written, {len(self.skipped)} already up to date"
                 + (", cancelled before the end" if self.cancelled else "") + "."]
        if self.failed:
            lines.append(f"{len(self.failed)} image(s) skipped:")
            lines += [f"  {p}: {r}" for p, r in self.failed[:20]]
            if len(self.failed) > 20:
                lines.append(f"  ... and {len(self.failed) - 20} more")
        return "\n".join(lines)


# --------------------------------------------------------------------------- hashing
_HASHES: dict[tuple[str, int, int], str] = {}
_HASH_LOCK = threading.Lock()


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file (hex), cached by path, size and modification time."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    with _HASH_LOCK:
        hit = _HASHES.get(key)
    if hit is not None:
        return hit
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    digest = h.hexdigest()
    with _HASH_LOCK:
        _HASHES[key] = digest
    return digest


def _weights_file(path: Path) -> Path:
    if path.suffix == ".json" or not path.suffix:
        st = path.with_name(path.stem + ".safetensors") if path.suffix else path.with_name(path.name + ".safetensors")
        if st.is_file():
            return st
    return path


# --------------------------------------------------------------------------- validation
def _check_options(o: ExportOptions, kind: str) -> None:
    from geocam_gui.core.explain.cam import METHODS
    from geocam_gui.core.explain.render import COLORMAPS

    if o.method not in METHODS:
        raise BadArgument(f"Unknown CAM method {o.method!r}: choose one of {', '.join(METHODS)}.")
    if o.cmap not in COLORMAPS:
        raise BadArgument(f"Unknown colormap {o.cmap!r}: choose one of {', '.join(COLORMAPS)}.")
    try:
        opacity = float(o.opacity)
    except (TypeError, ValueError):
        raise BadArgument(f"The opacity must be a number between 0 and 1, got {o.opacity!r}.") from None
    if not 0.0 <= opacity <= 1.0:
        raise BadArgument(f"The opacity must be between 0 and 1, got {o.opacity}.")
    if o.normalize not in NORMALIZATIONS:
        raise BadArgument(f"Unknown normalisation {o.normalize!r}: choose one of {', '.join(NORMALIZATIONS)}.")
    if not isinstance(o.dpi, int) or not MIN_DPI <= o.dpi <= MAX_DPI:
        raise BadArgument(f"The DPI must be a whole number between {MIN_DPI} and {MAX_DPI}, got {o.dpi!r}.")
    if kind == "overlays":
        if o.overlay_format not in OVERLAY_FORMATS:
            raise BadArgument(f"Overlays are written as {' or '.join(OVERLAY_FORMATS)}, not {o.overlay_format!r}.")
        bad = [x for x in o.outputs if x not in PANE_OUTPUTS]
        if bad or not o.outputs:
            raise BadArgument(f"Choose the overlay outputs among {', '.join(PANE_OUTPUTS)}.")
    else:
        parse_width(o.width_in)


def normalize_class_choice(choice: str) -> str:
    """'predicted', 'true' (also 'ground truth', 'gt', 'label') or the class name as given."""
    c = (choice or CLASS_PREDICTED).strip()
    if c.lower() in ("predicted", "prediction", "pred"):
        return CLASS_PREDICTED
    if c.lower() in ("true", "ground truth", "ground-truth", "gt", "label"):
        return CLASS_TRUE
    return c


def read_models(checkpoints: Sequence[str | os.PathLike]) -> list[ModelInfo]:
    """Metadata, weights file and SHA-256 of each checkpoint; all must share one class list."""
    from geocam_gui.core.chance import chance_of_checkpoint
    from geocam_gui.core.checkpoints import read_meta
    from geocam_gui.core.models import MODEL_LABELS, MODEL_NAMES

    if not checkpoints:
        raise BadArgument("Give at least one checkpoint to explain.")
    out: list[ModelInfo] = []
    for ckpt in checkpoints:
        path = Path(ckpt).expanduser().absolute()
        weights = _weights_file(path)
        if not weights.is_file():
            raise BadArgument(f"The checkpoint {path} does not exist.")
        meta = read_meta(path) if weights.suffix == ".safetensors" else {}
        name = meta.get("model")
        if name not in MODEL_NAMES:
            raise BadArgument(f"{path.name} is not a GeoCAM checkpoint (its metadata names no known model).")
        classes = list(meta.get("classes") or [])
        if out and classes != out[0].classes:
            raise BadArgument(
                f"{path.name} was trained on classes {classes}, which differ from "
                f"{Path(out[0].checkpoint).name}'s {out[0].classes}; export models of the same classes."
            )
        out.append(ModelInfo(checkpoint=str(path), weights=str(weights), sha256=file_sha256(weights), model=name,
                             title=MODEL_LABELS.get(name, name), key=name, classes=classes,
                             image_size=int(meta.get("image_size") or 224), chance=chance_of_checkpoint(meta)))
    names = [m.model for m in out]
    for j, m in enumerate(out):
        if names.count(m.model) > 1:
            m.key = f"{m.model}{j + 1}"
            m.title = f"{m.title} ({Path(m.checkpoint).parent.name or j + 1})"
    return out


def column_title(m: ModelInfo) -> str:
    """A figure's column title: the model's name, marked when its test accuracy is not
    significantly above the majority-class rate (its heat maps may show nothing learned)."""
    return m.title + (" (at chance)" if m.chance is not None and not m.chance["above_chance"] else "")


def chance_warnings(models: Sequence[ModelInfo]) -> list[str]:
    """One sentence per model at chance, for the CLI and the export dialog."""
    return [f"{m.title}: {m.chance['message']}" for m in models if m.chance is not None and not m.chance["above_chance"]]


def _check_writable_folder(folder: Path) -> None:
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise BadArgument(f"{probe} is a file, so the folder {folder} cannot be created.")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ExportWriteError(f"Cannot write to the folder {probe}: permission denied.")


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


def _pane_file(stem: str, model: ModelInfo, kind: str, fmt: str) -> str:
    if kind == "overlay":
        return f"{stem}_{model.key}.{'tif' if fmt == 'tiff' else 'png'}"
    if kind == "heatmap":
        return f"{stem}_{model.key}_heatmap.png"
    return f"{stem}_{model.key}_cam.npy"


def _jsonable(obj) -> object:
    return json.loads(json.dumps(obj))


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
    return _jsonable(p)


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
    _check_options(req.options, req.kind)
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
        _check_writable_folder(dest.parent)
    else:
        if dest.exists() and not dest.is_dir():
            raise BadArgument(f"The overlay folder {dest} exists and is not a folder.")
        _check_writable_folder(dest)

    sources: list[str | None] = []
    errors: dict[int, str] = {}
    for i, im in enumerate(images):
        if cancel is not None and cancel():
            from geocam_gui.core.errors import Cancelled

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
                for kind in PANE_OUTPUTS:
                    if kind in req.options.outputs:
                        out = dest / _pane_file(stem, m, kind, req.options.overlay_format)
                        targets.append(Target(out, kind, [i], j, _params(kind, req, [i], j, models)))
    plan = ExportPlan(req, models, sources, errors, targets)
    for t in targets:
        t.status = _status(t, plan)
    if req.kind == "overlays" and req.write_summary:
        summary = dest / SUMMARY_NAME
        if summary.exists() and not _is_our_summary(summary):
            targets.append(Target(summary, "summary", [], None, {}, "conflict"))
    return plan


def _status(t: Target, plan: ExportPlan) -> str:
    side = sidecar_path(t.output)
    if not t.output.exists() and not side.exists():
        return "new"
    if not t.output.exists():
        return "new" if _read_json(side) is not None else "conflict"
    data = _read_json(side)
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


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _is_our_summary(path: Path) -> bool:
    data = _read_json(path)
    return bool(data) and data.get("format") == SIDECAR_FORMAT + "-summary"


def sidecar_path(output: str | os.PathLike) -> Path:
    """The provenance sidecar of an output: ``FILE`` -> ``FILE.json``."""
    p = Path(output)
    return p.with_name(p.name + ".json")


# --------------------------------------------------------------------------- computing
@dataclass
class _Pane:
    class_index: int | None
    class_name: str | None
    predicted: int
    probability: float
    probs: list[float]
    raw: np.ndarray  # (C, h, w)
    map01: np.ndarray | None  # (H, W) in [0, 1] at the photo's size


@dataclass
class _Explained:
    image: np.ndarray  # native (H, W, 3) uint8
    panes: dict[int, _Pane]


def _explain(im: ExportImage, models: list[ModelInfo], loaded: dict, which: list[int], o: ExportOptions) -> _Explained:
    """CAMs of image ``im`` by the models ``which``; ImageError when it cannot be decoded."""
    import torch

    from geocam_gui.core.explain.cam import explain
    from geocam_gui.core.data.images import load_resized, load_rgb
    from geocam_gui.core.explain.store import GROUND_TRUTH, ImageExplanation, PaneResult, display_maps
    from geocam_gui.core.explain.render import resize_map

    native = np.asarray(load_rgb(im.path), dtype=np.uint8)
    exp = ImageExplanation(path=im.path, label=im.label, image=native)
    squares: dict[int, np.ndarray] = {}
    for j in which:
        m = models[j]
        if m.image_size not in squares:
            squares[m.image_size] = np.array(load_resized(im.path, m.image_size))  # writable for torch
        net = loaded[j]
        cam = explain(net.model, m.model, squares[m.image_size][None], method=o.method, normalize="none",
                      device=o.device)
        probs = torch.softmax(torch.as_tensor(cam.logits).float(), dim=1)[0].numpy()
        raw = torch.as_tensor(cam.raw)[0].float().numpy().astype(np.float32)
        exp.panes[str(j)] = PaneResult(model_name=m.model, checkpoint=m.checkpoint, classes=m.classes, raw=raw,
                                       probs=probs.astype(np.float32), image_size=m.image_size, method=o.method)
    choice = {CLASS_TRUE: GROUND_TRUTH}.get(o.class_choice, o.class_choice)
    maps = display_maps(exp, choice, shared=o.normalize == "shared")
    H, W = native.shape[:2]
    panes: dict[int, _Pane] = {}
    for j in which:
        pr = exp.panes[str(j)]
        hit = maps.get(str(j))
        idx = hit[0] if hit else None
        m01 = np.clip(resize_map(hit[1], (H, W)), 0.0, 1.0) if hit else None
        panes[j] = _Pane(idx, pr.classes[idx] if idx is not None else None, pr.predicted,
                         float(pr.probs[pr.predicted]), [float(v) for v in pr.probs], pr.raw, m01)
    return _Explained(native, panes)


def _load_models(models: list[ModelInfo], which: set[int], device: str) -> dict:
    from geocam_gui.core.checkpoints import load_checkpoint

    return {j: load_checkpoint(models[j].checkpoint, device=device) for j in sorted(which)}


def _layer_names(loaded: dict, models: list[ModelInfo]) -> dict[int, str]:
    from geocam_gui.core.models import target_layer

    out = {}
    for j, lc in loaded.items():
        layer = target_layer(lc.model, models[j].model)
        out[j] = next((n for n, mod in lc.model.named_modules() if mod is layer), "?")
    return out


# --------------------------------------------------------------------------- writing
def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` to a temporary name in the destination folder, then rename it over ``path``.

    On any failure the temporary file is removed and ``path`` is left as it was. (No fsync:
    exports are re-creatable from their sidecars, and a batch of thousands of files would
    spend most of its time waiting for the disk.)
    """
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        name = path.parent / f".{path.name}.{secrets.token_hex(4)}.part"
        os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))  # umask applies, unlike mkstemp
        tmp = name
        write(tmp)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ExportWriteError(f"Could not write {path}: {reason}.") from exc
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()


def _save_image(array: np.ndarray, fmt: str, dpi: int) -> Callable[[Path], None]:
    from PIL import Image

    def write(tmp: Path) -> None:
        img = Image.fromarray(array)
        if fmt == "tiff":
            img.save(tmp, format="TIFF", dpi=(dpi, dpi), compression="tiff_lzw")
        else:
            img.save(tmp, format="PNG", dpi=(dpi, dpi))

    return write


def _save_npy(array: np.ndarray) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)

    return write


def _versions() -> dict:
    import matplotlib
    import PIL

    from geocam_gui.core.checkpoints import library_versions

    v = library_versions()
    v.update(matplotlib=matplotlib.__version__, pillow=PIL.__version__)
    return v


def _sidecar(t: Target, plan: ExportPlan, layers: dict[int, str], extra: dict) -> dict:
    req = plan.request
    o = req.options
    return {
        "format": SIDECAR_FORMAT,
        "kind": t.kind,
        "output": t.output.name,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
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


def _write_sidecar(t: Target, data: dict) -> None:
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    _write_atomic(sidecar_path(t.output), lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _pane_result(j: int, pane: _Pane) -> dict:
    return {"model_index": j, "class": pane.class_name, "class_index": pane.class_index,
            "predicted_index": pane.predicted, "probabilities": pane.probs}


# --------------------------------------------------------------------------- run
def run_export(plan: ExportPlan, *, overwrite: bool = False, force: bool = False, progress: Progress = None,
               cancel: Cancel = None) -> ExportSummary:
    """Write the planned outputs and their sidecars; returns what was done.

    Conflicts (existing files not from an identical export) raise ``BadArgument`` unless
    ``overwrite``; up-to-date outputs are skipped. Images that cannot be decoded are skipped and
    reported in ``summary.failed``. ``force`` re-creates up-to-date outputs too (they would
    come out the same unless GeoCAM or a library changed). ``cancel()`` is polled between images; a cancelled run returns
    its summary with ``cancelled=True`` (a figure is then not written).
    """
    conflicts = plan.conflicts
    if conflicts and not overwrite:
        more = f" ({len(conflicts)} files in all)" if len(conflicts) > 1 else ""
        raise BadArgument(f"{conflicts[0]} already exists{more}; pass --overwrite to replace it.")
    req = plan.request
    if force:
        for t in plan.targets:
            if t.status == "up_to_date":
                t.status = "new"
    summary = ExportSummary(kind=req.kind, destination=req.destination, images=len(req.images))
    summary.skipped = [str(t.output) for t in plan.targets if t.status == "up_to_date"]
    if req.kind == "figure":
        if plan.targets[0].status != "up_to_date":
            _run_figure(plan, plan.targets[0], summary, progress, cancel)
        return summary
    _run_overlays(plan, summary, progress, cancel)
    return summary


def _run_overlays(plan: ExportPlan, summary: ExportSummary, progress: Progress, cancel: Cancel) -> None:
    req = plan.request
    o = req.options
    todo = [t for t in plan.targets if t.status != "up_to_date" and t.kind in PANE_OUTPUTS]
    by_image: dict[int, list[Target]] = {}
    for t in todo:
        by_image.setdefault(t.images[0], []).append(t)
    dest = Path(req.destination)
    if todo:
        dest.mkdir(parents=True, exist_ok=True)
    loaded: dict = {}
    layers: dict[int, str] = {}
    n = len(req.images)
    for i, im in enumerate(req.images):
        if cancel is not None and cancel():
            summary.cancelled = True
            break
        targets = by_image.get(i, [])
        if targets:
            try:
                if i in plan.source_errors:
                    raise ImageError(im.path, plan.source_errors[i])
                which = {t.model_index for t in targets}
                if o.normalize == "shared":
                    which = set(range(len(plan.models)))
                if not which.issubset(loaded):
                    loaded.update(_load_models(plan.models, which - set(loaded), o.device))
                    layers = _layer_names(loaded, plan.models)
                exp = _explain(im, plan.models, loaded, sorted(which), o)
            except ImageError as exc:
                summary.failed.append((im.path, exc.reason))
            else:
                _write_panes(plan, targets, exp, layers, summary)
        if progress is not None:
            progress(i + 1, n)
    if req.write_summary:
        _write_summary(dest, plan, summary)


def _write_panes(plan, targets: list[Target], exp: _Explained, layers, summary: ExportSummary) -> None:
    from geocam_gui.core.explain.render import heatmap_rgba, overlay

    o = plan.request.options
    H, W = exp.image.shape[:2]
    failed_reasons = set()
    for t in targets:
        pane = exp.panes[t.model_index]
        if pane.class_index is None:
            failed_reasons.add(f"its label {plan.request.images[t.images[0]].label!r} is not a class of "
                               f"{plan.models[t.model_index].title}")
            continue
        if t.kind == "overlay":
            writer = _save_image(overlay(exp.image, pane.map01, opacity=float(o.opacity), cmap=o.cmap),
                                 o.overlay_format, o.dpi)
        elif t.kind == "heatmap":
            writer = _save_image(heatmap_rgba(pane.map01, o.cmap), "png", o.dpi)
        else:
            writer = _save_npy(pane.raw[pane.class_index])
        _write_atomic(t.output, writer)
        extra = {"image_size": {"width": W, "height": H},
                 "map_size": {"height": int(pane.raw.shape[-2]), "width": int(pane.raw.shape[-1])},
                 "dpi": o.dpi if t.kind != "raw" else None,
                 "results": [_pane_result(t.model_index, pane)]}
        _write_sidecar(t, _sidecar(t, plan, layers, extra))
        summary.written.append(str(t.output))
    for reason in sorted(failed_reasons):
        summary.failed.append((plan.request.images[targets[0].images[0]].path, reason))


def _write_summary(dest: Path, plan: ExportPlan, summary: ExportSummary) -> None:
    if not dest.is_dir():
        return
    data = {"format": SIDECAR_FORMAT + "-summary",
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "options": _jsonable(asdict(plan.request.options)),
            "checkpoints": [m.checkpoint for m in plan.models], **summary.to_dict()}
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    _write_atomic(dest / SUMMARY_NAME, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _run_figure(plan: ExportPlan, t: Target, summary: ExportSummary, progress: Progress, cancel: Cancel) -> None:
    from geocam_gui.core.explain.cam import METHOD_LABELS
    from geocam_gui.core.export.figure import FigurePanel, FigureRow, render_figure
    from geocam_gui.core.explain.render import overlay

    req = plan.request
    o = req.options
    n = len(req.images)
    loaded = _load_models(plan.models, set(range(len(plan.models))), o.device)
    layers = _layer_names(loaded, plan.models)
    rows: list[FigureRow] = []
    results = []
    sizes = []
    for i, im in enumerate(req.images):
        if cancel is not None and cancel():
            summary.cancelled = True
            return
        try:
            if i in plan.source_errors:
                raise ImageError(im.path, plan.source_errors[i])
            exp = _explain(im, plan.models, loaded, list(range(len(plan.models))), o)
        except ImageError as exc:
            summary.failed.append((im.path, exc.reason))
        else:
            panels = []
            for j, m in enumerate(plan.models):
                p = exp.panes[j]
                pred = m.classes[p.predicted]
                if p.map01 is None:
                    panels.append(FigurePanel(None, error="no such class", predicted=pred, probability=p.probability))
                else:
                    panels.append(FigurePanel(overlay(exp.image, p.map01, opacity=float(o.opacity), cmap=o.cmap),
                                              class_name=p.class_name, predicted=pred, probability=p.probability))
                results.append({"image_index": i, **_pane_result(j, p)})
            rows.append(FigureRow(exp.image, im.label, panels))
            sizes.append({"image_index": i, "width": int(exp.image.shape[1]), "height": int(exp.image.shape[0])})
        if progress is not None:
            progress(i + 1, n + 1)
    if not rows:
        raise DataError(f"None of the {n} image(s) could be read, so no figure was made.")
    fmt = t.params["format"]
    scale = "per-map scale" if o.normalize == "per_map" else "shared scale"
    label = f"{METHOD_LABELS.get(o.method, o.method)}, {scale}"
    size_in: list[float] = []

    def write(tmp: Path) -> None:
        size_in[:] = render_figure(rows, ["Image"] + [column_title(m) for m in plan.models], str(tmp), fmt, dpi=o.dpi,
                                   width_in=t.params["width_in"], cmap=o.cmap,
                                   show_predictions=o.show_predictions, colorbar_label=label,
                                   explains_predicted=o.class_choice == CLASS_PREDICTED)

    _write_atomic(t.output, write)
    extra = {"size_in": {"width": round(size_in[0], 4), "height": round(size_in[1], 4)},
             "dpi": o.dpi, "image_sizes": sizes, "results": results,
             "skipped": [{"path": p, "reason": r} for p, r in summary.failed]}
    _write_sidecar(t, _sidecar(t, plan, layers, extra))
    summary.written.append(str(t.output))
    if progress is not None:
        progress(n + 1, n + 1)


# --------------------------------------------------------------------------- convenience
def export(request: ExportRequest, *, overwrite: bool = False, force: bool = False, progress: Progress = None,
           cancel: Cancel = None) -> ExportSummary:
    """``plan_export`` then ``run_export`` in one call."""
    return run_export(plan_export(request, cancel=cancel), overwrite=overwrite, force=force, progress=progress,
                      cancel=cancel)


def read_sidecar(path: str | os.PathLike) -> dict:
    """A GeoCAM export sidecar (``FILE.json``), checked for format."""
    p = Path(path)
    if not p.is_file():
        raise BadArgument(f"The sidecar {p} does not exist.")
    data = _read_json(p)
    if not data or data.get("format") != SIDECAR_FORMAT or "params" not in data:
        raise BadArgument(f"{p} is not a GeoCAM export sidecar.")
    return data


def request_from_sidecar(path: str | os.PathLike, destination: str | os.PathLike | None = None) -> tuple[ExportRequest, Path]:
    """The single-output request that re-creates the export described by a sidecar, and the
    output path (``destination``: a folder or file name; default: beside the sidecar)."""
    side = Path(path).absolute()
    data = read_sidecar(side)
    p = data["params"]
    kind = p.get("kind")
    name = str(data.get("output") or side.name.removesuffix(".json"))
    if destination is None:
        out = side.with_name(side.name.removesuffix(".json")) if side.name.endswith(".json") else side.with_name(name)
    else:  # a figure goes to a file, the other outputs into a folder
        d = Path(destination).expanduser().absolute()
        out = d / name if kind != "figure" or d.is_dir() else d
    if out.suffix.lower() != Path(name).suffix.lower():
        raise BadArgument(f"{out.name} must keep the original extension {Path(name).suffix} to re-create {name}.")
    for src, want in zip(p["images"], data.get("sources", [])):
        if want.get("sha256") and os.path.isfile(src["path"]) and file_sha256(src["path"]) != want["sha256"]:
            raise DataError(f"The image {src['path']} changed since the export (its SHA-256 differs), "
                            "so the export cannot be re-created exactly.")
    for m in data.get("models", []):
        if os.path.isfile(m["weights"]) and file_sha256(m["weights"]) != m["sha256"]:
            raise DataError(f"The checkpoint {m['checkpoint']} changed since the export (its SHA-256 differs).")
    opts = ExportOptions(class_choice=p["class"], method=p["method"], device=p.get("device", "cpu"))
    if "colormap" in p:
        opts.cmap, opts.normalize, opts.dpi = p["colormap"], p["normalize"], int(p["dpi"])
    if "opacity" in p:
        opts.opacity = float(p["opacity"])
    images = [ExportImage(s["path"], s.get("label")) for s in p["images"]]
    if kind == "figure":
        opts.width_in, opts.show_predictions = float(p["width_in"]), bool(p["show_predictions"])
        return ExportRequest("figure", images, list(p["checkpoints"]), str(out), opts), out
    if kind not in PANE_OUTPUTS:
        raise BadArgument(f"{side} describes an unknown export kind {kind!r}.")
    if kind == "overlay":
        opts.overlay_format = p["format"]
    opts.outputs = (kind,)
    return ExportRequest("overlays", images, list(p["checkpoints"]), str(out.parent), opts, write_summary=False), out


def export_from_sidecar(path: str | os.PathLike, destination: str | os.PathLike | None = None, *,
                        overwrite: bool = False, progress: Progress = None, cancel: Cancel = None) -> ExportSummary:
    """Re-create the output a sidecar describes (byte for byte, given the same files and library
    versions). An existing output needs ``overwrite``."""
    data = read_sidecar(path)
    req, out = request_from_sidecar(path, destination)
    plan = plan_export(req)
    model_index = data["params"].get("model_index")
    plan.targets = [t for t in plan.targets if t.kind != "summary"
                    and (req.kind == "figure" or t.model_index == model_index)]
    if len(plan.targets) != 1:
        raise BadArgument(f"{path} does not describe exactly one output.")
    target = plan.targets[0]
    target.output = out
    if out.exists() and not overwrite:
        raise BadArgument(f"{out} already exists; pass --overwrite to replace it, or choose another destination.")
    target.status = "new"
    return run_export(plan, overwrite=True, progress=progress, cancel=cancel)
