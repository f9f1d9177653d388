"""Measured interpretability: numbers, not only pictures, for the three models side by side.

``run_analysis(checkpoints, index, split=..., method=...)`` returns a JSON-serialisable report
with, per model (see the helper modules for each definition): 1. accuracy and confusion matrix
on the analysed images; 2. localisation against the demo set's ground-truth masks
(``model_pass``, ``measures``): pointing game, share of CAM energy on the evidence and on the
sky, next to a uniform-random map (images without masks are counted and left out), and the
share of the image where the map reaches half its peak (``map_area``: selective or wide, no mask
needed); 3. faithfulness: deletion / insertion curves and areas, next to a random pixel order; 4. the
Adebayo et al. (2018) cascading parameter-randomisation check (Spearman and SSIM); 5. agreement
between every pair of models (IoU of the top-20 % regions, Spearman); 6. the sky-bias probe
(``bias``); 7. discriminative elements, "what makes Tokyo look like Tokyo" (``patches``).

Maps explain the true class (localisation, sanity, agreement, elements) or the predicted class
(faithfulness, and a second sky share: where the decision itself came from). ``limit`` analyses
the first ``limit`` images of the split with the classes interleaved, so any limit stays
balanced. Checkpoints are loaded by ``explain.store.ModelStore``, as the viewer loads them.

Each model's part is cached under ``paths.cache_dir()/"analysis"``, keyed by the checkpoint
file (path, size, mtime), the data's fingerprint, split, method, limit and ``ANALYSIS_VERSION``,
so reopening a report costs only the agreement step. ``report.write_report`` writes JSON, HTML
and plots.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from torch import nn

from geocam_gui.core.analysis import bias as ab, kinds as ak, measures as am, model_pass as amod
from geocam_gui.core import paths
from geocam_gui.core.chance import chance_from_metrics
from geocam_gui.core.data import demo as synthetic
from geocam_gui.core.analysis.patches import mine_elements
from geocam_gui.core.explain.cam import METHODS
from geocam_gui.core.checkpoints import checkpoint_stamp, read_meta
from geocam_gui.core.validate import finite_or_none
from geocam_gui.core.data.datasets import DatasetIndex
from geocam_gui.core.explain.store import ModelStore
from geocam_gui.core.device import resolve_device
from geocam_gui.core.errors import BadArgument, BadData, Cancelled, DataError
from geocam_gui.core.files import atomic_write, publish_folder, to_file_object
from geocam_gui.core.models import MODEL_LABELS

ANALYSIS_VERSION = "3"  # 2: tie order of deletion/insertion, per-kind localisation; 3: map area
REPORT_FORMAT = "geocam-analysis/1"
SPLITS = ("train", "val", "test")
SANITY_IMAGES = 16
TOP_FRACTION = 0.2
Progress = Callable[[int, int, str], None] | None


@dataclass
class _Model:
    key: str
    name: str
    path: Path
    model: nn.Module
    image_size: int
    stamp: str


def select_samples(samples: list, limit: int | None, classes: list[str]) -> list:
    """The split's samples with the classes interleaved (index order within a class), cut to
    ``limit``: balanced whatever the limit, the same every time."""
    per = {c: [s for s in samples if s.label == c] for c in classes}
    out, i = [], 0
    while any(i < len(v) for v in per.values()):
        out.extend(v[i] for v in per.values() if i < len(v))
        i += 1
    return out if limit is None else out[:limit]


def _load_models(checkpoints, index, device) -> list[_Model]:
    if not checkpoints:
        raise BadArgument("Give at least one checkpoint to analyse.")
    store = ModelStore(device)
    out: list[_Model] = []
    for raw in checkpoints:
        p = Path(raw)
        if not any(q.is_file() for q in (p, p.with_suffix(".json"), p.with_suffix(".safetensors"))):
            raise BadArgument(f"Checkpoint {p} does not exist.")
        meta = read_meta(p) if p.suffix in (".json", ".safetensors", "") else {}
        classes = meta.get("classes")
        if classes is not None and list(classes) != list(index.classes):
            raise BadArgument(f"{p} was trained on classes {list(classes)}, but the data has "
                              f"{list(index.classes)}; analyse it on data with the same classes.")
        loaded = store.get(p, expect_classes=list(index.classes))
        out.append(_Model("", loaded.meta["model"], p, loaded.model, int(loaded.meta["image_size"]), checkpoint_stamp(p)))
    names = [m.name for m in out]
    for m in out:
        m.key = m.name if names.count(m.name) == 1 else f"{m.name} ({m.path.parent.parent.name or m.path.stem})"
    seen: dict[str, int] = {}
    for m in out:
        seen[m.key] = seen.get(m.key, 0) + 1
        if seen[m.key] > 1:
            m.key = f"{m.key} #{seen[m.key]}"
    return out


def load_masks(image_paths: list[str], size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(evidence, sky, has_evidence, has_sky): masks resized to ``size`` x ``size`` like the images
    (whole image squashed, bilinear, then > 127); missing or unreadable masks are all False and
    flagged in ``has_*``."""
    n = len(image_paths)
    masks = {k: np.zeros((n, size, size), bool) for k in ("evidence", "sky")}
    has = {k: np.zeros(n, bool) for k in ("evidence", "sky")}
    for i, p in enumerate(image_paths):
        for kind, mp in synthetic.mask_paths(p).items():
            if kind not in masks or not mp.is_file():
                continue
            try:
                with Image.open(mp) as im:
                    arr = np.asarray(im.convert("L").resize((size, size), Image.Resampling.BILINEAR))
            except (OSError, ValueError):
                continue
            masks[kind][i] = arr > 127
            has[kind][i] = True
    return masks["evidence"], masks["sky"], has["evidence"], has["sky"]


class _Ticker:
    def __init__(self, progress: Progress, total: int):
        self.progress, self.total, self.done = progress, max(1, total), 0

    def say(self, text: str) -> None:
        """Report ``text`` without advancing (a long step, e.g. decoding, is still going on)."""
        if self.progress is not None:
            self.progress(self.done, self.total, text)

    def tick(self, text: str, n: int = 1) -> None:
        self.done = min(self.total, self.done + n)
        if self.progress is not None:
            self.progress(self.done, self.total, text)


def _entry_key(m: _Model, index, split: str, method: str, limit: int | None) -> str:
    raw = json.dumps([ANALYSIS_VERSION, m.stamp, index.fingerprint(), split, method, limit])
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def _rate(hits: np.ndarray, defined: np.ndarray) -> float | None:
    return float(hits[defined].mean()) if defined.any() else None


def _localisation(r: amod.PassResult, labels, has_ev, has_sky, ev, sky, classes, size) -> dict:
    if not has_ev.any():
        return {"available": False, "images": len(labels), "with_evidence_mask": 0,
                "reason": "No analysed image has a ground-truth evidence mask (only the demo set has them)."}

    nonempty = np.array([m.any() for m in ev])

    def block(sel):
        d = has_ev & nonempty & sel  # a map without a maximum points nowhere: a miss
        return {"pointing_game": {"cam": _rate(r.hit, d), "random": _rate(r.random_hit, d), "n": int(d.sum()),
                                  "empty_maps": int((d & ~r.hit_defined).sum())},
                "evidence_energy": {"cam": am.nan_stats(r.evidence_share[sel]),
                                    "random": am.nan_stats(r.random_evidence_share[sel])},
                "sky_energy": {"cam": am.nan_stats(r.sky_share[sel & has_sky]),
                               "random": am.nan_stats(r.random_sky_share[sel & has_sky])},
                "sky_energy_predicted": am.nan_stats(r.sky_share_predicted[sel & has_sky])}

    out = {"available": True, "images": len(labels), "with_evidence_mask": int(has_ev.sum()),
           "with_sky_mask": int(has_sky.sum()), "without_masks": int((~has_ev).sum()),
           "tolerance_px": am.pointing_tolerance(size),
           "evidence_area": float(ev[has_ev].mean()), "sky_area": float(sky[has_sky].mean()) if has_sky.any() else None,
           **block(has_ev), "per_class": {}}
    for ci, c in enumerate(classes):
        out["per_class"][c] = block(has_ev & (labels == ci))
    return out


def _faithfulness(r: amod.PassResult) -> dict:
    steps = r.deletion.shape[1] - 1
    out = {"steps": steps, "fractions": np.linspace(0, 1, steps + 1).tolist(), "n": len(r.deletion),
           "deletion_baseline": "ImageNet mean colour (zero after normalisation)",
           "insertion_baseline": "Gaussian blur of the image (sigma = side / 16)",
           "explained_class": "predicted"}
    for name in ("deletion", "insertion", "random_deletion", "random_insertion"):
        curves = getattr(r, name)
        out[name] = {"curve": curves.mean(axis=0).tolist(), "auc": am.nan_stats(am.curve_area(curves))}
    return out


def _analyse_model(m: _Model, index, samples, *, split, method, device, cancel, ticker, entry: Path) -> dict:
    from geocam_gui.core.data import cache

    classes = list(index.classes)
    decoded = cache.decoded_split(samples, m.image_size, classes=classes, cancel=cancel,
                                  progress=lambda d, t: ticker.say(f"{m.key}: decoding images {d}/{t}"))
    ok = np.flatnonzero(np.asarray(decoded.ok, bool))
    if ok.size == 0:
        raise DataError(f"None of the {len(samples)} images of the {split!r} split could be decoded.")
    ticker.tick(f"{m.key}: images decoded")
    kept = [samples[i] for i in ok]
    images = np.asarray(decoded.images[ok])
    labels = np.asarray(decoded.labels, np.int64)[ok]
    ev, sky, has_ev, has_sky = load_masks([s.path for s in kept], m.image_size)
    parts, legend = ak.load_parts(index, [s.path for s in kept], m.image_size)
    r = amod.model_pass(m.model, m.name, images, labels, method=method, evidence=ev, sky=sky, has_evidence=has_ev,
                        has_sky=has_sky, device=device, cancel=cancel, tick=lambda t: ticker.tick(t), parts=parts,
                        n_kinds=len(legend or []))
    pred = r.logits.argmax(1)
    n_s = min(SANITY_IMAGES, len(kept))
    sanity = amod.sanity_cascade(m.model, m.name, images[:n_s], labels[:n_s], method=method, device=device,
                                 cancel=cancel, tick=lambda t: ticker.tick(t))
    elements = mine_elements(r.peaks, kept, labels, classes, title=MODEL_LABELS[m.name], out_dir=entry,
                             stem="elements")
    ticker.tick(f"{m.key}: discriminative elements")
    for e in elements.values():
        if e["mosaic"]:
            e["mosaic"] = Path(e["mosaic"]).name
    arrays = dict(agreement_maps=r.agreement_maps, paths=np.array([s.path for s in kept]), pred=pred,
                  labels=labels)
    atomic_write(entry / "arrays.npz", to_file_object(np.savez_compressed, **arrays), fsync=False)
    return {
        "model": m.name, "label": MODEL_LABELS[m.name], "image_size": m.image_size,
        "layer_shape": list(r.layer_shape), "images": len(samples), "decoded": len(kept),
        "skipped": [[p, why] for p, why in decoded.errors],
        "accuracy": ab.accuracy_of(pred, labels, classes),
        "localisation": _localisation(r, labels, has_ev, has_sky, ev, sky, classes, m.image_size),
        "map_area": {"level": 0.5, **am.nan_stats(r.half_area)},  # selectivity; needs no mask
        "kinds": ak.summary(r.kind_hit, r.kind_energy, parts, labels, classes, legend),
        "faithfulness": _faithfulness(r), "sanity": sanity, "elements": elements,
        "sky_congruence": ab.sky_congruence(kept, labels, pred, ab.usual_sky(index)),
    }


def _model_part(m: _Model, index, samples, *, split, method, limit, device, cancel, ticker, units,
                use_cache) -> tuple[dict, dict]:
    """The cached (or freshly computed) report part of one model and its arrays."""
    root = paths.cache_dir() / "analysis"
    entry = root / _entry_key(m, index, split, method, limit)
    if use_cache and (entry / "result.json").is_file() and (entry / "arrays.npz").is_file():
        try:
            part = json.loads((entry / "result.json").read_text(encoding="utf-8"))
            with np.load(entry / "arrays.npz") as z:
                arrays = {k: z[k] for k in z.files}
            ticker.tick(f"{m.key}: from the cache", units)
            part["cached"] = True
            return _absolute(part, entry), arrays
        except (OSError, ValueError, KeyError):
            shutil.rmtree(entry, ignore_errors=True)
    tmp = root / f".{entry.name}.tmp-{os.getpid()}-{id(m)}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        part = finite_or_none(_analyse_model(m, index, samples, split=split, method=method, device=device,
                                     cancel=cancel, ticker=ticker, entry=tmp))
        atomic_write(tmp / "result.json", json.dumps(part), fsync=False)  # the entry folder is renamed below
        publish_folder(tmp, entry)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    with np.load(entry / "arrays.npz") as z:
        arrays = {k: z[k] for k in z.files}
    part["cached"] = False
    return _absolute(part, entry), arrays


def _absolute(part: dict, entry: Path) -> dict:
    for e in part.get("elements", {}).values():
        if e.get("mosaic"):
            e["mosaic"] = str(entry / Path(e["mosaic"]).name)
    return part


def agreement(keys: list[str], arrays: list[dict]) -> dict:
    """IoU of the top-20 % regions and Spearman correlation of the true-class maps, per pair of
    models, on the images both analysed (maps at ``AGREEMENT_SIZE``)."""
    pairs = []
    for a in range(len(keys)):
        for b in range(a + 1, len(keys)):
            pa = {str(p): i for i, p in enumerate(arrays[a]["paths"])}
            common = [(pa[str(p)], j) for j, p in enumerate(arrays[b]["paths"]) if str(p) in pa]
            ia = np.array([i for i, _ in common], int)
            ib = np.array([j for _, j in common], int)
            ma = arrays[a]["agreement_maps"][ia].astype(np.float64)
            mb = arrays[b]["agreement_maps"][ib].astype(np.float64)
            pairs.append({"a": keys[a], "b": keys[b], "n": len(common),
                          "iou_top20": am.nan_stats(am.iou(am.top_fraction(ma, TOP_FRACTION),
                                                           am.top_fraction(mb, TOP_FRACTION))) if common else am.nan_stats([]),
                          "spearman": am.nan_stats(am.spearman(ma, mb)) if common else am.nan_stats([])})
    return {"keys": keys, "top_fraction": TOP_FRACTION, "size": amod.AGREEMENT_SIZE, "pairs": pairs}


def _bias(models: list[_Model], index, split_limit, bias_sets, *, device, cancel, ticker, parts) -> dict:
    if bias_sets is not None:
        sets = [{"name": "test", "test_sky_bias": None, "test_layout_bias": None, "index": index}]
        sets += [{"name": str(k), "test_sky_bias": None, "test_layout_bias": None, "index": v}
                 for k, v in bias_sets.items()]
    else:
        def gen_progress(done, total):
            if cancel is not None and cancel():
                raise Cancelled("The analysis was cancelled.")
            if ticker.progress is not None and (done % 50 == 0 or done == total):
                ticker.progress(ticker.done, ticker.total, f"generating a sky-probe test set: {done}/{total} images")
        sets = ab.probe_sets(index, progress=gen_progress, cancel=cancel)
    congruence = {m.key: p.get("sky_congruence") for m, p in zip(models, parts)}
    if not sets:
        return {"available": False, "sky_congruence": congruence,
                "reason": "The data is not a GeoCAM demo set, so there are no sky-probe test sets."}
    rows = []
    for s in sets:
        row = {"name": s["name"], "test_sky_bias": s["test_sky_bias"], "test_layout_bias": s.get("test_layout_bias"),
               "accuracy": {}, "n": 0}
        samples = select_samples(s["index"].split("test"), split_limit, list(index.classes))
        for m in models:
            acc = _probe_accuracy(m, s["index"], samples, device=device, cancel=cancel)
            row["accuracy"][m.key], row["n"] = acc["accuracy"], acc["n"]
            ticker.tick(f"{m.key}: sky probe '{s['name']}'")
        rows.append(row)
    params = ab.demo_parameters(index)

    def reliance(key: str, as_trained: float, flipped: float) -> dict:  # accuracy as trained - flipped
        hi, lo = ({r[key]: r for r in rows if r[key] is not None}.get(q) for q in (as_trained, flipped))
        ok = params and bias_sets is None and hi and lo and hi is not lo and as_trained != flipped
        return {m.key: (hi["accuracy"][m.key] or 0) - (lo["accuracy"][m.key] or 0) for m in models} if ok else {}

    sky = reliance("test_sky_bias", float(params["sky_bias"]), 1.0 - float(params["sky_bias"])) if params else {}
    layout = reliance("test_layout_bias", float(params["layout_bias"]), -float(params["layout_bias"])) if params else {}
    return {"available": True, "params": params, "sets": rows, "sky_reliance": sky, "layout_reliance": layout,
            "sky_congruence": congruence}


def _probe_accuracy(m: _Model, data, samples, *, device, cancel) -> dict:
    from geocam_gui.core.data import cache

    key = hashlib.sha256(json.dumps([ANALYSIS_VERSION, m.stamp, [s.path for s in samples],
                                     cache.cache_key(samples, m.image_size)]).encode()).hexdigest()[:32]
    f = paths.cache_dir() / "analysis" / "bias" / f"{key}.json"
    if f.is_file():
        try:
            return json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pass
    if not samples:
        return {"accuracy": None, "n": 0}
    decoded = cache.decoded_split(samples, m.image_size, classes=list(data.classes), cancel=cancel)
    ok = np.flatnonzero(np.asarray(decoded.ok, bool))
    pred = ab.predict(m.model, np.asarray(decoded.images[ok]), device, cancel)
    acc = ab.accuracy_of(pred, np.asarray(decoded.labels)[ok], list(data.classes))
    out = {"accuracy": acc["accuracy"], "n": acc["n"]}
    atomic_write(f, json.dumps(out), fsync=False)  # a cache entry
    return out


def run_analysis(checkpoints: list, index: DatasetIndex, *, split: str = "test", method: str = "gradcam",
                 limit: int | None = None, progress: Progress = None, cancel: Callable[[], bool] | None = None,
                 bias_sets: dict | None = None, device: str = "auto", use_cache: bool = True) -> dict:
    """Analyse every checkpoint on ``index``'s ``split`` (see the module docstring).

    ``progress(done, total, text)`` is called as work advances; ``cancel()`` returning True
    stops between batches with ``Cancelled``. ``bias_sets`` (name -> DatasetIndex, each evaluated
    on its ``test`` split) replaces the sky-probe sets generated for a demo set; ``{}`` means none. Raises ``BadArgument`` for bad arguments or classes that do not
    match, ``DataError`` for a split without images.
    """
    if split not in SPLITS:
        raise BadArgument(f"Unknown split {split!r}: choose one of {', '.join(SPLITS)}.")
    if method not in METHODS:
        raise BadArgument(f"Unknown CAM method {method!r}: choose one of {', '.join(METHODS)}.")
    if limit is not None and (isinstance(limit, bool) or int(limit) < 1):
        raise BadArgument(f"The image limit must be at least 1, got {limit}.")
    limit = None if limit is None else int(limit)
    dev = resolve_device(device)
    samples = select_samples(index.split(split), limit, list(index.classes))
    if not samples:
        raise BadData(f"The {split!r} split of this data has no images to analyse.")
    models = _load_models(checkpoints, index, dev)
    per_model = [2 + math.ceil(len(samples) / amod.CAM_BATCH) + len(amod.cascade_groups(m.model)) for m in models]
    ticker = _Ticker(progress, sum(per_model) + 4 * len(models) + 1)
    parts, arrays = [], []
    for m, units in zip(models, per_model):
        part, arr = _model_part(m, index, samples, split=split, method=method, limit=limit, device=dev,
                                cancel=cancel, ticker=ticker, units=units, use_cache=use_cache)
        part.update(key=m.key, checkpoint=str(m.path), chance=chance_from_metrics(part["accuracy"]))
        parts.append(part)
        arrays.append(arr)
    agree = agreement([m.key for m in models], arrays)
    bias = _bias(models, index, limit, bias_sets, device=dev, cancel=cancel, ticker=ticker, parts=parts)
    ticker.tick("done", ticker.total)
    return finite_or_none({
        "format": REPORT_FORMAT, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "data": {"roots": list(index.roots), "layout": index.layout, "fingerprint": index.fingerprint(),
                 "classes": list(index.classes), "split": split, "images": len(samples)},
        "method": method, "limit": limit,
        "settings": {"sanity_images": SANITY_IMAGES, "faithfulness_steps": amod.FAITHFULNESS_STEPS,
                     "pointing_tolerance": f"{am.POINTING_TOLERANCE:.4f} of the image side",
                     "patch_fraction": amod.PATCH_FRACTION, "agreement_size": amod.AGREEMENT_SIZE},
        "models": parts, "agreement": agree, "bias": bias,
    })
