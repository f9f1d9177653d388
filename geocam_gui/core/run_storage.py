"""What the runs on disk cost, and making them smaller: the model behind ``geocam runs`` and the
GUI's File > Manage runs.

A *run* is a run folder (``core.runs``): per model a folder with ``best.*``, ``last.*``, the
optimiser moments ``last_optim-*.safetensors`` (or an older ``last_state.pt``), ``metrics.jsonl``
and maybe ``best_float16.*``. Sizes count each file once even where ``best`` and ``last`` share
it (a hard link). ``prune_run(keep="best")`` removes only the resume state (``last*`` files and
left-over temporaries), so the viewer still opens ``best`` and ``metrics.jsonl`` keeps the curves;
the run can no longer be resumed. ``delete_run`` removes the whole folder.

Paths from the user are hostile: a folder is pruned or deleted only if it is a real directory
(not a link) that holds at least one model folder with GeoCAM checkpoint files; nothing outside
it is touched, and files this module does not know are never removed.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from geocam_gui.core import checkpoints as ckpt
from geocam_gui.core import runs
from geocam_gui.core.errors import BadArgument
from geocam_gui.core.models import MODEL_LABELS, MODEL_NAMES

#: Files a model folder keeps when pruned to its best checkpoints.
KEEP_BEST = ("best.safetensors", "best.json", "best_float16.safetensors", "best_float16.json", "metrics.jsonl")
_PRUNABLE = re.compile(r"^(last\.safetensors|last\.json|last_state\.pt|last_optim-[0-9a-f]{12}\.safetensors"
                       r"|\.(best|last|best_float16|last_optim-[0-9a-f]{12})\.(safetensors|json)\..+\.tmp"
                       r"|\.last_state\.pt\..+\.tmp)$")
_MARKERS = ("best.json", "last.json", "last.safetensors", "last_state.pt")


@dataclass
class ModelRun:
    model: str
    folder: Path
    size: int
    best_epoch: int | None = None
    val_acc: float | None = None
    test_acc: float | None = None
    resumable: bool = False  # has last.* / last_state.pt
    error: str | None = None  # unreadable best metadata


@dataclass
class RunSummary:
    path: Path
    size: int  # bytes on disk, each file once
    modified: float  # newest file mtime (epoch seconds)
    models: list[ModelRun] = field(default_factory=list)

    @property
    def date(self) -> str:
        return _dt.datetime.fromtimestamp(self.modified).strftime("%Y-%m-%d %H:%M") if self.modified else "-"


def folder_size(folder: Path) -> tuple[int, float]:
    """(bytes, newest mtime) of the regular files below ``folder``; hard links counted once,
    symbolic links not followed."""
    seen: set[tuple[int, int]] = set()
    total, newest = 0, 0.0
    for root, dirs, files in os.walk(folder, followlinks=False):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if not _is_regular(st) or (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
            newest = max(newest, st.st_mtime)
    return total, newest


def _is_regular(st: os.stat_result) -> bool:
    import stat

    return stat.S_ISREG(st.st_mode)


def model_folders(run: Path) -> list[Path]:
    """The folders below ``run`` (itself included) that hold GeoCAM checkpoint files."""
    found = set()
    for marker in _MARKERS:
        for path in run.rglob(marker):
            if path.is_file() and not path.is_symlink():
                found.add(path.parent)
    return sorted(found)


def summarize_run(run: str | Path) -> RunSummary:
    run = Path(run)
    size, modified = folder_size(run)
    summary = RunSummary(run, size, modified)
    for folder in model_folders(run):
        m = ModelRun(model=folder.name, folder=folder, size=folder_size(folder)[0],
                     resumable=any((folder / n).is_file() for n in ("last.safetensors", "last_state.pt")))
        if (folder / "best.json").is_file():
            try:
                meta = ckpt.read_meta(folder / "best.json")
                m.model = str(meta.get("model") or folder.name)
                m.best_epoch = meta.get("best_epoch") or meta.get("epoch")
                metrics = meta.get("metrics") or {}
                m.val_acc = _accuracy(metrics.get("val"))
                m.test_acc = _accuracy(metrics.get("test"))
            except Exception as exc:  # noqa: BLE001 - a damaged file is shown, not raised
                m.error = str(exc)
        summary.models.append(m)
    return summary


def _accuracy(metrics) -> float | None:
    value = metrics.get("accuracy") if isinstance(metrics, dict) else None
    return float(value) if isinstance(value, (int, float)) else None


def list_runs(root: str | Path) -> list[RunSummary]:
    """The runs directly below ``root`` (``core.runs.list_runs``), newest first, with sizes."""
    return [summarize_run(info.path) for info in runs.list_runs(root)]


def check_run(path: str | Path) -> Path:
    """``path`` as a run folder one may prune or delete, or ``BadArgument`` saying why not."""
    path = Path(path)
    if path.is_symlink():
        raise BadArgument(f"{path} is a symbolic link; name the run folder itself.")
    if not path.is_dir():
        raise BadArgument(f"No run folder at {path}.")
    if not model_folders(path):
        raise BadArgument(f"{path} holds no GeoCAM checkpoints ({', '.join(_MARKERS)}); it is not a run folder "
                          "and was left alone.")
    return path.resolve()


def prunable_files(run: str | Path) -> list[Path]:
    """The files ``prune_run(run, keep="best")`` would remove: the resume state of each model
    folder that has a best checkpoint (a folder without one keeps everything)."""
    run = check_run(run)
    out = []
    for folder in model_folders(run):
        if not (folder / "best.safetensors").is_file() or not (folder / "best.json").is_file():
            continue
        for entry in folder.iterdir():
            if entry.is_file() and not entry.is_symlink() and _PRUNABLE.match(entry.name):
                out.append(entry)
    return sorted(out)


def prune_run(run: str | Path, keep: str = "best") -> int:
    """Remove every model's resume state, keeping its best checkpoints; returns the bytes freed."""
    if keep != "best":
        raise BadArgument(f"--keep must be 'best', got {keep!r}.")
    files = prunable_files(run)
    before = folder_size(Path(run))[0]
    for path in files:
        path.unlink(missing_ok=True)
    return before - folder_size(Path(run))[0]


def delete_run(run: str | Path) -> int:
    """Remove a run folder and everything in it; returns the bytes freed."""
    run = check_run(run)
    size = folder_size(run)[0]
    shutil.rmtree(run)
    return size


def human_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def models_text(summary: RunSummary) -> str:
    """``Shallow CNN 94.1 % / 85.2 %, VGG11 ...`` (val / test accuracy of best, "–" where a
    split was not measured), in MODEL_NAMES order, with the names the rest of the app shows."""
    order = {m: i for i, m in enumerate(MODEL_NAMES)}
    parts = []
    for m in sorted(summary.models, key=lambda m: order.get(m.model, 99)):
        name = MODEL_LABELS.get(m.model, m.model)
        if m.error:
            parts.append(f"{name} (damaged)")
            continue
        accs = (m.val_acc, m.test_acc)
        acc = "–" if accs == (None, None) else " / ".join("–" if a is None else f"{100 * a:.1f} %" for a in accs)
        parts.append(f"{name} {acc}" + ("" if m.resumable else " (best only)"))
    return ", ".join(parts) or "-"
