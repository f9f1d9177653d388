"""The one place core loads checkpoints for explanation and explains an image, without Qt.

The viewer, the export and the analysis all go through here, so "this exported file is what the
viewer shows" holds by construction rather than by two copies staying equal.

* :class:`ModelStore` loads checkpoints once (keyed by file and modification time) and hands
  out ready models (eval mode, on the store's device); used from one thread at a time.
* :func:`explain_image` computes, for one image, every class's raw CAM and the class
  probabilities of each model - the expensive part, done off the GUI thread. Models are keyed
  by whatever the caller names them (a model name, or an export's checkpoint key): core knows
  models and checkpoints, not the panes a window draws them in.
* :func:`display_maps` turns raw maps into [0, 1] maps for the chosen class of each model,
  per map or on one shared scale - the cheap part, redone on every toggle;
  :func:`full_size_maps` resizes them onto the photo, ready for ``render.overlay``.
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
class ModelExplanation:
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
    """Each model's explanation of one image (keyed as the caller named the checkpoints), the
    picture they are drawn on, and the error of each checkpoint that could not explain it."""

    path: str
    label: str | None
    image: np.ndarray  # (H, W, 3) uint8 display image (whole photo, aspect kept)
    models: dict[str, ModelExplanation] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


class ModelStore:
    """Loads checkpoints lazily and keeps them while their file is unchanged."""

    def __init__(self, device: str | torch.device = "cpu"):
        from geocam_gui.core.device import resolve_device

        self.device = resolve_device(device)
        self._models: dict[str, tuple[tuple, object]] = {}

    def get(self, path: str | os.PathLike, *, expect_classes: Sequence[str] | None = None):
        """The ``LoadedCheckpoint`` of ``path`` (model in eval mode on the store's device).

        ``expect_classes``: the class list it must have (``CheckpointError`` otherwise); it also
        names the classes of a plain state-dict file that carries none.
        """
        from geocam_gui.core.checkpoints import load_checkpoint

        key = str(Path(path))
        classes = list(expect_classes) if expect_classes is not None else None
        stamp = (_stamp(key), tuple(classes) if classes is not None else None)
        hit = self._models.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        import torch

        with torch.inference_mode(False):  # cached models must serve CAMs (gradients) later too
            loaded = load_checkpoint(key, device=self.device, expect_classes=classes)
        loaded.model.eval()
        self._models[key] = (stamp, loaded)
        return loaded

    def forget(self, keep: Sequence[str] = ()) -> None:
        """Drop every loaded checkpoint but those in ``keep``."""
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


DISPLAY_SIDE = 640


def display_image(path: str | os.PathLike, max_side: int | None = DISPLAY_SIDE) -> np.ndarray:
    """The whole photo, EXIF-rotated, RGB, scaled down so its longer side is <= max_side
    (``None``: at its native size, as exports draw it)."""
    from PIL import Image

    from geocam_gui.core.data.images import load_rgb

    img = load_rgb(path)
    scale = max_side / max(img.size) if max_side else 1.0
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
    max_side: int | None = DISPLAY_SIDE,
    strict: bool = False,
) -> ImageExplanation:
    """Every class's raw CAM and the probabilities of each model for one image file.

    ``checkpoints`` maps a key (a model name, or an export's checkpoint key) to a checkpoint
    path or None. Each model sees the photo squashed to its checkpoint's ``image_size`` (as in
    training); ``image`` is the whole photo (``max_side``: see ``display_image``). An image that
    cannot be decoded raises ``ImageError``. A checkpoint that fails to load or run is reported
    in ``errors`` and the others go on - or, with ``strict``, raises.
    """
    from geocam_gui.core.data.images import load_resized
    from geocam_gui.core.errors import GeoCamError
    from geocam_gui.core.explain.cam import explain

    result = ImageExplanation(path=str(path), label=label, image=display_image(path, max_side))
    squares: dict[int, np.ndarray] = {}
    for key, ckpt in checkpoints.items():
        if not ckpt:
            continue
        try:
            loaded = store.get(ckpt)
            meta = loaded.meta
            size = int(meta.get("image_size", 64))
            if size not in squares:
                squares[size] = np.array(load_resized(path, size))  # writable, for torch
            name = meta.get("model", key)
            cam = explain(loaded.model, name, squares[size][None], method=method, normalize="none",
                          device=store.device)
            result.models[key] = ModelExplanation(
                model_name=name,
                checkpoint=str(ckpt),
                classes=list(meta["classes"]),
                raw=torch.as_tensor(cam.raw)[0].float().cpu().numpy().astype(np.float32),
                probs=cam.probabilities()[0].astype(np.float32),
                image_size=size,
                method=method,
            )
        except Exception as exc:  # noqa: BLE001 - reported with the model; the others go on
            if strict:
                raise
            result.errors[key] = str(exc) if isinstance(exc, GeoCamError) else f"{type(exc).__name__}: {exc}"
    return result


def class_index(model: ModelExplanation, choice: str, label: str | None) -> int | None:
    """Which class a model's map shows for a choice: 'predicted', 'ground truth' or a class name."""
    if choice == PREDICTED:
        return model.predicted
    if choice == GROUND_TRUTH:
        return model.classes.index(label) if label in model.classes else None
    return model.classes.index(choice) if choice in model.classes else None


def display_maps(
    explanation: ImageExplanation, choice: str, *, shared: bool = False,
    reference: Mapping[str, Sequence[float]] | None = None,
) -> dict[str, tuple[int, np.ndarray, float]]:
    """For each model: (class index, map in [0, 1] at the layer resolution, scale).

    Per map (default): ReLU, then min-max of that map, as grad-cam does; a constant map is
    all zeros. Shared: ReLU, then every map is divided by the largest value of all models and
    all classes, so heat is comparable across the models and the class toggles. ``reference``
    (key -> one value per class, e.g. ``reference.cam_percentiles``): ReLU, then each map is
    divided by its model's value for the class shown and clipped at 1 (every model present
    must have one). A model whose classes lack the choice (e.g. the ground truth) is left out.
    """
    out: dict[str, tuple[int, np.ndarray, float]] = {}
    chosen: dict[str, tuple[int, np.ndarray]] = {}
    for key, model in explanation.models.items():
        idx = class_index(model, choice, explanation.label)
        if idx is None:
            continue
        chosen[key] = (idx, np.maximum(model.raw[idx], 0.0))
    if reference is not None:
        for key, (idx, m) in chosen.items():
            ref = float(reference[key][idx])
            scaled = np.minimum(m / ref, 1.0) if ref > 0 else np.zeros_like(m)
            out[key] = (idx, scaled.astype(np.float32), ref)
        return out
    if shared:
        peak = max((float(np.maximum(m.raw, 0).max()) for m in explanation.models.values()), default=0.0)
        for key, (idx, m) in chosen.items():
            out[key] = (idx, (m / peak) if peak > 0 else np.zeros_like(m), peak)
        return out
    for key, (idx, m) in chosen.items():
        lo, hi = float(m.min()), float(m.max())
        span = hi - lo
        norm = (m - lo) / span if span > 0 and span > 1e-6 * max(abs(hi), abs(lo)) else np.zeros_like(m)
        out[key] = (idx, norm.astype(np.float32), hi)
    return out


def full_size_maps(
    explanation: ImageExplanation, choice: str, *, shared: bool = False,
    reference: Mapping[str, Sequence[float]] | None = None,
) -> dict[str, tuple[int, np.ndarray, float]]:
    """``display_maps`` resized bilinearly onto ``explanation.image`` (clipped to [0, 1]): what
    the viewer blends and the export writes, through ``render.overlay``."""
    from geocam_gui.core.explain.render import resize_map

    h, w = explanation.image.shape[:2]
    return {key: (idx, np.clip(resize_map(m, (h, w)), 0.0, 1.0), scale)
            for key, (idx, m, scale) in display_maps(explanation, choice, shared=shared, reference=reference).items()}


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
    from geocam_gui.core.explain.cam import class_probabilities
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
            p = class_probabilities(loaded.model(x))
            ok = np.asarray(arrays.ok[start:stop])
            probs[start:stop][ok] = p[ok]
            if progress is not None:
                progress(stop, n)
    return probs
