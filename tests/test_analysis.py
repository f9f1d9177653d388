"""Measured interpretability (core/analysis*.py and `geocam analyze`).

Two shallow nets are trained with the real Trainer on tiny demo sets that differ only in the
sky bias of train/val (1.0 vs 0.5); the test places, and so the test images, are the same.
Models this small learn the sky in a few epochs but not the evidence (bridges, kanji signs),
so the checks that need a model to look at *something* use the sky as that something. Since the
demo's evidence layout no longer gives the city away (generator v2), the plain model has nothing
it can learn in 6 epochs at this size: it predicts one class, mostly with empty maps.

Both nets have the shallow net's earlier layout (``legacy=True``: no batch norm, a 7 x 7 pool
before the FC layers), whose Grad-CAM lies on the sky it learnt. The current layout learns the
biased sky here too (12 epochs: accuracy 1.0 as trained, 0.08 with flipped skies), through its
global pool, with maps that do not lie on the sky; these are tests of the measures, which need a
model known to look at a masked region.
"""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
from PIL import Image

from geocam_gui.core.analysis import measures as am
from geocam_gui.core.analysis import model_pass as amod

TRAIN = dict(epochs=6, batch_size=16, image_size=48)
DEMO = dict(per_class=32, size=48, test_sky_bias=0.5, seed=0, views_per_place=2)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def trained(tmp_path_factory, torch_threads):
    import os

    from geocam_gui.core.data import datasets
    from geocam_gui.core.data import demo as synthetic
    from geocam_gui.core.models import build_model
    from geocam_gui.core.train import config as train_config, engine as training, loop

    home = tmp_path_factory.mktemp("analysis_home")
    old = os.environ.get("GEOCAM_HOME")
    os.environ["GEOCAM_HOME"] = str(home)
    try:
        out = {}
        with pytest.MonkeyPatch.context() as legacy:  # the earlier layout: see the module docstring
            legacy.setattr(loop, "build_model", functools.partial(build_model, legacy=True))
            for name, bias in (("biased", 1.0), ("plain", 0.5)):
                data = synthetic.generate_demo(home / f"demo_{name}", sky_bias=bias, **DEMO)
                index = datasets.open_data(data)
                cfg = train_config.default_config("shallow", "cpu")
                for k, v in TRAIN.items():
                    setattr(cfg, k, v)
                cfg.deterministic = True
                # float32 on every CPU: what this 18-step model learns to look at must not depend on
                # whether the machine computes bf16 (with bf16 it missed the sky here)
                cfg.amp = False
                result = training.Trainer(cfg, index, home / f"run_{name}").run()
                out[name] = {"data": data, "index": index, "checkpoint": str(result.best_checkpoint)}
        out["home"] = home
        yield out
    finally:
        if old is None:
            os.environ.pop("GEOCAM_HOME", None)
        else:
            os.environ["GEOCAM_HOME"] = old


@pytest.fixture(scope="module")
def report(trained):
    from geocam_gui.core.analysis.run import run_analysis

    seen = []
    rep = run_analysis([trained["biased"]["checkpoint"], trained["plain"]["checkpoint"]],
                       trained["biased"]["index"], progress=lambda d, t, s: seen.append((d, t)))
    rep["_progress"] = seen
    return rep


def _model(rep, which):
    return next(m for m in rep["models"] if f"run_{which}" in m["key"])


@pytest.fixture
def home(trained, monkeypatch):
    monkeypatch.setenv("GEOCAM_HOME", str(trained["home"]))
    return trained["home"]


def _untrained(tmp_path, classes=("pittsburgh", "tokyo"), size=48):
    from geocam_gui.core.checkpoints import save_checkpoint
    from geocam_gui.core.models import build_model

    return str(save_checkpoint(tmp_path / "untrained" / "best", build_model("shallow", len(classes)),
                               {"model": "shallow", "classes": list(classes), "image_size": size}))


# --------------------------------------------------------------------------- measures


def test_rankdata_and_spearman_follow_their_definitions():
    assert am.rankdata([10, 20, 20, 5]).tolist() == [2.0, 3.5, 3.5, 1.0]
    a = np.array([[1, 2, 3, 4, 5.0]])
    assert am.spearman(a, a ** 3)[0] == pytest.approx(1.0)
    assert am.spearman(a, -a)[0] == pytest.approx(-1.0)
    assert np.isnan(am.spearman(a, np.ones_like(a))[0])  # a constant map has no ranking
    rng = np.random.default_rng(0)
    x, y = rng.random((1, 200)), rng.random((1, 200))
    rx, ry = am.rankdata(x), am.rankdata(y)
    assert am.spearman(x, y)[0] == pytest.approx(np.corrcoef(rx, ry)[0, 1])


def test_ssim_is_one_for_identical_maps_and_low_for_unrelated_ones():
    rng = np.random.default_rng(1)
    m = rng.random((3, 32, 32))
    assert am.ssim(m, m) == pytest.approx(np.ones(3))
    assert (am.ssim(m, rng.random((3, 32, 32))) < 0.2).all()
    assert (am.ssim(m, np.full_like(m, 0.5)) < 0.1).all()
    assert am.ssim(m[:, :4, :4], m[:, :4, :4]) == pytest.approx(np.ones(3))  # window shrinks to the map


def test_area_above_half_the_peak_counts_pixels_against_a_loop():
    rng = np.random.default_rng(4)
    maps = rng.random((5, 9, 7))
    maps[1] = 0.0  # no peak: undefined
    maps[2, :, :] = 0.2
    maps[2, 0, 0] = 1.0  # one pixel at the peak, the rest below half: 1 of 63
    got = am.area_above(maps, 0.5)
    for b in (0, 3, 4):
        want = sum(v >= 0.5 * maps[b].max() for v in maps[b].ravel()) / maps[b].size
        assert got[b] == pytest.approx(want)
    assert np.isnan(got[1]) and got[2] == pytest.approx(1 / 63)


def test_pointing_game_energy_share_top_fraction_and_areas():
    maps = np.zeros((3, 20, 20))
    maps[0, 5, 5] = 1.0  # inside the mask
    maps[1, 5, 8] = 1.0  # 2 px from the mask: a hit only with tolerance
    masks = np.zeros((3, 20, 20), bool)
    masks[:, 4:7, 4:7] = True
    hit0, defined = am.pointing_game(maps, masks, 0)
    assert hit0.tolist() == [True, False, False] and defined.tolist() == [True, True, False]
    hit2, _ = am.pointing_game(maps, masks, 2)
    assert hit2.tolist() == [True, True, False]
    share = am.energy_share(maps, masks)
    assert share[0] == 1.0 and share[1] == 0.0 and np.isnan(share[2])
    top = am.top_fraction(np.arange(100.0).reshape(1, 10, 10), 0.2)
    assert top.sum() == 20 and top[0, 8:].all()
    assert am.iou(top, top)[0] == 1.0 and am.iou(top, ~top)[0] == 0.0
    assert am.curve_area(np.full((1, 11), 0.3))[0] == pytest.approx(0.3)
    assert am.curve_area(np.linspace(1, 0, 11)[None])[0] == pytest.approx(0.5)
    assert am.pointing_tolerance(224) == 15 and am.pointing_tolerance(48) == 3


def test_kmeans_separates_blobs_and_is_seeded():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.1, (20, 4)), rng.normal(5, 0.1, (20, 4))])
    labels, centres = am.kmeans(x, 2, seed=3)
    assert len(set(labels[:20])) == 1 and len(set(labels[20:])) == 1 and labels[0] != labels[-1]
    again, _ = am.kmeans(x, 2, seed=3)
    assert (labels == again).all()
    assert len(centres) == 2


def test_peaks_and_cascade_groups():
    m = np.zeros((20, 20))
    m[3, 3], m[15, 15], m[16, 16] = 1.0, 0.8, 0.7
    peaks = amod.find_peaks(m, radius=3)
    assert [(y, x) for y, x, _ in peaks] == [(3, 3), (15, 15)]  # (16, 16) is suppressed
    assert amod.find_peaks(np.ones((5, 5))) == []
    from geocam_gui.core.models import build_model

    groups = [g for g, _ in amod.cascade_groups(build_model("resnet18", 2))]
    assert groups[0] == "fc" and groups[1] == "layer4.1" and groups[-1] == "conv1"
    assert [g for g, _ in amod.cascade_groups(build_model("shallow", 2))][0] == "classifier.4"


def test_deletion_in_map_order_beats_random_order_on_a_model_that_reads_one_region(torch_threads):
    import torch
    from torch import nn

    class Corner(nn.Module):  # class 1's logit is the mean of the top-left quarter
        def forward(self, x):
            v = x[:, :, :8, :8].mean(dim=(1, 2, 3)) * 10
            return torch.stack([torch.zeros_like(v), v], 1)

    x = torch.full((2, 3, 16, 16), 1.0)
    good = np.zeros((2, 16, 16))
    good[:, :8, :8] = 1 + np.random.default_rng(0).random((2, 8, 8))
    cls, p0 = np.array([1, 1]), torch.softmax(Corner()(x), 1)[:, 1].numpy()
    d_good, i_good = amod.perturbation_curves(Corner(), x, amod._ranks(good), cls, p0, steps=8)
    rnd = np.stack([np.random.default_rng(b).permutation(256) for b in range(2)])
    d_rnd, _ = amod.perturbation_curves(Corner(), x, rnd, cls, p0, steps=8)
    assert (am.curve_area(d_good) < am.curve_area(d_rnd) - 0.1).all()
    # The region is the first quarter of the pixels: after 2 of 8 steps it is all mean colour
    # (zero), so class 1's logit is 0 and its probability 1/2; a random order is far slower.
    assert d_good[:, 2] == pytest.approx(0.5, abs=1e-5)
    assert i_good[:, -1] == pytest.approx(p0)


def test_deletion_order_breaks_ties_at_random_not_in_raster_order():
    """A map clipped at zero leaves most pixels tied: they must not go top rows first (the sky)."""
    maps = np.zeros((3, 32, 32))
    maps[:, 20:24, 20:24] = np.linspace(1, 2, 16).reshape(4, 4)  # 16 distinct values, then ties
    ranks = amod._ranks(maps)
    assert (ranks == amod._ranks(maps)).all()  # seeded: the same maps give the same order
    flat = maps.reshape(3, -1)
    for b in range(3):
        top = np.argsort(ranks[b])[:16]
        assert (np.sort(flat[b][top]) == np.sort(flat[b])[-16:]).all()  # values first, highest first
        assert (np.diff(flat[b][np.argsort(ranks[b])[:16]]) < 0).all()
        tied_first = np.argsort(ranks[b])[16:16 + 200]  # the first 200 of the tied pixels
        rows = tied_first // 32
        assert 10 < rows.mean() < 21, rows.mean()  # raster order would give rows 0-6 (mean ~3)
    assert not (ranks[0] == ranks[1]).all()  # a different permutation per image
    assert (amod._ranks(maps, [7, 8, 9])[0] != ranks[0]).any()


def test_select_samples_interleaves_classes():
    from geocam_gui.core.analysis.run import select_samples
    from geocam_gui.core.data.datasets import Sample

    s = [Sample(f"/a{i}", "a", f"g{i}", "test") for i in range(5)] + [Sample(f"/b{i}", "b", "g", "test") for i in range(2)]
    out = select_samples(s, 4, ["a", "b"])
    assert [x.label for x in out] == ["a", "b", "a", "b"]
    assert len(select_samples(s, None, ["a", "b"])) == 7


# --------------------------------------------------------------------------- trained models


def test_sky_biased_model_puts_more_cam_energy_on_the_sky(report):
    biased, plain = _model(report, "biased"), _model(report, "plain")
    b, p = biased["localisation"], plain["localisation"]
    assert b["available"] and b["with_sky_mask"] == b["images"]
    assert b["sky_energy"]["cam"]["mean"] > p["sky_energy"]["cam"]["mean"] + 0.05
    # the plain model may leave every predicted-class map empty (see the module docstring): no energy on the sky
    assert b["sky_energy_predicted"]["mean"] > (p["sky_energy_predicted"]["mean"] or 0.0) + 0.08
    assert b["sky_energy_predicted"]["mean"] > b["sky_energy"]["random"]["mean"]


def test_bias_probe_shows_which_model_leans_on_the_sky(report):
    bias = report["bias"]
    assert bias["available"] and bias["params"]["sky_bias"] == 1.0
    names = [s["name"] for s in bias["sets"]]
    assert names == ["test", "as trained", "flipped"]
    kb, kp = _model(report, "biased")["key"], _model(report, "plain")["key"]
    flipped = bias["sets"][2]["accuracy"]
    as_trained = bias["sets"][1]["accuracy"]
    assert as_trained[kb] > flipped[kb] + 0.5, (as_trained, flipped)
    assert bias["sky_reliance"][kb] > bias["sky_reliance"][kp] + 0.4, bias["sky_reliance"]
    cong = _model(report, "biased")["sky_congruence"]
    assert cong["usual"]["accuracy"] > cong["unusual"]["accuracy"] + 0.5


def test_randomised_models_give_maps_unlike_the_trained_ones(report):
    for m in report["models"]:
        steps = m["sanity"]["steps"]
        assert steps[0]["spearman"]["mean"] == 1.0 and steps[0]["ssim"]["mean"] == 1.0
        assert len(steps) == 7  # 2 linear + 4 conv layers of the shallow net (earlier layout), plus the trained model
        randomised = [s for s in steps[1:]]
        assert all(s["spearman"]["mean"] < 0.7 for s in randomised), randomised
        assert all(s["ssim"]["mean"] < 0.7 for s in randomised), randomised
        if m["key"] == _model(report, "biased")["key"]:  # the plain model's few non-empty maps are no reference
            assert steps[-1]["spearman"]["mean"] < 0.5 and steps[-1]["ssim"]["mean"] < 0.5


def _test_maps(trained, which, normalize="per_map", images=None):
    from geocam_gui.core import checkpoints
    from geocam_gui.core.data import cache
    from geocam_gui.core.explain.cam import explain

    index = trained["biased"]["index"]
    samples = index.split("test")
    ck = checkpoints.load_checkpoint(trained[which]["checkpoint"])
    if images is None:
        images = np.array(cache.decoded_split(samples, 48, classes=index.classes).images)
    res = explain(ck.model, "shallow", images, normalize=normalize)
    pred = res.probabilities().argmax(1)
    return samples, images, res.maps.numpy()[np.arange(len(pred)), pred], pred


def test_pointing_game_of_a_trained_model_beats_a_uniform_random_map(trained, home):
    from geocam_gui.core.analysis.run import load_masks

    samples, _, maps, _ = _test_maps(trained, "biased")
    _, sky, _, has_sky = load_masks([s.path for s in samples], 48)
    assert has_sky.all()
    tol = am.pointing_tolerance(48)
    hits, _ = am.pointing_game(maps, sky, tol)
    rnd = np.random.default_rng(0).random((50, *maps.shape))
    random_rate = np.mean([am.pointing_game(r, sky, tol)[0].mean() for r in rnd])
    assert hits.mean() > random_rate + 0.2, (hits.mean(), random_rate)


def test_filling_the_cue_with_background_removes_heat_there(trained, home):
    from geocam_gui.core.analysis.run import load_masks

    samples, images, _, pred = _test_maps(trained, "biased")
    ev, sky, _, _ = load_masks([s.path for s in samples], 48)
    filled = images.copy()
    for i in range(len(filled)):
        filled[i][sky[i]] = images[i][~sky[i] & ~ev[i]].mean(axis=0).astype(np.uint8)
    from geocam_gui.core import checkpoints
    from geocam_gui.core.explain.cam import explain

    model = checkpoints.load_checkpoint(trained["biased"]["checkpoint"]).model
    before = explain(model, "shallow", images, normalize="none", classes=None).maps.numpy()
    after = explain(model, "shallow", filled, normalize="none", classes=None).maps.numpy()
    idx = np.arange(len(pred))
    heat_before = (np.clip(before[idx, pred], 0, None) * sky).sum(axis=(1, 2))
    heat_after = (np.clip(after[idx, pred], 0, None) * sky).sum(axis=(1, 2))
    assert heat_after.mean() < 0.5 * heat_before.mean()
    assert (heat_after < heat_before).mean() >= 0.7


def test_report_covers_every_section_and_is_strict_json(report):
    json.dumps({k: v for k, v in report.items()}, allow_nan=False)
    assert report["data"]["images"] == 12 and report["method"] == "gradcam"
    for m in report["models"]:
        acc = m["accuracy"]
        assert acc["n"] == 12 and np.asarray(acc["confusion"]).sum() == 12
        from geocam_gui.core.chance import chance_from_metrics

        assert m["chance"]["n"] == 12 and m["chance"]["p_value"] == chance_from_metrics(acc)["p_value"]
        loc = m["localisation"]
        assert loc["with_evidence_mask"] == 12 and loc["without_masks"] == 0
        assert 0 <= loc["pointing_game"]["random"] <= 1
        kinds = m["kinds"]  # per-kind localisation from the demo's label maps
        assert kinds["available"] and kinds["legend"][0] == "unlabelled"
        assert "signboard" not in kinds["per_class"]["pittsburgh"] and "bridge" not in kinds["per_class"]["tokyo"]
        assert all(0 <= v["hit"] <= 1 and 0 < v["area"] < 1 and 1 <= v["n"] <= 6
                   for rows in kinds["per_class"].values() for v in rows.values())
        f = m["faithfulness"]
        assert len(f["deletion"]["curve"]) == amod.FAITHFULNESS_STEPS + 1
        assert 0 <= f["deletion"]["auc"]["mean"] <= 1 and 0 <= f["insertion"]["auc"]["mean"] <= 1
        for cls, e in m["elements"].items():
            for c in e["clusters"]:
                assert c["places"] >= 2 and c["size"] >= len(c["patches"]) >= 1
                assert all(p["path"].endswith(".png") and len(p["tile"]) == 4 for p in c["patches"])
    assert any(e["clusters"] for m in report["models"] for e in m["elements"].values())
    pair = report["agreement"]["pairs"][0]
    assert pair["n"] == 12 and 0 <= pair["iou_top20"]["mean"] <= 1
    done = report["_progress"]
    assert done[-1][0] == done[-1][1] and all(a <= b for (a, _), (b, _) in zip(done, done[1:]))


def test_second_run_comes_from_the_cache(trained, report, home):
    from geocam_gui.core.analysis.run import run_analysis

    again = run_analysis([trained["biased"]["checkpoint"], trained["plain"]["checkpoint"]], trained["biased"]["index"])
    assert all(m["cached"] for m in again["models"])
    assert again["models"][0]["faithfulness"] == report["models"][0]["faithfulness"]


def test_cli_writes_report_files_that_open(trained, home, tmp_path):
    from geocam_gui.cli import main

    out = tmp_path / "rep"
    rc = main(["analyze", "--checkpoint", trained["biased"]["checkpoint"], trained["plain"]["checkpoint"],
               "--data", str(trained["biased"]["data"]), "--out", str(out)])
    assert rc == 0
    rep = json.loads((out / "report.json").read_text())
    assert len(rep["models"]) == 2
    html = (out / "report.html").read_text()
    assert html.count("<table>") >= 5 and "Pointing game" in html and "Sky-bias probe" in html and "Which kinds" in html
    assert "Above chance" in html  # every explanation comes with whether its model beats chance
    at_chance = [m for m in rep["models"] if not m["chance"]["above_chance"]]
    assert html.count("class='warn'") == len(at_chance)
    assert html.count("data:image/png;base64,") >= 6
    for name in ("accuracy", "confusion", "localisation", "faithfulness", "sanity", "agreement"):
        with Image.open(out / f"{name}.png") as im:
            assert im.size[0] > 100
    mosaics = [e["mosaic"] for m in rep["models"] for e in m["elements"].values() if e["mosaic"]]
    assert mosaics and all((out / name).is_file() for name in mosaics)


# --------------------------------------------------------------------------- bad input


def test_checkpoint_with_other_classes_is_a_bad_argument(trained, home, tmp_path, capsys):
    from geocam_gui.cli import main
    from geocam_gui.core.analysis.run import run_analysis
    from geocam_gui.core.errors import BadArgument

    ck = _untrained(tmp_path, classes=("paris", "rome"))
    with pytest.raises(BadArgument, match="trained on classes"):
        run_analysis([ck], trained["biased"]["index"])
    rc = main(["analyze", "--checkpoint", ck, "--data", str(trained["biased"]["data"]), "--out", str(tmp_path / "o")])
    assert rc == 2 and "trained on classes ['paris', 'rome']" in capsys.readouterr().err
    rc = main(["analyze", "--checkpoint", str(tmp_path / "nope.json"), "--data", str(trained["biased"]["data"]),
               "--out", str(tmp_path / "o")])
    assert rc == 2 and "does not exist" in capsys.readouterr().err


def test_split_without_images_and_bad_settings_are_clear_errors(trained, home, tmp_path):
    from geocam_gui.core.analysis.run import run_analysis
    from geocam_gui.core.data.datasets import DatasetIndex
    from geocam_gui.core.errors import BadArgument, DataError

    idx = trained["biased"]["index"]
    no_test = DatasetIndex([s for s in idx.samples if s.split != "test"], idx.classes, idx.roots, idx.layout)
    ck = _untrained(tmp_path)
    with pytest.raises(DataError, match="no images"):
        run_analysis([ck], no_test)
    with pytest.raises(BadArgument, match="method"):
        run_analysis([ck], idx, method="magic")
    with pytest.raises(BadArgument, match="limit"):
        run_analysis([ck], idx, limit=0)
    with pytest.raises(BadArgument, match="at least one checkpoint"):
        run_analysis([], idx)


def test_missing_masks_are_counted_not_fatal(trained, home, tmp_path):
    import shutil

    from geocam_gui.core.data import datasets
    from geocam_gui.core.data import demo as synthetic
    from geocam_gui.core.analysis.run import run_analysis

    data = tmp_path / "demo"
    shutil.copytree(trained["plain"]["data"], data)
    index = datasets.open_data(data)
    test = index.split("test")
    for s in test[:5]:
        synthetic.mask_paths(s.path)["evidence"].unlink()
    rep = run_analysis([_untrained(tmp_path)], index, bias_sets={})
    loc = rep["models"][0]["localisation"]
    assert loc["images"] == len(test) and loc["with_evidence_mask"] == len(test) - 5 and loc["without_masks"] == 5
    for s in test:
        synthetic.mask_paths(s.path)["evidence"].unlink(missing_ok=True)
    rep = run_analysis([_untrained(tmp_path)], index, bias_sets={}, use_cache=False)
    assert rep["models"][0]["localisation"]["available"] is False


def test_per_kind_pointing_game_and_energy_follow_their_definitions():
    from geocam_gui.core.analysis import kinds as ak

    parts = np.ones((2, 16, 16), np.uint8)  # kind 1 everywhere ...
    parts[:, 4:8, 4:8] = 2  # ... a block of kind 2 ...
    parts[1, 12:, 12:] = 3  # ... and kind 3 only in image 1
    maps = np.zeros((2, 16, 16))
    maps[0, 4, 4] = 1.0  # image 0 peaks on kind 2, at its corner
    maps[1, 14, 14] = 3.0  # image 1 peaks on kind 3, with some energy on kind 2
    maps[1, 5, 5] = 1.0
    hit, energy = ak.per_kind(maps, parts, 4, tolerance=1)
    assert np.isnan(hit[:, 0]).all() and np.isnan(hit[0, 3])  # unlabelled never, absent kinds NaN
    assert hit[0, 2] == 1 and hit[1, 3] == 1 and hit[1, 2] == 0
    assert hit[0, 1] == 1  # kind 1 lies within the 1-px tolerance of the peak (its block's rim)
    assert energy[0, 2] == 1.0 and energy[1, 3] == 0.75 and energy[1, 2] == 0.25
    out = ak.summary(hit, energy, parts, np.array([0, 1]), ["a", "b"], ["unlabelled", "road", "sign", "car"])
    assert out["available"] and out["per_class"]["a"]["sign"] == {"n": 1, "hit": 1.0, "energy": 1.0,
                                                                  "area": 16 / 256}
    assert "car" not in out["per_class"]["a"] and out["per_class"]["b"]["car"]["hit"] == 1.0
    assert not ak.summary(None, None, None, np.array([0]), ["a"], None)["available"]


def test_sanity_cascade_of_a_model_whose_maps_are_all_constant():
    """An untrained model can give constant maps for every image (found by gpu_check's rehearsal:
    ``geocam analyze`` crashed on them); nothing can be ranked, so every step counts 0 images."""
    import torch

    from geocam_gui.core.models import build_model

    model = build_model("shallow", 2).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    out = amod.sanity_cascade(model, "shallow", images, np.array([0, 1, 0]), method="gradcam",
                              device=torch.device("cpu"))
    assert out["n"] == 0 and out["n_constant_trained"] == 3
    assert len(out["steps"]) == 1 + len(amod.cascade_groups(model))
    assert all(s["spearman"]["n"] == 0 and s["spearman"]["mean"] is None for s in out["steps"])


# --------------------------------------------------------------------------- report drawing


def test_count_colour_reads_on_its_cell_whatever_the_scale_starts_at():
    from geocam_gui.core.analysis.report import text_color

    # counts 5..7: 5 is the scale's minimum, near white, so its text is black (it was drawn
    # white on near-white when only the maximum was looked at)
    assert text_color(5, 5, 7, "Blues") == "black" and text_color(7, 5, 7, "Blues") == "white"
    assert text_color(0, 0, 7, "Blues") == "black" and text_color(7, 0, 7, "Blues") == "white"
    assert text_color(3, 3, 3, "Blues") == "black"  # one count everywhere: no division by zero
    assert text_color(-0.39, -0.4, 1.0, "viridis") == "white" and text_color(1.0, -0.4, 1.0, "viridis") == "black"
    assert text_color(float("nan"), 0, 1) == "black"


def test_confusion_figure_colours_each_count_for_its_cell():
    from geocam_gui.core.analysis.report import confusion_figure

    m = {"accuracy": {"confusion": [[7, 5], [5, 7]], "classes": ["harbourtown", "stonebury"]}}
    fig = confusion_figure([m], ["Shallow CNN"])
    colours = {t.get_text(): t.get_color() for t in fig.axes[0].texts}
    assert colours == {"7": "white", "5": "black"}
    im = fig.axes[0].images[0]
    assert im.norm.vmin == 5 and im.norm.vmax == 7


def test_agreement_colour_bar_covers_negative_correlations(report):
    from geocam_gui.core.analysis.report import agreement_figure, value_range

    assert value_range([0.2, -0.39, 1.0]) == (-0.4, 1.0) and value_range([0.2, float("nan")]) == (0.0, 1.0)
    rep = json.loads(json.dumps(report))
    rep["agreement"]["pairs"][0]["spearman"]["mean"] = -0.39
    fig = agreement_figure(rep, ["A", "B"])
    iou, spearman = [ax.images[0] for ax in fig.axes if ax.images and ax.get_title()]
    assert spearman.norm.vmin <= -0.39 and spearman.norm.vmax == 1.0
    assert spearman.colorbar.ax.get_ylim()[0] <= -0.39  # the bar drawn beside it shows that range
    assert iou.norm.vmin == 0.0  # IoU stays on 0..1


def test_report_tables_use_display_names_only(report):
    from geocam_gui.core.analysis.report import display_name, tables

    names = {display_name(m) for m in report["models"]}
    assert all(n.startswith("Shallow CNN (") for n in names) and len(names) == 2
    keys = {m["key"] for m in report["models"]}
    for name, t in tables(report).items():
        cells = [c for row in t["rows"] for c in row] + t["columns"]
        assert not keys & set(cells), f"internal names in the {name} table"
        assert not any(str(c).startswith("shallow") for c in cells), name
    agreement = tables(report)["agreement"]["rows"][0]
    assert set(agreement[:2]) == names
    loc = tables(report)["localisation"]
    assert len(loc["rows"]) == 2 and len(loc["rows"][0]) == len(loc["columns"])
