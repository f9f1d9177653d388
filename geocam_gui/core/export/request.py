"""What an export is asked to do and what it did: the request, plan and summary types, the
checks of options and checkpoints (all before anything is written), and cached file hashes."""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from geocam_gui.core.errors import BadArgument, WriteError
from geocam_gui.core.export.figure import SINGLE_COLUMN_IN, parse_width

SIDECAR_FORMAT = "geocam-export/1"
SUMMARY_NAME = "summary.json"
MAX_SIDECAR_BYTES = 64 << 20
OVERLAY_FORMATS: tuple[str, ...] = ("png", "tiff")
MODEL_OUTPUTS: tuple[str, ...] = ("overlay", "heatmap", "raw")
NORMALIZATIONS: tuple[str, ...] = ("per_map", "shared", "p99")
#: At most this many reference images for "p99" (the viewer uses ``reference.REFERENCE_IMAGES``).
MAX_REFERENCE_IMAGES = 1024
CLASS_PREDICTED = "predicted"
CLASS_TRUE = "true"
MAX_FIGURE_ROWS = 24
MIN_DPI, MAX_DPI = 50, 2400

Progress = Callable[[int, int], None] | None
Cancel = Callable[[], bool] | None


ExportWriteError = WriteError  # an output could not be written (no permission, disk full...)


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
    normalize: str = "per_map"  # "per_map", "shared" or "p99" (each model's 99th percentile)
    #: "p99": the images each model's 99th-percentile CAM value is taken over (the viewer's sample:
    #: ``reference.reference_samples``); the export computes it as the viewer does.
    reference_images: tuple[str, ...] = ()
    dpi: int = 300
    device: str = "cpu"
    overlay_format: str = "png"
    outputs: tuple[str, ...] = MODEL_OUTPUTS
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


def weights_file(path: Path) -> Path:
    """The ``.safetensors`` of a checkpoint given as its ``.json`` or stem (else ``path``)."""
    if path.suffix == ".json" or not path.suffix:
        st = path.with_name(path.stem + ".safetensors") if path.suffix else path.with_name(path.name + ".safetensors")
        if st.is_file():
            return st
    return path

# --------------------------------------------------------------------------- validation
def check_options(o: ExportOptions, kind: str) -> None:
    """``BadArgument`` for any option out of range (method, colormap, opacity, DPI, outputs...)."""
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
    if o.normalize == "p99" and not o.reference_images:
        raise BadArgument("The p99 scale needs reference images to take each model's 99th percentile over "
                          "(geocam export --reference DATA).")
    if len(o.reference_images) > MAX_REFERENCE_IMAGES:
        raise BadArgument(f"At most {MAX_REFERENCE_IMAGES} reference images, got {len(o.reference_images)}.")
    if not isinstance(o.dpi, int) or not MIN_DPI <= o.dpi <= MAX_DPI:
        raise BadArgument(f"The DPI must be a whole number between {MIN_DPI} and {MAX_DPI}, got {o.dpi!r}.")
    if kind == "overlays":
        if o.overlay_format not in OVERLAY_FORMATS:
            raise BadArgument(f"Overlays are written as {' or '.join(OVERLAY_FORMATS)}, not {o.overlay_format!r}.")
        bad = [x for x in o.outputs if x not in MODEL_OUTPUTS]
        if bad or not o.outputs:
            raise BadArgument(f"Choose the overlay outputs among {', '.join(MODEL_OUTPUTS)}.")
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
        weights = weights_file(path)
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


def check_writable_folder(folder: Path) -> None:
    """``ExportWriteError`` when ``folder`` (or the nearest existing parent) cannot be written."""
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise BadArgument(f"{probe} is a file, so the folder {folder} cannot be created.")
    if not os.access(probe, os.W_OK | os.X_OK):
        read_only = hasattr(os, "statvfs") and bool(os.statvfs(probe).f_flag & getattr(os, "ST_RDONLY", 1))
        raise ExportWriteError(probe, "the file system is read-only" if read_only else "permission denied")

