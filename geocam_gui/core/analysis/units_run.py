"""``run_units``: one checkpoint, one layer, one split -> what each unit detects, cached.

The result (JSON-serialisable, ``UNITS_FORMAT``) holds, per unit, its top-k images with the
peak and the receptive-field box around it, its threshold (top-0.5 % quantile, with the
quantile's error bound), and on data with label maps (``dissection``) its IoU with every concept,
its best concept and whether it is a detector (IoU > 0.04); per model the detector count, the
unique concepts, the count per concept, an IoU ranking per concept, each concept's share of the
labelled pixels and the largest IoU that share allows with a 0.5 % mask (``0.005 / share``);
and, unless ``random_check=False``, the same counts for the model with every layer
re-initialised. Without label maps, ``dissection.available`` is False and ``reason`` says why.

Everything lives in ``paths.cache_dir()/"units"/<key>/`` (``result.json``, ``filters.png``,
``mosaics/unit_NNNN.png``: the unit's top-k tiles in a row, each the receptive-field box around
the peak with the region above the unit's threshold bright and the rest dimmed). The key hashes
the checkpoint file (path, size, mtime), the data fingerprint, the label maps' sizes and times,
the split, layer, k, limit and ``UNITS_VERSION``; an entry is written to a temporary folder
and renamed into place.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from geocam_gui.core import paths
from geocam_gui.core.analysis import dissection as nd
from geocam_gui.core.analysis import units as un
from geocam_gui.core.analysis.run import SPLITS, select_samples
from geocam_gui.core.checkpoints import checkpoint_stamp
from geocam_gui.core.validate import finite_or_none
from geocam_gui.core.checkpoints import load_checkpoint
from geocam_gui.core.device import resolve_device
from geocam_gui.core.files import publish_folder
from geocam_gui.core.errors import BadArgument, DataError
from geocam_gui.core.models import MODEL_LABELS

UNITS_VERSION = "1"
UNITS_FORMAT = "geocam-units/1"
TILE = 72
GAP = 3
DIM = 0.3
Progress = Callable[[int, int, str], None] | None


def _labels_stamp(image_paths: list[str]) -> str:
    h = hashlib.sha256()
    for p in image_paths:
        try:
            st = nd.parts_path(p).stat()
            h.update(f"{p}:{st.st_size}:{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p}:-\n".encode())
    return h.hexdigest()[:16]


def entry_key(stamp: str, fingerprint: str, labels: str, split: str, layer: str, top: int, limit, random_check) -> str:
    raw = json.dumps([UNITS_VERSION, stamp, fingerprint, labels, split, layer, top, limit, bool(random_check)])
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def run_units(checkpoint, index, *, split: str = "test", layer: str | None = None, top: int = 9,
              limit: int | None = None, device: str = "auto", random_check: bool = True,
              progress: Progress = None, cancel: Callable[[], bool] | None = None, use_cache: bool = True) -> dict:
    """Scan (and on labelled data dissect) ``layer`` of ``checkpoint`` over ``index``'s ``split``.

    ``layer``: a module name (``units.layer_choices``); default the model's CAM layer.
    ``progress(done, total, text)``; ``cancel()`` True stops between batches (``Cancelled``).
    The returned dict's ``entry`` is the cache folder holding the mosaics and ``filters.png``.
    """
    if split not in SPLITS:
        raise BadArgument(f"Unknown split {split!r}: choose one of {', '.join(SPLITS)}.")
    if isinstance(top, bool) or not 1 <= int(top) <= 64:
        raise BadArgument(f"--top must be between 1 and 64, got {top}.")
    if limit is not None and (isinstance(limit, bool) or int(limit) < 1):
        raise BadArgument(f"The image limit must be at least 1, got {limit}.")
    top, limit = int(top), None if limit is None else int(limit)
    ckpt = Path(checkpoint)
    if not any(q.is_file() for q in (ckpt, ckpt.with_suffix(".json"), ckpt.with_suffix(".safetensors"))):
        raise BadArgument(f"Checkpoint {ckpt} does not exist.")
    dev = resolve_device(device)
    loaded = load_checkpoint(ckpt, device="cpu", expect_classes=list(index.classes))
    model, name, size = loaded.model, loaded.meta["model"], int(loaded.meta["image_size"])
    layer = layer or un.cam_layer_name(model, name)
    un.get_layer(model, layer)
    samples = select_samples(index.split(split), limit, list(index.classes))
    if not samples:
        raise DataError(f"The {split!r} split of this data has no images.")
    legend, why = nd.read_legend(index.roots)
    key = entry_key(checkpoint_stamp(ckpt), index.fingerprint(), _labels_stamp([s.path for s in samples]) if legend else "-",
                    split, layer, top, limit, random_check and legend is not None)
    root = paths.cache_dir() / "units"
    entry = root / key
    if use_cache and (entry / "result.json").is_file():
        try:
            result = json.loads((entry / "result.json").read_text(encoding="utf-8"))
            if progress is not None:
                progress(1, 1, f"{name}: from the cache")
            return {**result, "entry": str(entry), "cached": True}
        except (OSError, ValueError):
            shutil.rmtree(entry, ignore_errors=True)
    tmp = root / f".{key}.tmp-{os.getpid()}-{id(model)}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "mosaics").mkdir(parents=True)
    try:
        result = _compute(model, name, size, layer, index, samples, split=split, top=top, limit=limit, dev=dev,
                          legend=legend, why=why, random_check=random_check, progress=progress, cancel=cancel,
                          out=tmp)
        result["checkpoint"] = str(ckpt)
        (tmp / "result.json").write_text(json.dumps(result), encoding="utf-8")
        publish_folder(tmp, entry)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {**result, "entry": str(entry), "cached": False}


def _compute(model, name, size, layer, index, samples, *, split, top, limit, dev, legend, why, random_check,
             progress, cancel, out: Path) -> dict:
    from geocam_gui.core.data import cache

    classes = list(index.classes)
    decoded = cache.decoded_split(samples, size, classes=classes, cancel=cancel)
    ok = np.flatnonzero(np.asarray(decoded.ok, bool))
    if ok.size == 0:
        raise DataError(f"None of the {len(samples)} images of the {split!r} split could be decoded.")
    kept = [samples[i].path for i in ok]
    images = decoded.images if ok.size == len(samples) else _Rows(decoded.images, ok)
    stages = 2 if (legend and random_check) else 1
    label = MODEL_LABELS.get(name, name)

    def tick_for(stage: int, text: str):
        def tick(done, total):
            if progress is not None:
                progress(stage * total + done, stages * total, f"{label} {layer}: {text} {done}/{total}")
        return tick

    labels = nd.LabelSource(kept, size, legend) if legend else None
    if labels is not None:
        if progress is not None:
            progress(0, 1, f"{label}: reading the label maps")
        labels.prepare(cancel)
    scan = un.scan_layer(model, layer, images, k=top, labels_for=labels, device=dev, cancel=cancel,
                         tick=tick_for(0, "scan"))
    rf = un.receptive_field(model, layer)
    dissection: dict = {"available": False, "reason": why}
    if labels is not None and scan.ious is not None and scan.labelled:
        dissection = {"available": True, "labelled_images": scan.labelled, "quantile": nd.QUANTILE,
                      "kinds": legend, **_areas(labels, scan), **nd.summarise(scan.ious, legend)}
        if random_check:
            rnd = un.scan_layer(un.randomised_copy(model), layer, images, k=1, device=dev, cancel=cancel,
                                labels_for=labels, tick=tick_for(1, "randomised model"))
            s = nd.summarise(rnd.ious, legend)
            dissection["randomised"] = {k: s[k] for k in ("detectors", "unique_concepts", "by_concept")}
    elif labels is not None:
        dissection["reason"] = (f"None of the {len(kept)} images has a usable label map"
                                + (f" (e.g. {labels.problems[0][1]})." if labels.problems else "."))
    if labels is not None:
        dissection["missing_label_maps"] = labels.missing
        dissection["bad_label_maps"] = [list(p) for p in labels.problems[:50]]
    Image.fromarray(un.filter_grid(model)).save(out / "filters.png")
    units = _units(scan, kept, images, rf, size, dissection, out / "mosaics", cancel)
    return finite_or_none({
        "format": UNITS_FORMAT, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": name, "label": label, "image_size": size, "layer": layer, "layer_shape": list(scan.shape),
        "units_count": scan.units, "receptive_field": rf, "top": top, "split": split, "limit": limit,
        "data": {"roots": list(index.roots), "fingerprint": index.fingerprint(), "classes": list(index.classes)},
        "images": len(samples), "decoded": len(kept), "skipped": [[p, w] for p, w in decoded.errors],
        "stats_bytes": scan.stats_bytes, "dissection": dissection, "units": units,
        "filters": "filters.png",
    })


class _Rows:
    """The rows ``ok`` of an array, indexable by slices and index arrays (no copy of the rest)."""

    def __init__(self, arr, rows):
        self.arr, self.rows = arr, np.asarray(rows)

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return np.asarray(self.arr[self.rows[i]])


def _areas(labels: nd.LabelSource, scan: un.LayerScan) -> dict:
    """Each concept's share of the labelled pixels, the largest IoU a mask of the units' mean
    share can reach on it (``mask / concept`` when smaller), and that mean mask share."""
    total = float(scan.label_pixels.sum()) or 1.0
    mask = float(scan.mask_pixels.mean()) / total
    share = {k: float(v) / total for k, v in zip(labels.legend, scan.label_pixels)}
    return {"concept_share": {k: v for k, v in list(share.items())[1:]},
            "max_iou": {k: (min(1.0, mask / v, v / mask) if v > 0 and mask > 0 else 0.0)
                        for k, v in list(share.items())[1:]},
            "mask_share": mask}


def box_of(peak, shape, rf: dict, size: int) -> list[float]:
    """[x0, y0, x1, y1] as fractions of the image: the receptive field of the unit at ``peak``
    (layer coordinates), clipped to the image."""
    cy = rf["start"] + peak[0] * rf["jump"]
    cx = rf["start"] + peak[1] * rf["jump"]
    half = rf["size"] / 2
    return [max(0.0, (cx - half) / size), max(0.0, (cy - half) / size),
            min(1.0, (cx + half) / size), min(1.0, (cy + half) / size)]


def tile(image: np.ndarray, unit_map: np.ndarray, threshold: float, box: list[float]) -> np.ndarray:
    """One mosaic tile: the region of ``image`` (S, S, 3) above ``threshold`` in the unit's map
    (upsampled bilinearly) bright, the rest dimmed, cropped to ``box``, resized to TILE."""
    S = image.shape[0]
    up = F.interpolate(torch.from_numpy(unit_map.astype(np.float32))[None, None], size=(S, S), mode="bilinear",
                       align_corners=False)[0, 0].numpy()
    mask = (up > threshold)[..., None]
    shown = np.where(mask, image, image * DIM).astype(np.uint8)
    x0, y0 = int(box[0] * S), int(box[1] * S)
    x1, y1 = max(x0 + 1, int(round(box[2] * S))), max(y0 + 1, int(round(box[3] * S)))
    return np.asarray(Image.fromarray(shown[y0:y1, x0:x1]).resize((TILE, TILE), Image.Resampling.BILINEAR))


def _units(scan: un.LayerScan, kept, images, rf, size, dissection, mosaics: Path, cancel) -> list[dict]:
    out = []
    top = scan.top
    for u in range(scan.units):
        if u % 32 == 0:
            un._check(cancel)
        entries, tiles = [], []
        for j in range(top.image.shape[1]):
            i = int(top.image[u, j])
            if i < 0:
                continue
            box = box_of(top.peak[u, j], scan.shape, rf, size)
            h, w = scan.shape
            entries.append({"path": kept[i], "score": float(top.score[u, j]), "peak": top.peak[u, j].tolist(),
                            "center": [(top.peak[u, j][0] + 0.5) / h, (top.peak[u, j][1] + 0.5) / w], "box": box})
            tiles.append(tile(np.asarray(images[i]), top.maps[u, j].astype(np.float32), scan.thresholds[u], box))
        mosaic = np.full((TILE, max(1, len(tiles)) * (TILE + GAP) - GAP, 3), 255, np.uint8)
        for j, t in enumerate(tiles):
            mosaic[:, j * (TILE + GAP) : j * (TILE + GAP) + TILE] = t
        fname = f"unit_{u:04d}.png"
        Image.fromarray(mosaic).save(mosaics / fname)
        row = {"unit": u, "threshold": float(scan.thresholds[u]), "threshold_error": float(scan.threshold_error[u]),
               "top": entries, "mosaic": f"mosaics/{fname}", "concept": None, "iou": None}
        if dissection.get("available"):
            ious = scan.ious[u]
            row["ious"] = {k: float(v) for k, v in zip(dissection["kinds"][1:], ious[1:])}
            row["concept"] = dissection["best"][u]
            row["best_kind"] = dissection["kinds"][int(np.argmax(ious))] if ious.max() > 0 else None
            row["iou"] = float(dissection["best_iou"][u])
        out.append(row)
    dissection.pop("best", None)
    dissection.pop("best_iou", None)
    return out
