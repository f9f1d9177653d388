"""What the viewer and the browser ask of trained models, without Qt.

* :class:`ModelStore` loads checkpoints once (keyed by file and modification time) and hands
  out ready models; it is used from one worker thread at a time.
* :func:`explain_image` computes, for one image, every class's raw CAM and the class
  probabilities of each model - the expensive part, done off the GUI thread.
* :func:`display_maps` turns raw maps into [0, 1] maps for the chosen class of each pane,
  per map or on one shared scale - the cheap part, redone on every toggle.
* :func:`predict_samples` runs a checkpoint over many images (the browser's prediction
  columns and "confidently wrong" sorting).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from geocam_gui.core.errors import Cancelled

PREDICTED = "predicted"
GROUND_TRUTH = "ground truth"


@dataclass
class PaneResult:
    """One model's explanation of one image (all classes)."""

    model_name: str
    checkpoint: str
    classes: list[str]
    raw: np.ndarray  # (C, h, w) float32, raw CAM of every class, before any normalisation
    probs: np.ndarray  # (C,) softmax probabilities
    image_size: int
    method: str

    @property
    def predicted(self) -> int:
        return int(np.argmax(self.probs))


@dataclass
class ImageExplanation:
    """The three panes' results for one image, plus the picture they are drawn on."""

    path: str
    label: str | None
    image: np.ndarray  # (H, W, 3) uint8 display image (whole photo, aspect kept)
    panes: dict[str, PaneResult] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


class ModelStore:
    """Loads checkpoints lazily and keeps them while their file is unchanged."""

    def __init__(self, device: str | torch.device = "cpu"):
        from geocam_gui.core.device import resolve_device

        self.device = resolve_device(device)
        self._models: dict[str, tuple[float, object]] = {}

    def get(self, path: str | os.PathLike):
        """The ``LoadedCheckpoint`` of ``path`` (model in eval mode on the store's device)."""
        from geocam_gui.core.checkpoints import load_checkpoint

        key = str(Path(path))
        stamp = _stamp(key)
        hit = self._models.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        loaded = load_checkpoint(key, device=self.device)
        loaded.model.eval()
        self._models[key] = (stamp, loaded)
        return loaded

    def forget(self, keep: Sequence[str] = ()) -> None:
        keep_set = {str(Path(p)) for p in keep}
        for key in list(self._models):
            if key not in keep_set:
                del self._models[key]


def _stamp(path: str) -> float:
    json_path = Path(path).with_suffix(".json")
    try:
        return json_path.stat().st_mtime_ns if json_path.exists() else Path(path).stat().st_mtime_ns
    except OSError:
        return -1.0


def display_image(path: str | os.PathLike, max_side: int = 640) -> np.ndarray:
    """The whole photo, EXIF-rotated, RGB, scaled down so its longer side is <= max_side."""
    from PIL import Image

    from geocam_gui.core.data.images import load_rgb

    img = load_rgb(path)
    scale = max_side / max(img.size)
    if scale < 1:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8).copy()


def explain_image(
    path: str | os.PathLike,
    checkpoints: Mapping[str, str | None],
    store: ModelStore,
    *,
    method: str = "gradcam",
    label: str | None = None,
) -> ImageExplanation:
    """Every class's raw CAM and the probabilities of each model for one image file.

    ``checkpoints`` maps a pane name (shallow, vgg11, resnet18) to a checkpoint path or None.
    A checkpoint that fails to load or run is reported in ``errors`` and the others go on.
    """
    from geocam_gui.core.explain.cam import explain
    from geocam_gui.core.data.images import load_resized

    result = ImageExplanation(path=str(path), label=label, image=display_image(path))
    for name, ckpt in checkpoints.items():
        if not ckpt:
            continue
        try:
            loaded = store.get(ckpt)
            meta = loaded.meta
            size = int(meta.get("image_size", 64))
            pixels = load_resized(path, size)[None]
            cam = explain(loaded.model, meta.get("model", name), pixels, method=method, normalize="none",
                          device=store.device)
            logits = torch.as_tensor(cam.logits).float()
            probs = torch.softmax(logits, dim=1)[0].cpu().numpy()
            raw = torch.as_tensor(cam.raw)[0].float().cpu().numpy()
            result.panes[name] = PaneResult(
                model_name=meta.get("model", name),
                checkpoint=str(ckpt),
                classes=list(meta["classes"]),
                raw=raw.astype(np.float32),
                probs=probs.astype(np.float32),
                image_size=size,
                method=method,
            )
        except Exception as exc:  # noqa: BLE001 - shown in the pane; the other panes go on
            from geocam_gui.core.errors import GeoCamError

            result.errors[name] = str(exc) if isinstance(exc, GeoCamError) else f"{type(exc).__name__}: {exc}"
    return result


def class_index(pane: PaneResult, choice: str, label: str | None) -> int | None:
    """Which class a pane shows for a toggle: 'predicted', 'ground truth' or a class name."""
    if choice == PREDICTED:
        return pane.predicted
    if choice == GROUND_TRUTH:
        return pane.classes.index(label) if label in pane.classes else None
    return pane.classes.index(choice) if choice in pane.classes else None


def display_maps(
    explanation: ImageExplanation, choice: str, *, shared: bool = False
) -> dict[str, tuple[int, np.ndarray, float]]:
    """For each pane: (class index, map in [0, 1] at the layer resolution, scale).

    Per map (default): ReLU, then min-max of that map, as grad-cam does; a constant map is
    all zeros. Shared: ReLU, then every map is divided by the largest value of all panes and
    all classes, so heat is comparable across the panes and the class toggles.
    """
    out: dict[str, tuple[int, np.ndarray, float]] = {}
    chosen: dict[str, tuple[int, np.ndarray]] = {}
    for name, pane in explanation.panes.items():
        idx = class_index(pane, choice, explanation.label)
        if idx is None:
            continue
        chosen[name] = (idx, np.maximum(pane.raw[idx], 0.0))
    if shared:
        peak = max((float(np.maximum(p.raw, 0).max()) for p in explanation.panes.values()), default=0.0)
        for name, (idx, m) in chosen.items():
            out[name] = (idx, (m / peak) if peak > 0 else np.zeros_like(m), peak)
        return out
    for name, (idx, m) in chosen.items():
        lo, hi = float(m.min()), float(m.max())
        span = hi - lo
        norm = (m - lo) / span if span > 0 and span > 1e-6 * max(abs(hi), abs(lo)) else np.zeros_like(m)
        out[name] = (idx, norm.astype(np.float32), hi)
    return out


def predict_samples(
    checkpoint: str | os.PathLike,
    samples: Sequence,
    *,
    store: ModelStore | None = None,
    batch_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> np.ndarray:
    """Class probabilities (N, C) of a checkpoint for ``samples``; NaN rows for unreadable files."""
    from geocam_gui.core.data.cache import decoded_split
    from geocam_gui.core.models import preprocess

    store = store or ModelStore("cpu")
    loaded = store.get(checkpoint)
    classes = list(loaded.meta["classes"])
    size = int(loaded.meta.get("image_size", 64))
    arrays = decoded_split(list(samples), size, classes=classes, cancel=cancel)
    n = len(samples)
    probs = np.full((n, len(classes)), np.nan, dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            if cancel is not None and cancel():
                raise Cancelled("Prediction cancelled.")
            stop = min(n, start + batch_size)
            x = preprocess(np.asarray(arrays.images[start:stop]), device=store.device)
            p = torch.softmax(loaded.model(x).float(), dim=1).cpu().numpy()
            ok = np.asarray(arrays.ok[start:stop])
            probs[start:stop][ok] = p[ok]
            if progress is not None:
                progress(stop, n)
    return probs
