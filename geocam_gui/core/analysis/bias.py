"""The sky-bias probe of ``core.analysis``: does a model read the sky instead of the city?

Two measurements:

* **Sky congruence** on the analysed split, for any data whose samples record a ``sky`` value
  (the demo set does): the "usual" sky of a class is its most frequent sky in the *train*
  split; accuracy is reported separately on images whose sky is usual for their class and on
  those whose sky is not. A model that leans on the sky fails the second group.
* **Probe sets** for a demo set: the same places re-rendered with another test-split sky rate
  (``synthetic.generate_demo(..., test_sky_bias=q)`` with every other parameter taken from the
  set's README.txt, so the test places are identical): ``q = sky_bias`` (as in training),
  ``q = 0.5`` (unbiased) and ``q = 1 - sky_bias`` (flipped). ``sky_reliance`` is the accuracy
  as trained minus the accuracy flipped. A set trained with a layout cue (``layout_bias`` > 0)
  gets the same three for the layout: test layout rate as trained, 0 (neutral) and
  ``-layout_bias`` (flipped), and ``layout_reliance``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from geocam_gui.core.data import demo as synthetic
from geocam_gui.core.data.datasets import DatasetIndex
from geocam_gui.core.errors import Cancelled
from geocam_gui.core.train.metrics import summarize
from geocam_gui.core.models import preprocess

EVAL_BATCH = 64


def usual_sky(index: DatasetIndex) -> dict[str, str]:
    """{class: its most frequent ``sky`` value in the train split} (empty if none recorded)."""
    counts: dict[str, Counter] = {}
    for s in index.split("train"):
        sky = (s.extra or {}).get("sky")
        if sky:
            counts.setdefault(s.label, Counter())[sky] += 1
    return {c: cnt.most_common(1)[0][0] for c, cnt in counts.items() if cnt}


def sky_congruence(samples: list, labels: np.ndarray, pred: np.ndarray, usual: dict[str, str]) -> dict | None:
    """Accuracy on images whose sky is usual for their class and on the others; None when the
    samples record no sky."""
    if not usual:
        return None
    sky = [(s.extra or {}).get("sky") for s in samples]
    if not any(sky):
        return None
    usual_mask = np.array([bool(k) and usual.get(s.label) == k for s, k in zip(samples, sky)])
    known = np.array([bool(k) for k in sky])
    correct = np.asarray(pred) == np.asarray(labels)
    out = {"usual_sky": dict(usual)}
    for name, m in (("usual", usual_mask & known), ("unusual", ~usual_mask & known)):
        n = int(m.sum())
        out[name] = {"n": n, "accuracy": float(correct[m].mean()) if n else None}
    return out


def demo_parameters(index: DatasetIndex) -> dict | None:
    """The generator parameters of a demo set (from its README.txt), or None for other data."""
    roots = list(getattr(index, "roots", []) or [])
    if len(roots) != 1 or not synthetic.is_demo_dir(roots[0]):
        return None
    params: dict = {}
    try:
        text = (Path(roots[0]) / "README.txt").read_text(encoding="utf-8")
    except OSError:
        return None
    for line in text.splitlines():
        key, sep, value = line.partition(" = ")
        key = key.strip()
        if sep and key in synthetic.DEFAULTS:
            kind = type(synthetic.DEFAULTS[key])
            try:
                params[key] = kind(float(value)) if kind is int else kind(value)
            except ValueError:
                return None
    return params if set(params) == set(synthetic.DEFAULTS) else None


def probe_rates(params: dict) -> list[tuple[str, float]]:
    """(name, test sky rate) of the sky-probe sets worth generating for ``params``: as trained,
    unbiased, flipped; rates equal to the set's own test rate or to an earlier entry are skipped."""
    bias = float(params["sky_bias"])
    seen = {round(float(params["test_sky_bias"]), 6)}
    out = []
    for name, q in (("as trained", bias), ("unbiased", 0.5), ("flipped", 1.0 - bias)):
        if round(q, 6) in seen:
            continue
        seen.add(round(q, 6))
        out.append((name, q))
    return out


def layout_probe_rates(params: dict) -> list[tuple[str, float]]:
    """(name, test layout rate) of the layout-probe sets: with the cue as trained (``layout_bias``),
    neutral (0) and flipped (``-layout_bias``); none when the set was trained without a layout cue,
    and rates equal to the set's own test rate are skipped."""
    bias = float(params.get("layout_bias", 0.0))
    if bias <= 0:
        return []
    seen = {round(float(params.get("test_layout_bias", 0.0)), 6)}
    out = []
    for name, q in (("layout as trained", bias), ("layout neutral", 0.0), ("layout flipped", -bias)):
        if round(q, 6) not in seen:
            seen.add(round(q, 6))
            out.append((name, q))
    return out


def probe_sets(index: DatasetIndex, *, progress: Callable[[int, int], None] | None = None,
               cancel: Callable[[], bool] | None = None) -> list[dict]:
    """Generate (or reuse from the cache) the probe sets of a demo set.

    Returns ``[{"name", "test_sky_bias", "test_layout_bias", "index"}]``, starting with the set
    itself; a sky-probe set has ``test_layout_bias`` None, a layout-probe set ``test_sky_bias``
    None (every other parameter is the set's own, so the test places are the same). Empty for
    data that is not a demo set.
    """
    from geocam_gui.core.data.datasets import open_data

    params = demo_parameters(index)
    if params is None:
        return []
    out = [{"name": "test", "test_sky_bias": float(params["test_sky_bias"]),
            "test_layout_bias": float(params["test_layout_bias"]), "index": index}]
    for name, q in probe_rates(params):
        folder = synthetic.ensure_demo(progress=progress, cancel=cancel, **{**params, "test_sky_bias": q})
        out.append({"name": name, "test_sky_bias": q, "test_layout_bias": None, "index": open_data(folder)})
    for name, q in layout_probe_rates(params):
        folder = synthetic.ensure_demo(progress=progress, cancel=cancel, **{**params, "test_layout_bias": q})
        out.append({"name": name, "test_sky_bias": None, "test_layout_bias": q, "index": open_data(folder)})
    return out


@torch.no_grad()
def predict(model: nn.Module, images: np.ndarray, device: torch.device,
            cancel: Callable[[], bool] | None = None) -> np.ndarray:
    """Predicted class of each uint8 image (N, S, S, 3), batched, in eval mode."""
    was = model.training
    model.eval()
    preds = []
    try:
        for s in range(0, len(images), EVAL_BATCH):
            if cancel is not None and cancel():
                raise Cancelled("The analysis was cancelled.")
            x = preprocess(np.ascontiguousarray(images[s : s + EVAL_BATCH]), device=device)
            preds.append(model(x).argmax(1).cpu().numpy())
    finally:
        model.train(was)
    return np.concatenate(preds) if preds else np.zeros(0, np.int64)


def accuracy_of(pred: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict:
    """``metrics.summarize`` of predictions against labels."""
    k = len(classes)
    cm = np.zeros((k, k), np.int64)
    np.add.at(cm, (np.asarray(labels, np.int64), np.asarray(pred, np.int64)), 1)
    return summarize(torch.from_numpy(cm), list(classes))
