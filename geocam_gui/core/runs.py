"""Run folders: where the training runs on a dataset live, and what to reopen from them.

A *run folder* holds the runs on one dataset: ``<checkpoint_dir>/<label>-<digest>`` where the
digest is the first 8 hex digits of the SHA-1 of the dataset's fingerprint and the label is
``demo`` for the demo set, else the name of the dataset's first folder (sanitised, at most 40
characters). Inside it each model keeps its own folder (``<model>/best.*``, ``last.*``,
``last_state.pt``, ``metrics.jsonl``) as ``core.train.engine`` writes them. The GUI and the CLI
both train into ``run_dir_for(...)`` unless told otherwise, so a run from either opens in the other.

Everything here is plain file work: no Qt, no torch models loaded (only checkpoint metadata read).
Files in a run folder are treated as hostile: a damaged one is reported per model, never raised.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from geocam_gui.core import checkpoints as ckpt
from geocam_gui.core.models import MODEL_NAMES

#: Bytes of ``metrics.jsonl`` read at most (a run writes ~300 bytes per epoch).
MAX_HISTORY_BYTES = 8 * 1024 * 1024
LABEL_CHARS = 40


def run_dir_name(label: str, fingerprint: str) -> str:
    """``<label>-<digest>``: ``label`` reduced to ``[A-Za-z0-9-_.]`` (others become ``_``)."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in label)[:LABEL_CHARS] or "dataset"
    if set(safe) == {"."}:  # "." or ".." must not name a folder
        safe = "dataset"
    digest = hashlib.sha1(fingerprint.encode()).hexdigest()[:8]
    return f"{safe}-{digest}"


def run_dir_for(index, checkpoint_dir: str | Path, *, demo: bool = False) -> Path:
    """The run folder of ``index`` (a ``DatasetIndex``) below ``checkpoint_dir``.

    ``demo``: the dataset is the demo set (``core.workspace.default_run_dir`` decides it with
    ``data.demo.is_demo_dir``); its runs are then labelled ``demo`` wherever the set lives.
    Computing the fingerprint stats every file of the index: call it off the GUI thread.
    """
    root = Path(index.roots[0]) if index.roots else Path("dataset")
    label = "demo" if demo else root.name
    run_dir = Path(checkpoint_dir) / run_dir_name(label, index.fingerprint())
    legacy = getattr(index, "legacy_fingerprint", None)
    if not run_dir.exists() and legacy is not None:  # runs named by GeoCAM before root-relative fingerprints
        old = Path(checkpoint_dir) / run_dir_name(label, legacy())
        if old.is_dir():
            return old
    return run_dir


def class_mismatch(meta: dict, classes: list[str] | None, file: str | Path = "The checkpoint") -> str | None:
    """A sentence when a checkpoint's classes differ from ``classes`` (None when they agree or
    when ``classes`` is None); ``file`` names the checkpoint in it."""
    if classes is None:
        return None
    trained = list(meta.get("classes", []))
    if trained == list(classes):
        return None
    return f"{Path(file).name} was trained on classes {trained}, this dataset has {list(classes)}."


@dataclass
class ModelCheckpoint:
    """What a run folder offers for one model: ``source``, the checkpoint file found, and
    ``error`` when it cannot be used (damaged, or trained on other classes)."""

    model: str
    source: Path
    meta: dict = field(default_factory=dict)
    error: str | None = None

    @property
    def path(self) -> Path | None:
        """The checkpoint to open, or None when ``error`` says why not."""
        return self.source if self.error is None else None

    @property
    def history_path(self) -> Path | None:
        """Its run's ``metrics.jsonl`` (None when the checkpoint cannot be used)."""
        return self.source.parent / "metrics.jsonl" if self.error is None else None


def reopen(folder: str | Path | None, classes: list[str] | None = None) -> dict[str, ModelCheckpoint]:
    """Per model, the checkpoint to reopen from ``folder``: the newest ``best`` checkpoint
    (any depth) whose classes equal ``classes`` (``classes`` None: any).

    Models with nothing there are absent. When a model's newest candidate is damaged (the
    model then taken from its folder's name) or trained on other classes, its entry carries
    ``error`` (the reason, one sentence) and no ``path``; an older good candidate of the same
    model is not used then: the newest file decides, as the GUI always did.
    """
    found: dict[str, ModelCheckpoint] = {}
    if not folder or not Path(folder).is_dir():
        return found
    for path in ckpt.find_checkpoints(folder):
        try:
            meta = ckpt.read_meta(path)
        except Exception as exc:  # noqa: BLE001 - a bad file is reported, the rest loads
            name = Path(path).parent.name  # runs keep each model in a folder of its name
            if name in MODEL_NAMES and name not in found:
                found[name] = ModelCheckpoint(name, Path(path), {}, str(exc) or type(exc).__name__)
            continue
        name = meta.get("model")
        if name not in MODEL_NAMES or name in found:
            continue
        found[name] = ModelCheckpoint(name, Path(path), meta, class_mismatch(meta, classes, path))
    return found


def newest_best(folder: str | Path | None, models: set[str] | None = None) -> dict[str, Path]:
    """The newest ``best`` checkpoint per model below ``folder`` (only ``models`` if given);
    files whose metadata cannot be read are skipped."""
    out: dict[str, Path] = {}
    if not folder:
        return out
    for path in ckpt.find_checkpoints(folder):
        try:
            name = ckpt.read_meta(path).get("model")
        except Exception:  # noqa: BLE001 - damaged: not a candidate
            continue
        if name in MODEL_NAMES and name not in out and (models is None or name in models):
            out[name] = Path(path)
    return out


def read_history(path: str | Path | None) -> list[dict]:
    """The per-epoch records of a ``metrics.jsonl`` (missing file: []; damaged or non-object
    lines skipped; at most ``MAX_HISTORY_BYTES`` read)."""
    if path is None:
        return []
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_HISTORY_BYTES)
    except OSError:
        return []
    records = []
    for line in raw.decode("utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            records.append(rec)
    return records


@dataclass
class RunInfo:
    """One run folder below a checkpoint directory."""

    path: Path
    models: dict[str, Path]  # model -> newest best checkpoint
    modified: float  # newest mtime of a best checkpoint (0 when none)


def list_runs(checkpoint_dir: str | Path) -> list[RunInfo]:
    """The run folders directly below ``checkpoint_dir`` that hold at least one best
    checkpoint, most recently trained first."""
    root = Path(checkpoint_dir)
    if not root.is_dir():
        return []
    runs = []
    for sub in root.iterdir():
        if not sub.is_dir() or sub.is_symlink():
            continue
        models = newest_best(sub)
        if models:
            modified = max(p.stat().st_mtime for p in models.values())
            runs.append(RunInfo(sub, models, modified))
    return sorted(runs, key=lambda r: r.modified, reverse=True)
