"""Discriminative elements, after Doersch et al. (2012) "What makes Paris look like Paris?".

For each model and class, the strongest CAM peaks of the correctly classified images are cut
out as square patches (``PATCH_FRACTION`` of the image side, from the original file at its own
resolution) and clustered by the target layer's feature vector under the peak (L2-normalised,
seeded k-means). A cluster whose patches all come from one place (``Sample.group``) is a
near-duplicate, not an element of the city, and is dropped. The rest are ranked by the number
of distinct places, then by size, and drawn as one mosaic per model and class: one row per
cluster, its size and place count on the left, the patches nearest the cluster centre on the
right. Every patch keeps its source image and its tile rectangle in the mosaic, so a viewer can
link a click back to the image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from geocam_gui.core.analysis import measures as am
from geocam_gui.core.analysis.model_pass import PATCH_FRACTION, SEED
from geocam_gui.core.errors import ImageError
from geocam_gui.core.files import atomic_write
from geocam_gui.core.data.images import load_rgb

TILE = 64
GAP = 4
LABEL_WIDTH = 104
HEADER = 22
TILES_PER_CLUSTER = 8
MAX_CLUSTERS = 8
MIN_PATCHES = 4


def cluster_count(n_patches: int) -> int:
    """k for ``n_patches`` patches: about one cluster per 6 patches, between 2 and MAX_CLUSTERS."""
    return int(min(MAX_CLUSTERS, max(2, round(n_patches / 6))))


def patch_box(cy: float, cx: float, fraction: float = PATCH_FRACTION) -> list[float]:
    """[x0, y0, x1, y1] as fractions of the image: a square of ``fraction`` of the side centred on
    the peak, shifted to stay inside the image."""
    half = fraction / 2
    cx = min(max(cx, half), 1 - half)
    cy = min(max(cy, half), 1 - half)
    return [cx - half, cy - half, cx + half, cy + half]


def _crop(path: str, box: list[float]) -> Image.Image:
    try:
        im = load_rgb(path)
    except ImageError:
        return Image.new("RGB", (TILE, TILE), (128, 128, 128))
    W, H = im.size
    px = (round(box[0] * W), round(box[1] * H), max(round(box[0] * W) + 1, round(box[2] * W)),
          max(round(box[1] * H) + 1, round(box[3] * H)))
    return im.crop(px).resize((TILE, TILE), Image.Resampling.BILINEAR)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow < 10.1
        return ImageFont.load_default()


def mine_elements(peaks: list[dict], samples: list, labels: np.ndarray, classes: list[str], *,
                  title: str, out_dir: Path, stem: str) -> dict:
    """Cluster the peaks of each class and write ``out_dir/<stem>_<class>.png`` mosaics.

    ``peaks``: dicts from ``analysis_model.model_pass`` (``i`` indexes ``samples``/``labels``).
    Returns ``{class: {"patches", "clusters": [...], "dropped_single_place", "mosaic"}}``; a
    class with fewer than ``MIN_PATCHES`` patches gets no clusters and no mosaic.
    """
    out: dict = {}
    out_dir.mkdir(parents=True, exist_ok=True)
    for ci, cls in enumerate(classes):
        mine = [p for p in peaks if int(labels[p["i"]]) == ci]
        entry: dict = {"patches": len(mine), "clusters": [], "dropped_single_place": 0, "mosaic": None}
        out[cls] = entry
        if len(mine) < MIN_PATCHES:
            continue
        X = np.stack([p["feature"] for p in mine]).astype(np.float64)
        assign, centres = am.kmeans(X, cluster_count(len(mine)), seed=SEED)
        clusters = []
        for j in range(len(centres)):
            members = [m for m, a in zip(mine, assign) if a == j]
            if not members:
                continue
            places = {samples[m["i"]].group for m in members}
            if len(places) < 2:
                entry["dropped_single_place"] += 1
                continue
            dist = [float(((m["feature"] - centres[j]) ** 2).sum()) for m in members]
            nearest = [members[k] for k in np.argsort(dist, kind="stable")[:TILES_PER_CLUSTER]]
            clusters.append({
                "size": len(members), "places": len(places),
                "mean_score": float(np.mean([m["score"] for m in members])),
                "patches": [{"path": samples[m["i"]].path, "group": samples[m["i"]].group,
                             "box": patch_box(m["y"], m["x"]), "score": float(m["score"])} for m in nearest],
            })
        clusters.sort(key=lambda c: (-c["places"], -c["size"], -c["mean_score"]))
        for rank, c in enumerate(clusters):
            c["id"] = rank + 1
        entry["clusters"] = clusters
        if clusters:
            path = out_dir / f"{stem}_{_safe(cls)}.png"
            _draw_mosaic(clusters, f"{title}: {cls}", path)
            entry["mosaic"] = str(path)
    return out


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text)


def _draw_mosaic(clusters: list[dict], title: str, path: Path) -> None:
    """One row per cluster; fills each patch's ``tile`` = [x, y, w, h] in mosaic pixels."""
    width = LABEL_WIDTH + TILES_PER_CLUSTER * (TILE + GAP) + GAP
    height = HEADER + len(clusters) * (TILE + GAP) + GAP
    canvas = Image.new("RGB", (width, height), (250, 250, 250))
    draw = ImageDraw.Draw(canvas)
    draw.text((GAP, 4), title, fill=(20, 20, 20), font=_font(13))
    small = _font(11)
    for r, c in enumerate(clusters):
        y = HEADER + GAP + r * (TILE + GAP)
        draw.text((GAP, y + 4), f"#{c['id']}", fill=(20, 20, 20), font=small)
        draw.text((GAP, y + 22), f"{c['size']} patches", fill=(60, 60, 60), font=small)
        draw.text((GAP, y + 40), f"{c['places']} places", fill=(60, 60, 60), font=small)
        for t, p in enumerate(c["patches"]):
            x = LABEL_WIDTH + GAP + t * (TILE + GAP)
            canvas.paste(_crop(p["path"], p["box"]), (x, y))
            p["tile"] = [x, y, TILE, TILE]
    atomic_write(path, lambda tmp: canvas.save(tmp, format="PNG"), fsync=False)  # a cache entry
