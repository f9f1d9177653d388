"""Units and Network Dissection with planted truth (core, no Qt)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from geocam_gui.core.analysis import dissection as nd
from geocam_gui.core.analysis import units as un
from geocam_gui.core.data import demo as synthetic
from geocam_gui.core.data.demo.draw import PARTS

SKY, ROAD, WALL = (80, 140, 230), (120, 120, 120), (150, 100, 70)
KINDS = ["unlabelled", "sky", "road", "building"]


class Noise(nn.Module):
    """Replaces channel 1 by noise seeded from the image itself: unrelated to any concept."""

    def forward(self, x):
        x = x.clone()
        for b in range(len(x)):
            g = torch.Generator().manual_seed(int(x[b].abs().sum().item() * 1000) % (2**31))
            x[b, 1] = torch.rand(x.shape[-2:], generator=g) * 3
        return x


class PlantedNet(nn.Module):
    """Channel 0 fires on the sky's colour (blue minus red, a 1x1 convolution), channel 1 is
    noise, channel 2 is silent."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.bias.zero_()
            self.conv.weight[0, 2], self.conv.weight[0, 0], self.conv.bias[0] = 1.0, -1.0, -1.5
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.noise = Noise()
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))

    def forward(self, x):
        return self.head(self.noise(self.pool(self.relu(self.conv(x)))))


def planted_set(root, n=24, size=32, seed=0):
    """Buildings over a road, and in every twelfth image an 8 x 8 patch of sky, in the label-map
    format of the demo generator (``_masks/<class>/<stem>_parts.png`` + ``parts_legend.json``).

    The sky is kept rare (0.52 % of all pixels) on purpose: with the top-0.5 % threshold of
    Network Dissection, a concept covering a share ``a`` of the pixels can reach an IoU of at
    most 0.005 / a."""
    rng = np.random.default_rng(seed)
    paths, images = [], []
    for i in range(n):
        cls = ("pittsburgh", "tokyo")[i % 2]
        lab = np.full((size, size), 3, np.uint8)
        road_h = int(rng.integers(4, size // 3))
        lab[size - road_h :] = 2
        if i % 12 == 0:
            y, x = 2 * int(rng.integers(0, 6)), 2 * int(rng.integers(0, 12))
            lab[y : y + 8, x : x + 8] = 1
        colours = np.array([WALL, SKY, ROAD, WALL], np.float64)
        img = colours[lab] + rng.normal(0, 3, (size, size, 3))
        img = np.clip(img, 0, 255).astype(np.uint8)
        (root / cls).mkdir(parents=True, exist_ok=True)
        (root / "_masks" / cls).mkdir(parents=True, exist_ok=True)
        p = root / cls / f"p{i:04d}_v0.png"
        Image.fromarray(img).save(p)
        Image.fromarray(lab, mode="L").save(root / "_masks" / cls / f"p{i:04d}_v0_parts.png")
        paths.append(str(p))
        images.append(img)
    (root / synthetic.LEGEND).write_text(json.dumps({"kinds": KINDS}))
    return paths, np.stack(images)


def test_streaming_quantile_within_its_stated_error():
    rng = np.random.default_rng(1)
    q = nd.StreamingQuantile(3, bins=256)
    chunks = []
    for i in range(12):  # the range grows up and down after the first batch
        c = np.stack([rng.normal(0, 1 + i, 5000), rng.exponential(1 + 3 * i, 5000) - i,
                      np.maximum(0, rng.normal(-1, 2, 5000))])
        chunks.append(c)
        q.add(torch.from_numpy(c))
    allv = np.concatenate(chunks, 1)
    for quant in (nd.QUANTILE, 0.5, 0.0, 1.0):
        est, err = q.quantile(quant)
        truth = np.quantile(allv, quant, axis=1)
        assert np.all(np.abs(est - truth) <= err), (quant, est, truth, err)
        span = allv.max(1) - allv.min(1)
        assert np.all(err <= 4 * span / 256 + 1e-9)  # the bound is itself small


def test_planted_sky_unit_is_a_sky_detector_and_noise_is_nothing(tmp_path):
    torch.manual_seed(0)
    paths, images = planted_set(tmp_path)
    labels = nd.LabelSource(paths, 32, KINDS)
    scan = un.scan_layer(PlantedNet(), "noise", images, k=5, labels_for=labels, batch=7)
    assert not labels.problems and labels.missing == 0
    s = nd.summarise(scan.ious, KINDS)
    assert s["best"][0] == "sky" and scan.ious[0, 1] > 0.5
    assert s["best"][1] is None and scan.ious[1].max() <= nd.IOU_THRESHOLD
    assert s["best"][2] is None
    assert s["detectors"] == 1 and s["by_concept"] == {"sky": 1}
    # the threshold is the true top-0.5 % quantile of the layer's activations, within its bound
    net = PlantedNet()
    acts = torch.cat([un.activations(net, un.preprocess(images[i : i + 8]), net.noise)
                      for i in range(0, len(images), 8)])
    truth = np.quantile(acts.transpose(0, 1).reshape(3, -1).numpy(), nd.QUANTILE, axis=1)
    assert np.abs(scan.thresholds[0] - truth[0]) <= scan.threshold_error[0]
    # the spool and the recomputing second pass agree
    again = un.scan_layer(PlantedNet(), "noise", images, k=5, labels_for=nd.LabelSource(paths, 32, KINDS),
                          batch=5, spool_limit=0)
    np.testing.assert_allclose(again.ious[0], scan.ious[0], atol=0.02)


def test_top_k_are_the_true_top_k(tmp_path):
    rng = np.random.default_rng(3)
    images = rng.integers(0, 255, (23, 32, 32, 3), dtype=np.uint8)
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 5, 3), nn.ReLU())
    scan = un.scan_layer(model, "4", images, k=4, batch=6)
    acts = un.activations(model, un.preprocess(images), model[4]).numpy()  # (N, U, h, w)
    per_image = acts.reshape(len(images), 5, -1).max(2)  # (N, U)
    for u in range(5):
        order = np.sort(per_image[:, u])[::-1][:4]
        np.testing.assert_allclose(scan.top.score[u], order, rtol=1e-5)
        np.testing.assert_allclose(per_image[scan.top.image[u], u], scan.top.score[u], rtol=1e-5)
        for j in range(4):
            y, x = scan.top.peak[u, j]
            assert acts[scan.top.image[u, j], u, y, x] == pytest.approx(scan.top.score[u, j], rel=1e-5)
            np.testing.assert_allclose(scan.top.maps[u, j], acts[scan.top.image[u, j], u], rtol=2e-3, atol=1e-3)
    assert scan.ious is None
    # the statistics do not grow with the number of images
    small = un.scan_layer(model, "4", images[:7], k=4, batch=6)
    assert small.stats_bytes == scan.stats_bytes and small.top.maps.shape == scan.top.maps.shape


def test_receptive_field_and_filter_grid():
    from geocam_gui.core.models import build_model

    vgg = build_model("vgg11", 2)
    rf = un.receptive_field(vgg, "features.0")
    assert rf == {"size": 3.0, "jump": 1.0, "start": 0.5}
    rf = un.receptive_field(vgg, "features.3")  # conv, pool, conv
    assert rf["size"] == 8 and rf["jump"] == 2
    res = build_model("resnet18", 2)
    assert un.receptive_field(res, "layer4.1")["jump"] == 32
    assert un.layer_choices(res, "resnet18")[0] == "layer4.1"
    grid = un.filter_grid(res)
    assert grid.dtype == np.uint8 and grid.shape[2] == 3 and grid.shape[0] == 8 * (7 * 6 + 1) + 1


# --------------------------------------------------------------------------- CLI


def tiny_demo(root, *, labels=True):
    """A tiny demo set with the generator's own label maps; without ``labels``, they are removed."""
    from geocam_gui.core.data.demo import generate_demo

    generate_demo(root, per_class=10, size=40, views_per_place=2)
    if not labels:
        for m in (root / "_masks").rglob("*_parts.png"):
            m.unlink()
        (root / synthetic.LEGEND).unlink()
    return root


def _checkpoint(tmp_path, name="shallow", size=40):
    from geocam_gui.core.checkpoints import save_checkpoint
    from geocam_gui.core.models import build_model

    torch.manual_seed(0)
    return str(save_checkpoint(tmp_path / "run" / name / "best", build_model(name, 2),
                               {"model": name, "classes": ["pittsburgh", "tokyo"], "image_size": size}))


def test_cli_units_on_labelled_demo_and_cache(tmp_path, capsys):
    from geocam_gui.cli import main

    data = tiny_demo(tmp_path / "demo")
    ck = _checkpoint(tmp_path)
    out = tmp_path / "out"
    rc = main(["units", "-c", ck, "--data", str(data), "--top", "3", "--out", str(out), "--figure", "pdf"])
    assert rc == 0, capsys.readouterr().err
    doc = json.loads((out / "units.json").read_text())
    m = doc["models"][0]
    assert m["layer"] == "features.14" and m["units_count"] == 256 and m["decoded"] == 4
    d = m["dissection"]
    assert d["available"] and d["labelled_images"] == 4 and "randomised" in d
    assert d["detectors"] == sum(d["by_concept"].values()) == sum(u["concept"] is not None for u in m["units"])
    u = m["units"][0]
    assert len(u["top"]) == 3 and set(u["ious"]) == set(PARTS[1:]) and (out / u["mosaic"]).is_file()
    assert all(0 <= v <= 1 for v in u["top"][0]["box"])
    html_text = (out / "units.html").read_text()
    assert "filters_shallow.png" in html_text and "detectors.png" in html_text
    side = json.loads((out / "detectors_chart.pdf.json").read_text())
    assert side["kind"] == "detectors" and side["sources"][0]["checkpoint"] == ck
    assert (out / "detectors_chart.pdf").read_bytes()[:4] == b"%PDF"
    assert "detectors" in capsys.readouterr().out
    # the second run comes from the cache and agrees
    from geocam_gui.core.analysis.units_run import run_units
    from geocam_gui.core.data.datasets import open_data

    again = run_units(ck, open_data(data), top=3)
    assert again["cached"] and again["dissection"]["detectors"] == d["detectors"]


def test_cli_units_without_label_maps_says_why(tmp_path, capsys):
    from geocam_gui.cli import main

    data = tiny_demo(tmp_path / "photos", labels=False)
    out = tmp_path / "out"
    rc = main(["units", "-c", _checkpoint(tmp_path), "--data", str(data), "--top", "2", "--out", str(out),
               "--layer", "features.4"])
    assert rc == 0
    m = json.loads((out / "units.json").read_text())["models"][0]
    assert m["layer"] == "features.4" and not m["dissection"]["available"]
    assert "no per-pixel label maps" in m["dissection"]["reason"]
    assert "no per-pixel label maps" in (out / "units.html").read_text()
    assert all(u["concept"] is None and len(u["top"]) == 2 for u in m["units"])
    assert "No dissection" in capsys.readouterr().out


def test_cli_units_bad_arguments(tmp_path, capsys):
    from geocam_gui.cli import main

    data = tiny_demo(tmp_path / "d", labels=False)
    ck = _checkpoint(tmp_path)
    assert main(["units", "-c", ck, "--data", str(data), "--layer", "nope", "--out", str(tmp_path / "o")]) == 2
    assert "no layer 'nope'" in capsys.readouterr().err
    assert main(["units", "-c", ck, "--data", str(data), "--top", "0", "--out", str(tmp_path / "o")]) == 2
    (data / synthetic.LEGEND).write_text('{"kinds": "sky"}')  # a hostile legend: no dissection, a reason
    legend, why = nd.read_legend([data])
    assert legend is None and "kinds" in why and str(data) in why


def test_iou_matches_an_independent_numpy_reference(tmp_path):
    """IoU recomputed with numpy: maps upsampled by ``render.resize_map`` (its own bilinear
    implementation), thresholded at the scan's thresholds, sums over the whole split."""
    from geocam_gui.core.explain.render import resize_map

    torch.manual_seed(5)
    paths, images = planted_set(tmp_path, n=12)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 3, 3, padding=1))
    scan = un.scan_layer(model, "3", images, k=2, labels_for=nd.LabelSource(paths, 32, KINDS), batch=5)
    acts = un.activations(model, un.preprocess(images), model[3]).numpy()
    labels = np.stack([nd.load_label_map(p, 32, len(KINDS))[0] for p in paths])
    for u in range(3):
        masks = np.stack([resize_map(a, (32, 32)) > scan.thresholds[u] for a in acts[:, u]])
        for c in range(1, len(KINDS)):
            lab = labels == c
            ref = (masks & lab).sum() / max(1, (masks | lab).sum())
            assert scan.ious[u, c] == pytest.approx(ref, abs=2e-3)


def test_hostile_label_maps_are_skipped_with_a_reason(tmp_path):
    paths, _ = planted_set(tmp_path, n=4)
    bad = nd.parts_path(paths[1])
    Image.fromarray(np.full((16, 16), 1, np.uint8), mode="L").save(bad)  # wrong size
    Image.fromarray(np.full((32, 32), 9, np.uint8), mode="L").save(nd.parts_path(paths[2]))  # not in the legend
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(nd.parts_path(paths[3]))  # RGB
    src = nd.LabelSource(paths, 32, KINDS)
    labels, has = src(np.arange(4))
    assert has.tolist() == [True, False, False, False]
    reasons = " ".join(r for _, r in src.problems)
    assert "size" in reasons and "legend" in reasons and "mode RGB" in reasons
    cached = nd.LabelSource(paths, 32, KINDS)
    cached.prepare()
    again = nd.LabelSource(paths, 32, KINDS)
    again.prepare()  # from the cache this time
    for src2 in (cached, again):
        l2, h2 = src2(np.arange(4))
        assert (l2 == labels).all() and (h2 == has).all() and sorted(src2.problems) == sorted(src.problems)


def test_cancel_stops_the_scan_and_removes_the_spool(tmp_path):
    from geocam_gui.core import paths
    from geocam_gui.core.errors import Cancelled

    paths_, images = planted_set(tmp_path, n=12)
    ticks = []
    with pytest.raises(Cancelled):
        un.scan_layer(PlantedNet(), "noise", images, k=2, labels_for=nd.LabelSource(paths_, 32, KINDS), batch=4,
                      tick=lambda d, t: ticks.append(d), cancel=lambda: len(ticks) >= 4)
    assert ticks == [1, 2, 3, 4]  # stopped in the second pass, after the spool was written
    assert not list((paths.cache_dir() / "units").glob(".spool-*"))


@pytest.mark.parametrize("h", [4, 5, 7])
def test_iou_window_path_matches_the_full_upsampling(h):
    """Maps with one cell above the threshold take the windowed path; maps with several the
    full one; both against numpy (render.resize_map), sizes that do and do not divide 32."""
    from geocam_gui.core.explain.render import resize_map

    rng = np.random.default_rng(h)
    acts = rng.random((6, 3, h, h)).astype(np.float32)
    acts[:3, 0] *= 0.5
    acts[:3, 0, 1, 2] = 0.95  # exactly one hot cell for unit 0 on three images
    acts[:, 2, 0, 0] = 0.99  # a corner cell
    t = np.array([0.9, 0.8, 0.9])
    labels = rng.integers(0, 4, (6, 32, 32)).astype(np.uint8)
    c = nd.IoUCounter(t, 4, chunk=2)
    c.add(torch.from_numpy(acts), labels)
    for u in range(3):
        masks = np.stack([resize_map(a, (32, 32)) > t[u] for a in acts[:, u]])
        assert c.act[u].item() == masks.sum()
        for k in range(4):
            assert c.inter[u, k].item() == (masks & (labels == k)).sum()
