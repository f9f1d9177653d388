"""The analysis room's kinds of compute-process job (``core.explain.service``, issue 17).

The window's bridge starts its compute process with ``jobs=("geocam_gui.core.analysis.jobs",)``,
so the child adds ``HANDLERS`` to its own. Each handler runs the same core function as the CLI
(``run_analysis``, ``run_units``, ...) and returns plain data: dicts, numpy arrays, paths.

* ``analyze`` (checkpoints, index, split, method, limit) -> (report, {name: path}): the
  Analysis tab's pass, its report written into the cache (``report_folder``).
* ``units`` (checkpoint, index, split, layer, top, limit, random_check, others) ->
  (result, {model: filter grid}): the Units tab's scan and the first-layer filters of ``others``.
* ``unitmap`` (checkpoint, layer, path, size, unit, scale) -> map01: a unit's map on one image.
* ``layers`` (model, checkpoint) -> the layer names a units scan may choose
  (``units.layer_choices``), from the architecture built on the meta device (the shallow net's
  from its checkpoint: it has two layouts).
* ``filters`` (checkpoints: {model: path}) -> {model: filter grid}: the Units tab's first-layer
  filters, shown as soon as the models are there (no scan needed).

Progress replies carry ``(done, total, text)``; between batches the passes serve waiting
interactive jobs and stop when cancelled or replaced. The service runs each job under the
sender's ``GEOCAM_HOME``, so caches and reports land where the window's process would put them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


def report_folder(checkpoints: list[str], index, split: str, method: str, limit: int | None) -> Path:
    """Where the Analysis tab writes the report of these settings (under the cache)."""
    from geocam_gui.core import paths

    key = hashlib.sha256(json.dumps([checkpoints, index.fingerprint(), split, method, limit]).encode())
    return paths.cache_dir() / "analysis" / "reports" / key.hexdigest()[:20]


def _analyze(server, job_id: int, *, checkpoints, index, split: str, method: str, limit: int | None):
    from geocam_gui.core.analysis.report import write_report
    from geocam_gui.core.analysis.run import run_analysis

    report = run_analysis(checkpoints, index, split=split, method=method, limit=limit, device=server.device,
                          progress=server.reporter(job_id), cancel=server.canceller(job_id))
    files = write_report(report, report_folder(checkpoints, index, split, method, limit))
    return report, files


def _units(server, job_id: int, *, checkpoint, index, split: str, layer: str | None, top: int,
           limit: int | None, random_check: bool, others: dict):
    from geocam_gui.core.analysis.units_run import run_units

    result = run_units(checkpoint, index, split=split, layer=layer, top=top, limit=limit, device=server.device,
                       random_check=random_check, progress=server.reporter(job_id), cancel=server.canceller(job_id))
    return result, _filters(server, job_id, checkpoints=others)


_GRIDS: dict[tuple[str, str], object] = {}  # (checkpoint, stamp) -> its first-layer filter grid


def _filters(server, job_id: int, *, checkpoints: dict) -> dict:
    """{model: first-layer filter grid} of every checkpoint given (a VGG11 checkpoint takes a
    second to read: each grid is kept while its file is unchanged)."""
    from geocam_gui.core.analysis.units import filter_grid
    from geocam_gui.core.checkpoints import checkpoint_stamp, load_checkpoint

    grids = {}
    for name, path in checkpoints.items():
        key = (str(path), checkpoint_stamp(Path(path)))
        if key not in _GRIDS:
            if len(_GRIDS) >= 12:
                _GRIDS.clear()
            _GRIDS[key] = filter_grid(load_checkpoint(path, device="cpu").model)
        grids[name] = _GRIDS[key]
    return grids


_UNIT_MODELS: dict[tuple[str, str], object] = {}  # the unit maps' models, on the CPU (as before the move)


def _unitmap(server, job_id: int, *, checkpoint, layer: str, path: str, size: int, unit: int, scale: float):
    from geocam_gui.core.analysis.units import unit_map
    from geocam_gui.core.checkpoints import checkpoint_stamp, load_checkpoint
    from geocam_gui.core.data.images import load_resized

    key = (str(checkpoint), checkpoint_stamp(Path(checkpoint)))  # a checkpoint rewritten in place is reloaded
    model = _UNIT_MODELS.get(key)
    if model is None:
        if len(_UNIT_MODELS) >= 3:
            _UNIT_MODELS.clear()
        model = _UNIT_MODELS[key] = load_checkpoint(checkpoint, device="cpu").model
    return unit_map(model, layer, load_resized(path, size), unit, scale)


def _layers(server, job_id: int, *, model: str, checkpoint: str | None = None) -> list[str]:
    """``checkpoint``: a shallow net's file, whose layout (with batch norm or from before it) names
    its layers; the other architectures have one layout."""
    import torch

    from geocam_gui.core.analysis.units import layer_choices
    from geocam_gui.core.models import build_model

    legacy = False
    if model == "shallow" and checkpoint:
        from geocam_gui.core.checkpoints import load_checkpoint, tensor_names
        from geocam_gui.core.models import is_legacy_shallow

        names = tensor_names(checkpoint)  # the header alone: asked again each epoch of a shallow run
        if names is None:  # a plain PyTorch file: a pickle has no header to read names from
            return layer_choices(load_checkpoint(checkpoint, device="cpu").model, model)
        legacy = is_legacy_shallow(names)
    with torch.device("meta"):  # the names need the architecture only: no memory, no time
        return layer_choices(build_model(model, 2, legacy=legacy), model)


HANDLERS = {"analyze": _analyze, "units": _units, "unitmap": _unitmap, "layers": _layers, "filters": _filters}
