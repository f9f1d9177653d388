"""Running a planned export: each image explained through ``explain.store`` (the viewer's own
model store, per-image explanation and full-size maps), then its overlays, heat maps, raw maps
or figure written with ``core.files`` and a sidecar beside each; ``export`` plans and runs in
one call, ``export_from_sidecar`` re-creates one output from its sidecar."""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from geocam_gui.core import validate
from geocam_gui.core.errors import BadArgument, DataError, ImageError
from geocam_gui.core.explain.store import GROUND_TRUTH, ModelStore, explain_image, full_size_maps
from geocam_gui.core.export.plan import plan_export
from geocam_gui.core.export.request import (
    CLASS_PREDICTED, CLASS_TRUE, MODEL_OUTPUTS, SIDECAR_FORMAT, SUMMARY_NAME, Cancel, ExportImage, ExportOptions,
    ExportPlan, ExportRequest, ExportSummary, ModelInfo, Progress, Target, column_title,
)
from geocam_gui.core.export.sidecar import (
    build_sidecar, jsonable, model_result, read_sidecar, request_from_sidecar, write_sidecar,
)
from geocam_gui.core.files import atomic_write, to_file_object


# --------------------------------------------------------------------------- explaining
@dataclass
class _ModelOutput:
    """What the export writes of one model's explanation of one image."""

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
    models: dict[int, _ModelOutput]


class _References:
    """The "p99" scale: each model's 99th-percentile CAM value of each class over the request's
    reference images, computed once per model with ``reference.cam_percentiles`` (what the
    viewer's comparable scale divides by). ``None`` for the other scales."""

    def __init__(self, plan: ExportPlan, store: ModelStore):
        self.plan, self.store = plan, store
        self.done: dict[int, dict] = {}

    def get(self, which) -> dict[str, np.ndarray] | None:
        o = self.plan.request.options
        if o.normalize != "p99":
            return None
        from geocam_gui.core.explain.reference import cam_percentiles

        for j in which:
            if j not in self.done:
                self.done[j] = cam_percentiles(self.plan.models[j].checkpoint, o.reference_images, self.store,
                                               method=o.method)
        return {self.plan.models[j].key: self.done[j]["percentiles"] for j in which}

    def record(self, which) -> dict:
        """The sidecar's ``reference``: the images counted and each model's values per class."""
        if self.plan.request.options.normalize != "p99":
            return {}
        return {"reference": [{"model_index": j, "percentiles": [float(v) for v in self.done[j]["percentiles"]],
                               "q": self.done[j]["q"], "images": self.done[j]["images"],
                               "skipped": self.done[j]["skipped"]} for j in sorted(which)]}


def _explain(im: ExportImage, models: list[ModelInfo], store: ModelStore, which: list[int],
             o: ExportOptions, refs: _References) -> _Explained:
    """CAMs of image ``im`` by the models ``which``, through the viewer's own path
    (``explain_image`` + ``full_size_maps``) on the photo at its native size; ImageError when
    it cannot be decoded, the checkpoint's error when one cannot explain it."""
    reference = refs.get(which)
    exp = explain_image(im.path, {models[j].key: models[j].checkpoint for j in which}, store, method=o.method,
                        label=im.label, max_side=None, strict=True)
    choice = {CLASS_TRUE: GROUND_TRUTH}.get(o.class_choice, o.class_choice)
    maps = full_size_maps(exp, choice, shared=o.normalize == "shared", reference=reference)
    out: dict[int, _ModelOutput] = {}
    for j in which:
        me = exp.models[models[j].key]
        idx, m01, _scale = maps.get(models[j].key, (None, None, None))
        out[j] = _ModelOutput(idx, me.classes[idx] if idx is not None else None, me.predicted,
                              float(me.probs[me.predicted]), [float(v) for v in me.probs], me.raw, m01)
    return _Explained(exp.image, out)


def _layer_names(store: ModelStore, models: list[ModelInfo], which) -> dict[int, str]:
    """The explained layer's name of each model in ``which`` (for the sidecars)."""
    from geocam_gui.core.models import target_layer

    out = {}
    for j in sorted(which):
        net = store.get(models[j].checkpoint).model
        layer = target_layer(net, models[j].model)
        out[j] = next((n for n, mod in net.named_modules() if mod is layer), "?")
    return out


# --------------------------------------------------------------------------- writing
def _write_atomic(path: Path, write: Callable[[Path], None] | str, *, fsync: bool = False) -> None:
    """``core.files.atomic_write``; no fsync by default: exports are re-creatable from their
    sidecars, and a batch of thousands of files would spend most of its time waiting for the disk."""
    atomic_write(path, write, fsync=fsync)


def _then_sidecar(writer: Callable[[Path], None], t: Target, sidecar: dict) -> Callable[[Path], None]:
    """``writer``, then the sidecar, both before the output is renamed into place: a crash in
    between leaves a sidecar without its output, which the next run re-creates, and never an
    output without a sidecar, which would look like somebody else's file."""

    def write(tmp: Path) -> None:
        writer(tmp)
        write_sidecar(t, sidecar)

    return write


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
    return to_file_object(np.save, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)


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
    todo = [t for t in plan.targets if t.status != "up_to_date" and t.kind in MODEL_OUTPUTS]
    by_image: dict[int, list[Target]] = {}
    for t in todo:
        by_image.setdefault(t.images[0], []).append(t)
    dest = Path(req.destination)
    if todo:
        dest.mkdir(parents=True, exist_ok=True)
    store = ModelStore(o.device)
    refs = _References(plan, store)
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
                if not which.issubset(layers):  # loads them: a checkpoint error stops the export
                    layers.update(_layer_names(store, plan.models, which - set(layers)))
                exp = _explain(im, plan.models, store, sorted(which), o, refs)
            except ImageError as exc:
                summary.failed.append((im.path, exc.reason))
            else:
                _write_model_outputs(plan, targets, exp, layers, summary, refs)
        if progress is not None:
            progress(i + 1, n)
    if req.write_summary:
        _write_summary(dest, plan, summary)


def _write_model_outputs(plan, targets: list[Target], exp: _Explained, layers, summary: ExportSummary,
                         refs: _References) -> None:
    from geocam_gui.core.explain.render import heatmap_rgba, overlay

    o = plan.request.options
    H, W = exp.image.shape[:2]
    failed_reasons = set()
    for t in targets:
        mo = exp.models[t.model_index]
        if mo.class_index is None:
            failed_reasons.add(f"its label {plan.request.images[t.images[0]].label!r} is not a class of "
                               f"{plan.models[t.model_index].title}")
            continue
        if t.kind == "overlay":
            writer = _save_image(overlay(exp.image, mo.map01, opacity=float(o.opacity), cmap=o.cmap),
                                 o.overlay_format, o.dpi)
        elif t.kind == "heatmap":
            writer = _save_image(heatmap_rgba(mo.map01, o.cmap), "png", o.dpi)
        else:
            writer = _save_npy(mo.raw[mo.class_index])
        extra = {"image_size": {"width": W, "height": H},
                 "map_size": {"height": int(mo.raw.shape[-2]), "width": int(mo.raw.shape[-1])},
                 "dpi": o.dpi if t.kind != "raw" else None,
                 "results": [model_result(t.model_index, mo)],
                 **(refs.record([t.model_index]) if t.kind != "raw" else {})}
        _write_atomic(t.output, _then_sidecar(writer, t, build_sidecar(t, plan, layers, extra)))
        summary.written.append(str(t.output))
    for reason in sorted(failed_reasons):
        summary.failed.append((plan.request.images[targets[0].images[0]].path, reason))


def _write_summary(dest: Path, plan: ExportPlan, summary: ExportSummary) -> None:
    if not dest.is_dir():
        return
    data = {"format": SIDECAR_FORMAT + "-summary",
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "options": jsonable(asdict(plan.request.options)),
            "checkpoints": [m.checkpoint for m in plan.models], **summary.to_dict()}
    text = validate.dumps(data, indent=2, ensure_ascii=False) + "\n"
    _write_atomic(dest / SUMMARY_NAME, text, fsync=True)


def _run_figure(plan: ExportPlan, t: Target, summary: ExportSummary, progress: Progress, cancel: Cancel) -> None:
    from geocam_gui.core.explain.cam import METHOD_LABELS
    from geocam_gui.core.export.figure import FigurePanel, FigureRow, render_figure
    from geocam_gui.core.explain.render import overlay

    req = plan.request
    o = req.options
    n = len(req.images)
    store = ModelStore(o.device)
    refs = _References(plan, store)
    layers = _layer_names(store, plan.models, range(len(plan.models)))
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
            exp = _explain(im, plan.models, store, list(range(len(plan.models))), o, refs)
        except ImageError as exc:
            summary.failed.append((im.path, exc.reason))
        else:
            panels = []
            for j, m in enumerate(plan.models):
                p = exp.models[j]
                pred = m.classes[p.predicted]
                wrong = None if im.label not in m.classes else pred != im.label
                if p.map01 is None:
                    panels.append(FigurePanel(None, error="no such class", predicted=pred, probability=p.probability,
                                              wrong=wrong))
                else:
                    panels.append(FigurePanel(overlay(exp.image, p.map01, opacity=float(o.opacity), cmap=o.cmap),
                                              class_name=p.class_name, predicted=pred, probability=p.probability,
                                              wrong=wrong))
                results.append({"image_index": i, **model_result(j, p)})
            rows.append(FigureRow(exp.image, im.label, panels))
            sizes.append({"image_index": i, "width": int(exp.image.shape[1]), "height": int(exp.image.shape[0])})
        if progress is not None:
            progress(i + 1, n + 1)
    if not rows:
        raise DataError(f"None of the {n} image(s) could be read, so no figure was made.")
    fmt = t.params["format"]
    scale = {"per_map": "per-map scale", "shared": "shared scale"}.get(o.normalize, "1 = each model's p99")
    label = f"{METHOD_LABELS.get(o.method, o.method)}, {scale}"
    size_in: list[float] = []

    def write(tmp: Path) -> None:
        size_in[:] = render_figure(rows, ["Image"] + [column_title(m) for m in plan.models], str(tmp), fmt, dpi=o.dpi,
                                   width_in=t.params["width_in"], cmap=o.cmap,
                                   show_predictions=o.show_predictions, colorbar_label=label,
                                   explains_predicted=o.class_choice == CLASS_PREDICTED)

    def write_with_sidecar(tmp: Path) -> None:
        write(tmp)
        extra = {"size_in": {"width": round(size_in[0], 4), "height": round(size_in[1], 4)},
                 "dpi": o.dpi, "image_sizes": sizes, "results": results, **refs.record(range(len(plan.models))),
                 "skipped": [{"path": p, "reason": r} for p, r in summary.failed]}
        write_sidecar(t, build_sidecar(t, plan, layers, extra))

    _write_atomic(t.output, write_with_sidecar, fsync=True)
    summary.written.append(str(t.output))
    if progress is not None:
        progress(n + 1, n + 1)

# --------------------------------------------------------------------------- convenience
def export(request: ExportRequest, *, overwrite: bool = False, force: bool = False, progress: Progress = None,
           cancel: Cancel = None) -> ExportSummary:
    """``plan_export`` then ``run_export`` in one call."""
    return run_export(plan_export(request, cancel=cancel), overwrite=overwrite, force=force, progress=progress,
                      cancel=cancel)


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
