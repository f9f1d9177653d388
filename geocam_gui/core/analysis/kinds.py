"""Per-kind localisation on the demo's label maps: which kinds of object a model's maps point at.

For every image with a label map (``_parts.png``, see core/data/demo) and every kind drawn in it
(bridge, stairway, railing, signboard, glyph, sky, car, ...): the pointing game on that kind's
pixels (the map's maximum within the usual tolerance of the kind) and the share of the map's
energy on them. Summaries are per class and kind, with the kind's mean area as the reference a
uniform map would score on energy. A constant map points nowhere (a miss), as in the pointing
game on the evidence mask.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from geocam_gui.core.analysis import measures as am
from geocam_gui.core.data import demo as synthetic
from geocam_gui.core.errors import DataError

MAX_KINDS = 256


def load_parts(index, image_paths: list[str], size: int) -> tuple[np.ndarray | None, list[str] | None]:
    """((N, size, size) uint8 label maps resized with nearest neighbours, 0 where missing; the
    legend), or (None, None) for data that is not a demo set with a parts legend."""
    roots = list(getattr(index, "roots", []) or [])
    if len(roots) != 1 or not synthetic.is_demo_dir(roots[0]):
        return None, None
    try:
        legend = synthetic.parts_legend(roots[0])
    except DataError:
        return None, None
    parts = np.zeros((len(image_paths), size, size), np.uint8)
    for i, p in enumerate(image_paths):
        path = synthetic.mask_paths(p)["parts"]
        try:
            with Image.open(path) as im:
                if im.mode not in ("P", "L"):
                    continue
                arr = np.asarray(im.resize((size, size), Image.Resampling.NEAREST))
        except (OSError, ValueError):
            continue
        parts[i] = np.where(arr < len(legend), arr, 0)
    return parts, legend


def per_kind(maps: np.ndarray, parts: np.ndarray, n_kinds: int, tolerance: int) -> tuple[np.ndarray, np.ndarray]:
    """(hit, energy), each (B, n_kinds) float: 1.0/0.0 for the pointing game on each kind drawn in
    the image, the map's energy share on it; NaN where the kind is absent (and energy NaN for an
    all-zero map). Kind 0 (unlabelled) is never measured."""
    B = len(maps)
    hit = np.full((B, n_kinds), np.nan)
    energy = np.full((B, n_kinds), np.nan)
    for k in range(1, n_kinds):
        masks = parts == k
        present = masks.reshape(B, -1).any(axis=1)
        if not present.any():
            continue
        h, _ = am.pointing_game(maps[present], masks[present], tolerance)
        hit[present, k] = h.astype(float)
        energy[present, k] = am.energy_share(maps[present], masks[present])
    return hit, energy


def summary(kind_hit: np.ndarray | None, kind_energy: np.ndarray | None, parts: np.ndarray | None,
            labels: np.ndarray, classes: list[str], legend: list[str] | None) -> dict:
    """{"available", "legend", "per_class": {class: {kind: {"n", "hit", "energy",
    "area"}}}} over the images where each kind is drawn."""
    if kind_hit is None or parts is None or legend is None:
        return {"available": False, "reason": "The data has no per-kind label maps (only the demo set has them)."}
    area = (parts[..., None] == np.arange(len(legend))).mean(axis=(1, 2))  # (N, K)
    out = {"available": True, "legend": list(legend), "per_class": {}}
    for ci, c in enumerate(classes):
        sel = labels == ci
        rows = {}
        for k in range(1, len(legend)):
            present = sel & ~np.isnan(kind_hit[:, k])
            if not present.any():
                continue
            rows[legend[k]] = {"n": int(present.sum()), "hit": float(kind_hit[present, k].mean()),
                               "energy": am.nan_stats(kind_energy[present, k])["mean"],
                               "area": float(area[present, k].mean())}
        out["per_class"][c] = rows
    return out
