"""Runs side by side (the GUI's File > Manage runs > Compare, as TensorBoard overlays runs): each
model of each run folder as one series of per-epoch curves with its training settings, and which
settings differ between the series.

The curves come from the model's ``metrics.jsonl`` (``core.runs.read_history``), the settings from
its checkpoint metadata (``hyper_parameters``, the ``TrainConfig`` it trained with: ``best`` first,
else ``last``). Both are files from disk, hence untrusted: values that are not finite numbers are
dropped from the curves, settings are flattened to short strings, and a damaged file gives the
series an ``error`` sentence instead of an exception. No Qt, no torch.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from geocam_gui.core import checkpoints as ckpt
from geocam_gui.core import runs
from geocam_gui.core.models import MODEL_LABELS, MODEL_NAMES

METRICS = ("val_acc", "val_loss", "train_acc", "train_loss")
MAX_SETTINGS = 80  # flattened keys kept per series
MAX_TEXT = 60  # characters of a setting's value
MISSING = "–"


@dataclass
class ModelSeries:
    """One model of one run: ``label`` is "<run folder> · <Model>"."""

    run: Path
    model: str
    curves: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # metric -> [(epoch, value)]
    settings: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    @property
    def label(self) -> str:
        return f"{self.run.name} · {MODEL_LABELS.get(self.model, self.model)}"


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def curves_of(records: list[dict]) -> dict[str, list[tuple[float, float]]]:
    """Per metric, the (epoch, value) points of ``metrics.jsonl`` records that have both as
    finite numbers (any other record or value is skipped)."""
    out: dict[str, list[tuple[float, float]]] = {m: [] for m in METRICS}
    for rec in records:
        epoch = _number(rec.get("epoch"))
        if epoch is None:
            continue
        for metric in METRICS:
            value = _number(rec.get(metric))
            if value is not None:
                out[metric].append((epoch, value))
    return out


def flatten(settings, prefix: str = "") -> dict[str, str]:
    """Nested settings as ``{"augment.crop": "True", ...}``, values as short text."""
    out: dict[str, str] = {}
    if not isinstance(settings, dict):
        return out
    for key, value in settings.items():
        name = f"{prefix}{str(key)[:MAX_TEXT]}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            out[name] = text if len(text) <= MAX_TEXT else text[:MAX_TEXT - 1] + "…"
        if len(out) >= MAX_SETTINGS:
            break
    return dict(list(out.items())[:MAX_SETTINGS])


def series_of_run(run: str | Path) -> list[ModelSeries]:
    """One series per model folder of the run folder ``run`` (in ``MODEL_NAMES`` order)."""
    run = Path(run)
    found = []
    for name in MODEL_NAMES:
        folder = run / name
        if not folder.is_dir() or folder.is_symlink():
            continue
        series = ModelSeries(run, name)
        series.curves = curves_of(runs.read_history(folder / "metrics.jsonl"))
        for stem in ("best", "last"):
            if not (folder / f"{stem}.json").is_file() and not (folder / f"{stem}.safetensors").is_file():
                continue
            try:
                meta = ckpt.read_meta(folder / stem)
            except Exception as exc:  # noqa: BLE001 - a damaged file is said, not raised
                series.error = f"{folder.name}/{stem}: {exc}"
                continue
            series.settings = flatten(meta.get("hyper_parameters"))
            series.error = None
            break
        if any(series.curves.values()) or series.settings or series.error:
            found.append(series)
    return found


def differing(series: list[ModelSeries]) -> list[str]:
    """The setting names whose values are not the same in every series that has settings (a
    setting absent from one of them counts as a value; a series without any, e.g. damaged, is
    left out rather than making every row differ)."""
    known = [s for s in series if s.settings]
    keys = all_settings(known)
    return [k for k in keys if len({s.settings.get(k, MISSING) for s in known}) > 1]


def all_settings(series: list[ModelSeries]) -> list[str]:
    """Every setting name of ``series``, in first-seen order."""
    keys: dict[str, None] = {}
    for s in series:
        keys.update(dict.fromkeys(s.settings))
    return list(keys)
