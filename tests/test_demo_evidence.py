"""The demo's evidence carries no layout shortcut by default (issue 14), and --layout-bias brings a
controlled one back: probes on the evidence mask alone and on mean colours, area and centre of
mass per class, exact split rates."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geocam_gui.core.data import demo


def _rows(root: Path) -> list[dict]:
    with open(root / "manifest.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _features(root: Path, rows: list[dict]) -> dict:
    """Per image: the evidence mask averaged to 8 x 8, the mean colour, evidence area, centre of mass."""
    out = {"mask": [], "colour": [], "area": [], "cy": [], "cx": []}
    for r in rows:
        m = np.asarray(Image.open(demo.mask_paths(root / r["path"])["evidence"])) > 0
        s = m.shape[0]
        out["mask"].append(m.reshape(8, s // 8, 8, s // 8).mean((1, 3)).ravel())
        out["colour"].append(np.asarray(Image.open(root / r["path"]), float).reshape(-1, 3).mean(0))
        out["area"].append(m.mean())
        ys, xs = np.nonzero(m)
        out["cy"].append((ys.mean() + .5) / s if len(ys) else np.nan)
        out["cx"].append((xs.mean() + .5) / s if len(xs) else np.nan)
    return {k: np.array(v) for k, v in out.items()}


def _logistic_test_accuracy(x, y, train) -> float:
    """L2-regularised logistic regression (full-batch gradient descent on standardised features),
    fitted on ``train`` and scored on the rest."""
    mean, std = x[train].mean(0), x[train].std(0) + 1e-9
    a = np.c_[(x - mean) / std, np.ones(len(x))]
    w = np.zeros(a.shape[1])
    for _ in range(2000):
        p = 1 / (1 + np.exp(-a[train] @ w))
        w -= 0.5 * (a[train].T @ (p - y[train]) / train.sum() + 1e-3 * w)
    return float(((a[~train] @ w > 0) == y[~train]).mean())


def _rate_errors(rows: list[dict], params: dict) -> list[float]:
    """|observed - requested| in images, per split, class and cue (sky, layout)."""
    errors = []
    for split in ("train", "val", "test"):
        sky = params["test_sky_bias"] if split == "test" else params["sky_bias"]
        cue = params["test_layout_bias"] if split == "test" else params["layout_bias"]
        for cls, cloudy_is_usual, band in (("pittsburgh", True, "low"), ("tokyo", False, "high")):
            mine = [r for r in rows if r["split"] == split and r["label"] == cls]
            usual = sum((r["sky"] == "cloudy") == cloudy_is_usual for r in mine)
            errors.append(abs(usual - sky * len(mine)))
            want_band = band if cue >= 0 else ("high" if band == "low" else "low")
            cued = sum(r["layout"] == want_band for r in mine)
            assert all(r["layout"] in ("any", want_band) for r in mine)
            errors.append(abs(cued - abs(cue) * len(mine)))
    return errors


@pytest.mark.slow
def test_default_demo_set_has_no_layout_or_colour_shortcut(default_demo):
    rows = _rows(default_demo)
    f = _features(default_demo, rows)
    y = np.array([r["label"] == "tokyo" for r in rows], float)
    train = np.array([r["split"] != "test" for r in rows])
    mask_acc = _logistic_test_accuracy(f["mask"], y, train)
    colour_acc = _logistic_test_accuracy(f["colour"], y, train)
    assert mask_acc <= 0.60 and colour_acc <= 0.60, (mask_acc, colour_acc)
    pitt, tokyo = y == 0, y == 1
    assert not np.isnan(f["cy"]).any()  # every image shows evidence
    for key in ("area", "cy", "cx"):
        a, b = f[key][pitt].mean(), f[key][tokyo].mean()
        assert abs(a - b) <= 0.10 * min(a, b), (key, a, b)
    assert max(_rate_errors(rows, demo.DEFAULTS)) <= 1


@pytest.mark.slow
def test_layout_bias_brings_a_controlled_cue_back(tmp_path):
    """The same probe finds the cue when it is asked for (so the probe above can see one), the
    rates are exact, the manifest and README record it, and a flipped test split flips it."""
    params = {**demo.DEFAULTS, "per_class": 120, "size": 64, "views_per_place": 2, "layout_bias": 1.0,
              "test_layout_bias": 1.0, "seed": 4}
    root = demo.generate_demo(tmp_path / "cue", **params)
    rows = _rows(root)
    f = _features(root, rows)
    y = np.array([r["label"] == "tokyo" for r in rows], float)
    train = np.array([r["split"] != "test" for r in rows])
    assert _logistic_test_accuracy(f["mask"], y, train) >= 0.85
    assert f["cy"][y == 0].mean() > f["cy"][y == 1].mean() + 0.15  # pittsburgh low, tokyo high
    readme = (root / "README.txt").read_text(encoding="utf-8")
    assert "layout_bias = 1.0" in readme and "test_layout_bias = 1.0" in readme

    odd = {**params, "layout_bias": 0.7, "test_layout_bias": -0.4, "sky_bias": 0.65, "test_sky_bias": 0.3}
    flipped = demo.generate_demo(tmp_path / "flip", **odd)
    rows = _rows(flipped)
    assert max(_rate_errors(rows, odd)) <= 1
    # the same test places re-rendered with the cue flipped keep their streets (only evidence moves)
    same = [r for r in rows if r["split"] == "test"][:4]
    for r in same:
        a = np.asarray(Image.open(root / r["path"]), float)
        b = np.asarray(Image.open(flipped / r["path"]), float)
        parts_a = np.asarray(Image.open(demo.mask_paths(root / r["path"])["parts"]))
        parts_b = np.asarray(Image.open(demo.mask_paths(flipped / r["path"])["parts"]))
        assert (parts_a == parts_b).mean() > 0.5 and a.shape == b.shape


def test_layout_probe_sets_are_as_trained_neutral_and_flipped():
    from geocam_gui.core.analysis import bias

    base = dict(demo.DEFAULTS)
    assert bias.layout_probe_rates(base) == []  # no cue trained: nothing to probe
    assert bias.layout_probe_rates({**base, "layout_bias": 0.8}) == [
        ("layout as trained", 0.8), ("layout flipped", -0.8)]  # the set's own test rate (0) is neutral
    assert bias.layout_probe_rates({**base, "layout_bias": 0.8, "test_layout_bias": 0.8}) == [
        ("layout neutral", 0.0), ("layout flipped", -0.8)]
