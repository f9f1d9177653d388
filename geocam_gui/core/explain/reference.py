"""A reference scale per model, so heat can be compared across architectures.

Raw CAM values are ``sum_c w_c * A_c`` at each model's own target layer: their size depends on
that layer's activation scale and on the head's weights, so a raw value of 2 means something
different for the shallow CNN, VGG11 and ResNet18. Dividing a model's map by a value typical
*for that model* makes them comparable: "how strong is this evidence, relative to what this
model usually shows for this class".

The reference is the ``q``-th percentile (99 by default) of the model's ReLU'd raw maps of each
class, over every layer-resolution pixel of a sample of the dataset (``reference_samples``: up
to 64 images of the validation split, else the test split, else any). ``cam_percentiles``
computes it with the same raw maps the viewer shows (``explain(..., normalize="none")``);
``display_maps(reference=...)`` divides by it and clips at 1.
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

import numpy as np

from geocam_gui.core.errors import BadArgument, GeoCamError

#: The percentile the viewer's comparable scale uses.
REFERENCE_Q = 99.0
#: At most this many images are explained to find a model's reference.
REFERENCE_IMAGES = 64


def reference_samples(samples: Sequence, limit: int = REFERENCE_IMAGES) -> tuple[str, list]:
    """(split name, up to ``limit`` samples) to compute a reference on: the ``val`` split, else
    ``test``, else all samples; evenly spread over the split's sorted paths, so the same dataset
    always gives the same images."""
    split, chosen = "all", list(samples)
    for name in ("val", "test"):
        part = [s for s in samples if getattr(s, "split", None) == name]
        if part:
            split, chosen = name, part
            break
    chosen.sort(key=lambda s: str(getattr(s, "path", s)))
    if len(chosen) > limit:
        picks = np.linspace(0, len(chosen) - 1, int(limit)).round().astype(int)
        chosen = [chosen[i] for i in picks]
    return split, chosen


def percentile_per_class(raw: np.ndarray, q: float = REFERENCE_Q) -> np.ndarray:
    """(C,) float64: the ``q``-th percentile of ``max(raw[:, c], 0)`` over images and pixels.

    ``raw``: (N, C, h, w) raw maps. NaN pixels are ignored; a class with no finite pixel gets 0.
    """
    a = np.asarray(raw, dtype=np.float64)
    if a.ndim != 4 or a.shape[0] == 0:
        raise BadArgument(f"Raw maps must be (N, C, h, w) with N >= 1, got shape {a.shape}.")
    if not 0.0 <= float(q) <= 100.0:
        raise BadArgument(f"A percentile must be between 0 and 100, got {q}.")
    out = np.zeros(a.shape[1], np.float64)
    for c in range(a.shape[1]):
        v = a[:, c].ravel()
        v = np.maximum(v[np.isfinite(v)], 0.0)
        if v.size:
            out[c] = float(np.percentile(v, q))
    return out


def cam_percentiles(
    checkpoint: str | os.PathLike,
    paths: Sequence[str | os.PathLike],
    store,
    *,
    method: str = "gradcam",
    q: float = REFERENCE_Q,
    batch_size: int = 16,
    cancel: Callable[[], bool] | None = None,
) -> dict:
    """The reference of a checkpoint: ``{"classes", "percentiles" (C,), "q", "images", "skipped",
    "method"}``; ``percentiles[c]`` is ``percentile_per_class`` of the raw maps of ``paths``.

    Images that cannot be read are skipped (counted); none readable raises ``GeoCamError``.
    ``store``: a ``ModelStore``; ``cancel`` is called between batches (it may raise to stop).
    """
    from geocam_gui.core.data.images import load_resized
    from geocam_gui.core.explain.cam import explain

    loaded = store.get(checkpoint)
    meta = loaded.meta
    size = int(meta.get("image_size", 64))
    name = meta.get("model")
    images, skipped = [], 0
    for p in paths:
        try:
            images.append(np.array(load_resized(p, size)))
        except (GeoCamError, OSError, ValueError):
            skipped += 1
    if not images:
        raise GeoCamError("None of the reference images could be read.")
    raws = []
    for start in range(0, len(images), batch_size):
        if cancel is not None:
            cancel()
        batch = np.stack(images[start:start + batch_size])
        cam = explain(loaded.model, name, batch, method=method, normalize="none", device=store.device)
        raws.append(np.asarray(cam.raw.float().numpy(), np.float32))
    return {
        "classes": list(meta["classes"]),
        "percentiles": percentile_per_class(np.concatenate(raws), q),
        "q": float(q),
        "images": len(images),
        "skipped": skipped,
        "method": method,
    }
