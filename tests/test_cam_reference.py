"""The comparable scale's reference (core.explain.reference), without Qt: each model's 99th
percentile equals numpy's on the same raw maps, and the viewer's maps divide by it."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from geocam_gui.core.errors import BadArgument
from geocam_gui.core.explain.reference import cam_percentiles, percentile_per_class, reference_samples
from geocam_gui.core.explain.store import ModelStore, display_maps, explain_image, full_size_maps


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, torch_threads):
    import torch

    from geocam_gui.core.checkpoints import save_checkpoint
    from geocam_gui.core.models import build_model

    folder = tmp_path_factory.mktemp("ckpt")
    out = {}
    for name, size in (("shallow", 32), ("resnet18", 64)):
        torch.manual_seed(1)
        out[name] = str(save_checkpoint(folder / name / "best", build_model(name, 2),
                                        {"model": name, "classes": ["pittsburgh", "tokyo"], "image_size": size}))
    return out


def test_percentile_per_class_is_numpys_percentile_of_the_relu_maps():
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(5, 3, 4, 6)).astype(np.float32)
    raw[1, 2, 0, 0] = np.nan  # ignored
    got = percentile_per_class(raw, 99)
    for c in range(3):
        v = raw[:, c].ravel()
        assert got[c] == pytest.approx(np.percentile(np.maximum(v[~np.isnan(v)], 0), 99))
    assert percentile_per_class(np.full((2, 1, 2, 2), -1.0))[0] == 0.0  # nothing positive
    with pytest.raises(BadArgument):
        percentile_per_class(np.zeros((3, 4)))
    with pytest.raises(BadArgument):
        percentile_per_class(np.zeros((1, 1, 2, 2)), 101)


def test_reference_samples_prefer_val_then_test_and_are_spread_and_stable():
    def s(path, split):
        return SimpleNamespace(path=path, split=split)

    samples = [s(f"/d/{i:03d}.jpg", "val" if i % 3 == 0 else "train") for i in range(300)]
    split, chosen = reference_samples(list(reversed(samples)), limit=64)
    assert split == "val" and len(chosen) == 64 and all(c.split == "val" for c in chosen)
    assert chosen[0].path == "/d/000.jpg" and chosen[-1].path == "/d/297.jpg"  # spread over all of val
    assert [c.path for c in reference_samples(samples, limit=64)[1]] == [c.path for c in chosen]
    assert reference_samples([s("/a", "test"), s("/b", "train")])[0] == "test"
    assert reference_samples([s("/b", "train")])[0] == "all"


def test_cam_percentiles_equal_numpy_on_the_viewers_raw_maps(tiny_index, checkpoints):
    _split, chosen = reference_samples(tiny_index.samples)
    paths = [c.path for c in chosen]
    store = ModelStore("cpu")
    # The raw maps the viewer gets, one image at a time (explain_image), and numpy's percentile.
    raws = {name: [] for name in checkpoints}
    for p in paths:
        exp = explain_image(p, checkpoints, store, strict=True)
        for name in checkpoints:
            raws[name].append(exp.models[name].raw)
    for name, ckpt in checkpoints.items():
        ref = cam_percentiles(ckpt, paths + ["/no/such/image.jpg"], store)
        assert ref["images"] == len(paths) and ref["skipped"] == 1 and ref["classes"] == ["pittsburgh", "tokyo"]
        stack = np.stack(raws[name])
        for c in range(2):
            expected = np.percentile(np.maximum(stack[:, c], 0).ravel(), 99)
            assert ref["percentiles"][c] == pytest.approx(expected, rel=1e-4, abs=1e-7)


def test_display_maps_divide_by_the_reference_and_clip_at_one(tiny_index, checkpoints):
    exp = explain_image(tiny_index.samples[0].path, checkpoints, ModelStore("cpu"), label="tokyo", strict=True)
    refs = {name: np.array([0.5, 2.0]) * max(float(np.abs(m.raw).max()), 1e-6) / 3 for name, m in exp.models.items()}
    maps = display_maps(exp, "tokyo", reference=refs)
    for name, (idx, m, scale) in maps.items():
        assert idx == 1 and scale == refs[name][1]
        expected = np.minimum(np.maximum(exp.models[name].raw[1], 0) / refs[name][1], 1)
        np.testing.assert_allclose(m, expected, rtol=1e-6)
        assert m.max() <= 1.0
    full = full_size_maps(exp, "tokyo", reference=refs)
    assert all(v[1].shape == exp.image.shape[:2] for v in full.values())
    zero = display_maps(exp, "tokyo", reference={name: np.zeros(2) for name in exp.models})
    assert all(not m.any() for _i, m, _s in zero.values())  # a zero reference: no heat, no division by 0
