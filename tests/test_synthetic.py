"""The procedural demo set: layout, determinism, masks, sky bias, grouped splits, bad input."""

from __future__ import annotations

import csv
import os
import hashlib
import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geocam_gui import cli
from geocam_gui.core.data import demo as synthetic
from geocam_gui.core.errors import BadArgument, Cancelled, DataError
from geocam_gui.core.data.demo.draw import EVIDENCE, render
from geocam_gui.core.data.demo.scene import build_scene

SMALL = dict(per_class=24, size=64, views_per_place=2)


def _manifest(out: Path) -> list[dict]:
    with open(out / "manifest.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def unbiased(tmp_path_factory) -> Path:
    """60 images per class at sky bias 0.5 (also the test split): the colour-statistics set."""
    out = tmp_path_factory.mktemp("unbiased") / "demo"
    return synthetic.generate_demo(out, per_class=60, size=64, sky_bias=0.5, test_sky_bias=0.5, seed=3,
                                   views_per_place=2)


@pytest.fixture(scope="module")
def biased(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("biased") / "demo"
    return synthetic.generate_demo(out, per_class=60, size=64, sky_bias=0.9, test_sky_bias=0.1, seed=5,
                                   views_per_place=2)


def test_layout_manifest_and_balance(unbiased):
    rows = _manifest(unbiased)
    assert list(rows[0]) == ["path", "label", "group", "sky", "layout", "split"]
    assert Counter(r["label"] for r in rows) == {"pittsburgh": 60, "tokyo": 60}
    for r in rows:
        image = unbiased / r["path"]
        assert "\\" not in r["path"] and image.parent.name == r["label"]
        assert r["group"].startswith(r["label"] + "_p") and image.stem.startswith(r["group"].split("_", 1)[1])
        assert r["sky"] in ("clear", "cloudy") and r["split"] in ("train", "val", "test")
        assert r["layout"] == "any"  # layout_bias 0: no layout cue anywhere
        with Image.open(image) as im:
            assert (im.mode, im.size) == ("RGB", (64, 64))
        for kind, mask in synthetic.mask_paths(image).items():
            if kind == "parts":
                continue  # test_parts_label_map
            with Image.open(mask) as m:
                assert (m.mode, m.size) == ("L", (64, 64)), kind
                assert set(np.unique(np.asarray(m))) <= {0, 255}
    readme = (unbiased / "README.txt").read_text(encoding="utf-8")
    assert f"generator_version = {synthetic.GENERATOR_VERSION}" in readme
    for key in synthetic.DEFAULTS:
        assert f"{key} = " in readme
    assert synthetic.is_demo_dir(unbiased)
    assert not list(unbiased.parent.glob(".*tmp*"))  # the temporary folder is gone


def test_same_arguments_give_identical_files(tmp_path):
    a = synthetic.generate_demo(tmp_path / "a", **SMALL, seed=11)
    b = synthetic.generate_demo(tmp_path / "b", **SMALL, seed=11)
    c = synthetic.generate_demo(tmp_path / "c", **SMALL, seed=12)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)


def test_groups_never_shared_between_splits_and_split_is_6_2_2(unbiased):
    rows = _manifest(unbiased)
    split_of = defaultdict(set)
    for r in rows:
        split_of[r["group"]].add(r["split"])
    assert all(len(s) == 1 for s in split_of.values())
    groups = Counter(next(iter(s)) for s in split_of.values())
    assert groups == {"train": 36, "val": 12, "test": 12}  # 30 places per class, 18/6/6 each
    for split in ("train", "val", "test"):
        labels = Counter(r["label"] for r in rows if r["split"] == split)
        assert labels["pittsburgh"] == labels["tokyo"]


def test_views_of_a_place_share_their_scene_but_are_shifted(unbiased):
    rows = [r for r in _manifest(unbiased) if r["group"] == "tokyo_p0003"]
    assert len(rows) == 2 and len({r["sky"] for r in rows}) == 1
    a, b = (np.asarray(Image.open(unbiased / r["path"]), float) for r in rows)
    assert 0 < np.abs(a - b).mean() < 40


def test_sky_bias_rates(biased):
    rows = _manifest(biased)
    for split, bias in (("train", 0.9), ("val", 0.9), ("test", 0.1)):
        part = [r for r in rows if r["split"] == split]
        pitt_cloudy = np.mean([r["sky"] == "cloudy" for r in part if r["label"] == "pittsburgh"])
        tokyo_clear = np.mean([r["sky"] == "clear" for r in part if r["label"] == "tokyo"])
        n = len(part) / 2
        # exact to within one image per class (rounded once per split, not per place)
        assert abs(pitt_cloudy - bias) * n <= 1 and abs(tokyo_clear - bias) * n <= 1, split
    # the sky mask is where the sky is drawn: cloudy skies are grey, clear ones blue
    for r in rows[:40]:
        image = np.asarray(Image.open(biased / r["path"]), float)
        sky = np.asarray(Image.open(synthetic.mask_paths(biased / r["path"])["sky"])) > 0
        assert sky.mean() > 0.02
        blue = (image[sky][:, 2] - image[sky][:, 0]).mean()
        assert (blue > 40) == (r["sky"] == "clear"), r["path"]


def test_evidence_masks_cover_the_evidence(unbiased):
    fractions = defaultdict(list)
    for r in _manifest(unbiased):
        m = np.asarray(Image.open(synthetic.mask_paths(unbiased / r["path"])["evidence"])) > 0
        fractions[r["label"]].append(m.mean())
    for label, values in fractions.items():
        assert 0.03 <= np.mean(values) <= 0.15, (label, np.mean(values))
        assert np.mean(np.array(values) > 0) > 0.95, label


@pytest.mark.parametrize("city", ["pittsburgh", "tokyo"])
def test_evidence_pixels_differ_from_the_scene_without_evidence(city):
    """Rendering the same place with the evidence ops left out changes the pixels inside the
    evidence mask and (up to a one-pixel rim of anti-aliasing) nothing outside it."""
    for i in range(6):
        scene = build_scene(np.random.default_rng([42, i]), city, cloudy=bool(i % 2))
        image, evidence, _, _ = render(scene, 64, 1.05, 0.01, -0.01, 1.0, (1.0, 1.0, 1.0))
        scene.ops = [op for op in scene.ops if op[3] != EVIDENCE]
        plain, none, _, _ = render(scene, 64, 1.05, 0.01, -0.01, 1.0, (1.0, 1.0, 1.0))
        assert not none.any() and evidence.mean() > 0.01
        diff = np.abs(image.astype(int) - plain.astype(int)).max(axis=2)
        assert (diff[evidence] > 12).mean() > 0.8
        rim = evidence.copy()
        for axis in (0, 1):
            for shift in (-1, 1):
                rim |= np.roll(evidence, shift, axis=axis)
        rim |= np.roll(np.roll(evidence, 1, 0), 1, 1) | np.roll(np.roll(evidence, -1, 0), -1, 1)
        rim |= np.roll(np.roll(evidence, 1, 0), -1, 1) | np.roll(np.roll(evidence, -1, 0), 1, 1)
        assert (diff[~rim] > 0).mean() < 0.01


def _logistic_accuracy(x_train, y_train, x_test, y_test) -> float:
    mean, std = x_train.mean(0), x_train.std(0) + 1e-9
    a = np.c_[(x_train - mean) / std, np.ones(len(x_train))]
    b = np.c_[(x_test - mean) / std, np.ones(len(x_test))]
    w = np.zeros(a.shape[1])
    for _ in range(3000):
        p = 1 / (1 + np.exp(-a @ w))
        w -= 0.5 * (a.T @ (p - y_train) / len(a) + 1e-4 * w)
    return float(((b @ w > 0) == y_test).mean())


def test_mean_colours_do_not_separate_the_cities(unbiased):
    """At sky bias 0.5 a logistic regression on per-channel mean colours stays <= 70 %."""
    rows = _manifest(unbiased)
    x = np.array([np.asarray(Image.open(unbiased / r["path"]), float).reshape(-1, 3).mean(0) for r in rows])
    y = np.array([r["label"] == "tokyo" for r in rows], float)
    train = np.array([r["split"] != "test" for r in rows])
    held_out = _logistic_accuracy(x[train], y[train], x[~train], y[~train])
    fitted = _logistic_accuracy(x, y, x, y)  # even fitted on everything
    assert held_out <= 0.70 and fitted <= 0.70, (held_out, fitted)


@pytest.mark.parametrize("kwargs", [
    dict(per_class=9), dict(size=31), dict(sky_bias=1.2), dict(sky_bias=-0.1), dict(test_sky_bias=float("nan")),
    dict(layout_bias=-0.1), dict(layout_bias="x"), dict(test_layout_bias=-1.5), dict(test_layout_bias=float("nan")),
    dict(views_per_place=0), dict(per_class=10, views_per_place=5), dict(seed=-1), dict(per_class=12.5),
])
def test_bad_arguments_write_nothing(tmp_path, kwargs):
    with pytest.raises(BadArgument):
        synthetic.generate_demo(tmp_path / "out", **kwargs)
    assert not any(tmp_path.iterdir())


def test_cli_exit_codes_and_summary(tmp_path, capsys):
    assert cli.main(["demo-data", str(tmp_path / "a"), "--per-class", "5"]) == 2
    assert cli.main(["demo-data", str(tmp_path / "a"), "--sky-bias", "1.5"]) == 2
    assert cli.main(["demo-data", str(tmp_path / "a"), "--size", "16"]) == 2
    assert not (tmp_path / "a").exists()
    capsys.readouterr()
    assert cli.main(["demo-data", str(tmp_path / "a"), "--per-class", "12", "--size", "48", "--seed", "2",
                     "--views-per-place", "3", "--sky-bias", "0.6", "--test-sky-bias", "0.4"]) == 0
    summary = capsys.readouterr().out.strip()
    assert summary.count("\n") == 0 and "24 demo images" in summary
    assert "sky_bias = 0.6" in (tmp_path / "a" / "README.txt").read_text()


def test_refuses_a_foreign_folder_unless_forced(tmp_path, capsys):
    out = tmp_path / "photos"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"not ours")
    with pytest.raises(DataError):
        synthetic.generate_demo(out, **SMALL)
    assert cli.main(["demo-data", str(out), "--per-class", "12"]) == 1
    assert sorted(p.name for p in out.iterdir()) == ["holiday.jpg"]
    synthetic.generate_demo(out, **SMALL, force=True)
    assert (out / "holiday.jpg").read_bytes() == b"not ours" and (out / "manifest.csv").is_file()
    file_out = tmp_path / "a_file"
    file_out.write_text("x")
    with pytest.raises(DataError):
        synthetic.generate_demo(file_out, **SMALL, force=True)


def test_an_earlier_demo_set_is_replaced(tmp_path):
    out = synthetic.generate_demo(tmp_path / "demo", **SMALL, seed=1)
    (out / "tokyo" / "stale.png").write_bytes(b"x")
    synthetic.generate_demo(out, **{**SMALL, "per_class": 20}, seed=2)
    assert len(_manifest(out)) == 40 and not (out / "tokyo" / "stale.png").exists()


def test_cancel_leaves_nothing(tmp_path):
    seen = []
    with pytest.raises(Cancelled):
        synthetic.generate_demo(tmp_path / "out", **SMALL, progress=lambda d, t: seen.append((d, t)),
                                cancel=lambda: len(seen) >= 5)
    assert seen[-1] == (10, 48)  # after every place (2 views each)
    assert not any(tmp_path.iterdir())


def test_worker_processes_write_the_same_bytes_and_cancel_cleanly(tmp_path):
    """Large sets are drawn in worker processes; the files do not depend on how many."""
    params = dict(per_class=60, size=40, views_per_place=3, seed=4)  # 120 images: 3 chunks
    one = synthetic.generate_demo(tmp_path / "one", **params, workers=1)
    seen = []
    two = synthetic.generate_demo(tmp_path / "two", **params, workers=2, progress=lambda d, t: seen.append((d, t)))
    assert _digest(one) == _digest(two)
    assert seen[-1] == (120, 120) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    with pytest.raises(Cancelled):
        synthetic.generate_demo(tmp_path / "cancelled", **params, workers=2, cancel=lambda: bool(seen.append(1)) or
                                len(seen) > 5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]  # no partial folder left
    with pytest.raises(BadArgument):
        synthetic.generate_demo(tmp_path / "bad", **params, workers=0)


def test_ensure_demo_generates_once_in_the_cache(_isolated_home):
    calls = []
    params = dict(per_class=10, size=32, views_per_place=2)
    folder = synthetic.ensure_demo(progress=lambda d, t: calls.append(d), **params)
    assert folder == synthetic.demo_dir(**params)
    assert folder.is_relative_to(_isolated_home) and folder.parent.name == "demo"
    assert folder.name.startswith(f"v{synthetic.GENERATOR_VERSION}-")
    assert calls == list(range(2, 21, 2))  # after every place (2 views each)
    assert synthetic.ensure_demo(progress=lambda d, t: calls.append(d), **params) == folder
    assert len(calls) == 10  # reused
    assert synthetic.demo_dir(**{**params, "seed": 1}) != folder
    assert synthetic.demo_dir() == synthetic.demo_dir(**synthetic.DEFAULTS)
    with pytest.raises(BadArgument):
        synthetic.demo_dir(colour="red")


def test_mask_paths():
    found = synthetic.mask_paths(Path("/data/demo/tokyo/p0001_v2.png"))
    assert found == {"evidence": Path("/data/demo/_masks/tokyo/p0001_v2_evidence.png"),
                     "sky": Path("/data/demo/_masks/tokyo/p0001_v2_sky.png"),
                     "parts": Path("/data/demo/_masks/tokyo/p0001_v2_parts.png")}


def test_parts_label_map(unbiased):
    """Each image has an indexed label map of every kind drawn: same size, values index the
    legend, no unlabelled pixel, the evidence kinds of its class are exactly its evidence mask and
    never appear in the other class, the sky kinds are exactly the sky mask outside the evidence."""
    legend = synthetic.parts_legend(unbiased)
    assert legend[0] == "unlabelled" and len(legend) == len(set(legend))
    raw = json.loads((unbiased / "parts_legend.json").read_text(encoding="utf-8"))
    assert raw["kinds"] == legend
    evidence_ids = {c: {legend.index(k) for k in kinds} for c, kinds in raw["evidence"].items()}
    seen = set()
    for r in _manifest(unbiased)[::7]:
        paths = synthetic.mask_paths(unbiased / r["path"])
        with Image.open(paths["parts"]) as im:
            assert im.mode in ("P", "L") and im.size == (64, 64)
            parts = np.asarray(im)
        seen |= set(np.unique(parts).tolist())
        assert parts.max() < len(legend) and (parts > 0).all()
        evidence = np.asarray(Image.open(paths["evidence"])) > 0
        own = np.isin(parts, list(evidence_ids[r["label"]]))
        other = np.isin(parts, list(evidence_ids["tokyo" if r["label"] == "pittsburgh" else "pittsburgh"]))
        assert not other.any()
        assert (own == evidence).all(), r["path"]
        sky = np.asarray(Image.open(paths["sky"])) > 0
        assert (np.isin(parts, [legend.index("sky"), legend.index("cloud")]) == (sky & ~evidence)).all()
    assert {legend.index(k) for k in ("sky", "road", "building", "window", "signboard", "glyph")} <= seen


@pytest.mark.parametrize("text", ["", "[]", '{"kinds": "sky"}', '{"kinds": [1, 2]}', '{"kinds": []}', "\xff\xfe"])
def test_a_bad_parts_legend_is_refused(tmp_path, text):
    (tmp_path / "parts_legend.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(DataError):
        synthetic.parts_legend(tmp_path)
    with pytest.raises(DataError):
        synthetic.parts_legend(tmp_path / "missing")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="reads /proc to find the workers")
def test_a_killed_generator_leaves_no_worker_behind(tmp_path, process_alive):
    """The window (or a script) drawing the demo set with worker processes is killed: its workers
    notice and exit instead of waiting on their task queue for ever."""
    import signal
    import subprocess
    import sys
    import time

    script = ("from geocam_gui.core.data.demo import generate_demo\n"
              "if __name__ == '__main__':\n"
              f"    generate_demo({str(tmp_path / 'demo')!r}, per_class=2000, size=64, workers=2)\n")
    (tmp_path / "draw.py").write_text(script)
    parent = subprocess.Popen([sys.executable, str(tmp_path / "draw.py")])

    def children(pid: int) -> list[int]:
        found = []
        for entry in os.listdir("/proc"):
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except (OSError, ValueError):
                continue
            if entry.isdigit() and int(fields[1]) == pid:
                found.append(int(entry))
        return found

    try:
        deadline = time.monotonic() + 120
        workers: list[int] = []
        while len(workers) < 3 and time.monotonic() < deadline:  # two workers and the resource tracker
            time.sleep(0.2)
            workers = children(parent.pid)
        assert parent.poll() is None and len(workers) >= 2, "the pool did not start"
        time.sleep(1.0)  # the workers are drawing
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 30
    while any(process_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [w for w in workers if process_alive(w)]
    for w in left:
        os.kill(w, signal.SIGKILL)
    assert not left, f"worker processes outlived their parent: {left}"


@pytest.mark.skipif(os.name != "posix", reason="probes processes with signal 0")
def test_a_killed_generators_half_drawn_folder_goes_at_the_next_generation(tmp_path):
    import subprocess

    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = tmp_path / f".demo.tmp-{gone.pid}"
    alive = tmp_path / f".demo.tmp-{os.getppid()}"  # a process that runs: perhaps still drawing
    other = tmp_path / ".demo.tmp-notes"
    for d in (dead, alive, other):
        (d / "pittsburgh").mkdir(parents=True)
    synthetic.generate_demo(tmp_path / "demo", per_class=10, size=32, workers=1)
    assert not dead.exists() and alive.is_dir() and other.is_dir()
    assert (tmp_path / "demo" / "manifest.csv").is_file()
