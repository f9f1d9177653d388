"""Layouts, grouped splits, balance, audit and the ``geocam index`` command, on tiny trees."""

from __future__ import annotations

import csv
import json
import os
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geocam_gui.cli import main as cli_main
from geocam_gui.core.data import datasets
from geocam_gui.core.data import layouts
from geocam_gui.core.data.datasets import DatasetIndex, Sample, index_dataset, open_data
from geocam_gui.core.errors import BadArgument, DataError


def write_image(path: Path, *, fmt: str | None = None, size=(16, 12), colour=None, seed=0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    if colour is not None:
        arr[:] = colour
    Image.fromarray(arr).save(path, format=fmt)
    return path


def class_tree(root: Path, spec: dict[str, tuple[int, int, str]], *, nested=False) -> Path:
    """spec: class -> (groups, views per group, extension). Files <group>_<view>.<ext>."""
    seed = 0
    for cls, (groups, views, ext) in spec.items():
        for g in range(groups):
            for v in range(views):
                seed += 1
                sub = root / cls / (f"place{g:02d}" if nested else "")
                name = f"place{g:02d}_{v}.{ext}" if nested else f"{cls[:3]}{g:02d}_pitch1_yaw{v}.{ext}"
                write_image(sub / name, seed=seed)
    return root


def assert_no_leak(index: DatasetIndex):
    where = defaultdict(set)
    for s in index.samples:
        where[(s.label, s.group)].add(s.split)
    straddle = {k: v for k, v in where.items() if len(v) > 1}
    assert not straddle, straddle


def assert_ratios(index: DatasetIndex, ratios=(6, 2, 2)):
    total = sum(ratios)
    for cls in index.classes:
        members = [s for s in index.samples if s.label == cls]
        biggest = max(Counter(s.group for s in members).values())
        for name, r in zip(datasets.SPLITS, ratios):
            n = sum(s.split == name for s in members)
            assert abs(n - len(members) * r / total) <= biggest, (cls, name, n, len(members))
            if r > 0:
                assert n > 0


def test_class_folders_grouped_by_panorama_no_leak_and_ratios(tmp_path):
    root = class_tree(tmp_path / "data", {"pittsburgh": (20, 3, "jpg"), "tokyo": (15, 3, "jpg")})
    index = index_dataset(root, seed=3)
    assert index.classes == ["pittsburgh", "tokyo"]
    assert index.class_to_idx == {"pittsburgh": 0, "tokyo": 1}
    assert index.layout == "folders"
    assert len(index.samples) == 105
    assert all(os.path.isabs(s.path) for s in index.samples)
    assert len({s.group for s in index.samples if s.label == "pittsburgh"}) == 20  # panoramas, not files
    assert_no_leak(index)
    assert_ratios(index)
    assert len(index.split("train")) + len(index.split("val")) + len(index.split("test")) == 105
    # seeded: same seed, same split; another seed, another split
    again = index_dataset(root, seed=3)
    assert [s.split for s in again.samples] == [s.split for s in index.samples]
    other = index_dataset(root, seed=4)
    assert [s.split for s in other.samples] != [s.split for s in index.samples]


def test_nested_subfolders_become_groups(tmp_path):
    root = class_tree(tmp_path / "data", {"a": (12, 2, "png"), "b": (12, 2, "png")}, nested=True)
    index = index_dataset(root, verify="none")
    groups = {s.group for s in index.samples if s.label == "a"}
    assert groups == {f"place{g:02d}" for g in range(12)}
    assert_no_leak(index)
    assert_ratios(index)


def _pitts(root: Path, panos=8, views=4):
    for p in range(panos):
        for v in range(views):
            write_image(root / f"{p // 4:03d}" / f"{p:06d}_pitch{1 + v % 2}_yaw{1 + v}.jpg", seed=p * 10 + v)
    return root


def _tokyo247(root: Path, panos=6, views=3):
    for p in range(panos):
        pano = f"tokyoPano{p:02d}_abcdefghijk-_"
        for v in range(views):
            write_image(root / f"{3814 + p % 2:05d}" / f"{pano}_012_{30 * v:03d}.png", fmt="PNG", seed=500 + p * 10 + v)
    return root


def _tokyotm(root: Path, places=5, visits=2, views=2):
    for p in range(places):
        for t in range(visits):
            for v in range(views):
                write_image(root / "images" / f"{p:05d}" / f"2014{t + 1:02d}" / f"v{v}.jpg", seed=900 + p * 10 + t)
    return root


def test_pitts250k_plus_tokyo247_with_labels_and_format_confound(tmp_path):
    pitts = _pitts(tmp_path / "Pittsburgh")
    tokyo = _tokyo247(tmp_path / "tokyo247")
    assert layouts.detect_layout(str(pitts)) == "pitts250k"
    assert layouts.detect_layout(str(tokyo)) == "tokyo247"
    index = index_dataset([pitts, tokyo], labels=["pittsburgh", "tokyo"], verify="all")
    assert index.layout == "pitts250k+tokyo247"
    assert index.classes == ["pittsburgh", "tokyo"]
    pg = {s.group for s in index.samples if s.label == "pittsburgh"}
    assert pg == {f"{p:06d}" for p in range(8)}
    tg = {s.group for s in index.samples if s.label == "tokyo"}
    assert len(tg) == 6 and all(g.startswith("tokyoPano") for g in tg)
    assert {s.extra["yaw"] for s in index.samples if s.label == "tokyo"} == {"000", "030", "060"}
    assert_no_leak(index)
    assert_ratios(index)
    flags = index.audit["flags"]
    fmt = [f for f in flags if f["kind"] == "format_confound"]
    assert fmt, flags
    assert "PNG" in fmt[0]["message"] and "JPEG" in fmt[0]["message"]
    assert index.audit["per_class"]["tokyo"]["formats"] == {"PNG": 18}
    detected = [d["layout"] for d in index.audit["detected"]]
    assert detected == ["pitts250k", "tokyo247"]


def test_default_labels_of_the_netvlad_layouts(tmp_path):
    index = index_dataset([_pitts(tmp_path / "p"), _tokyotm(tmp_path / "tm")], verify="none")
    assert index.classes == ["pittsburgh", "tokyo"]
    tokyo = [s for s in index.samples if s.label == "tokyo"]
    assert {s.group for s in tokyo} == {f"{p:05d}" for p in range(5)}  # group = place, not visit
    assert {s.extra["time"] for s in tokyo} == {"201401", "201402"}
    assert_no_leak(index)


def test_resolution_confound_is_flagged(tmp_path):
    for g in range(6):
        write_image(tmp_path / "d" / "a" / f"x{g}.jpg", size=(32, 24), seed=g)
        write_image(tmp_path / "d" / "b" / f"y{g}.jpg", size=(24, 32), seed=50 + g)
    index = index_dataset(tmp_path / "d", verify="all")
    kinds = [f["kind"] for f in index.audit["flags"]]
    assert "resolution_confound" in kinds and "format_confound" not in kinds
    msg = next(f["message"] for f in index.audit["flags"] if f["kind"] == "resolution_confound")
    assert "32x24" in msg and "24x32" in msg


def test_no_confound_flag_when_formats_are_mixed(tmp_path):
    for g in range(8):
        write_image(tmp_path / "d" / "a" / f"x{g}.{'jpg' if g % 2 else 'png'}", seed=g)
        write_image(tmp_path / "d" / "b" / f"y{g}.{'png' if g % 2 else 'jpg'}", seed=50 + g)
    index = index_dataset(tmp_path / "d")
    assert not [f for f in index.audit["flags"] if f["kind"].endswith("_confound")]
    pc = index.audit["per_class"]["a"]
    assert pc["count"] == 8 and pc["formats"] == {"JPEG": 4, "PNG": 4}
    assert len(pc["mean_rgb"]) == 3


def test_csv_manifest_keeps_splits_and_extra_columns(tmp_path):
    data = tmp_path / "demo"
    rows = []
    for i in range(12):
        cls = "pittsburgh" if i % 2 else "tokyo"
        rel = f"{cls}/p{i // 4}_{i}.png"
        write_image(data / rel, fmt="PNG", seed=i)
        rows.append({"path": rel, "label": cls, "group": f"p{i // 4}", "sky": f"{i / 10:.1f}",
                     "split": ["train", "val", "test"][i // 4]})
    with open(data / "manifest.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, ["path", "label", "group", "sky", "split"])
        w.writeheader()
        w.writerows(rows)
    index = open_data(data)
    assert index.layout == "csv"
    by_path = {s.path: s for s in index.samples}
    for r in rows:
        s = by_path[str(data / r["path"])]
        assert (s.label, s.group, s.split, s.extra["sky"]) == (r["label"], r["group"], r["split"], r["sky"])


def test_csv_without_split_is_split_grouped(tmp_path):
    lines = ["path,label,group"]
    for i in range(30):
        p = write_image(tmp_path / "imgs" / f"{i}.jpg", seed=i)
        lines.append(f"{p},{'a' if i < 15 else 'b'},g{i // 3}")
    (tmp_path / "list.csv").write_text("\n".join(lines) + "\n")
    index = index_dataset(tmp_path / "list.csv", verify="none")
    assert index.layout == "csv" and len(index.samples) == 30
    assert_no_leak(index)
    assert_ratios(index)


def test_bad_files_are_skipped_with_reasons(tmp_path):
    root = class_tree(tmp_path / "d", {"a": (6, 1, "jpg"), "b": (6, 1, "png")})
    good = write_image(tmp_path / "big.jpg", size=(64, 48))
    (root / "a" / "empty.jpg").write_bytes(b"")
    (root / "a" / "page.jpg").write_bytes(b"<html><body>404</body></html>")
    (root / "b" / "cut.jpg").write_bytes(good.read_bytes()[:200])
    (root / "b" / "notes.txt").write_text("not an image, not an image file name")
    os.symlink(root / "a" / "gone.jpg", root / "b" / "dangling.jpg")
    index = index_dataset(root, verify="all")
    reasons = {Path(p).name: r for p, r in index.bad_files}
    assert reasons["empty.jpg"] == "empty file (0 bytes)"
    assert reasons["page.jpg"] == "not an image"
    assert reasons["cut.jpg"] == "truncated file"
    assert reasons["dangling.jpg"] == "broken link"
    assert "notes.txt" not in reasons
    names = {Path(s.path).name for s in index.samples}
    assert not names & set(reasons)
    assert len(index.samples) == 12
    assert any(f["kind"] == "bad_files" for f in index.audit["flags"])


def test_symlink_loop_and_japanese_names(tmp_path):
    root = class_tree(tmp_path / "d", {"東京": (4, 1, "png"), "pittsburgh": (4, 1, "jpg")})
    write_image(root / "東京" / "渋谷駅_夜.png", fmt="PNG")
    os.symlink(root, root / "東京" / "loop")  # points back at the top: must not recurse forever
    index = index_dataset(root, verify="all")
    assert "東京" in index.classes
    assert any(Path(s.path).name == "渋谷駅_夜.png" for s in index.samples)
    assert len({os.path.realpath(s.path) for s in index.samples}) == len(index.samples)
    index.save(tmp_path / "out")
    back = DatasetIndex.load(tmp_path / "out")
    assert [s.path for s in back.samples] == [s.path for s in index.samples]


def test_undersample_and_weighted_balance(tmp_path):
    root = class_tree(tmp_path / "d", {"a": (20, 1, "jpg"), "b": (8, 1, "jpg")})
    under = index_dataset(root, balance="undersample", verify="none")
    train = Counter(s.label for s in under.split("train"))
    assert train["a"] == train["b"] > 0
    assert Counter(s.label for s in under.split("test"))["a"] >= 3  # only training is balanced
    assert under.audit["balance"]["dropped"]["a"] > 0
    weighted = index_dataset(root, balance="weighted", verify="none")
    w = weighted.sample_weights("train")
    labels = [s.label for s in weighted.split("train")]
    mass = Counter()
    for lab, wt in zip(labels, w):
        mass[lab] += wt
    assert mass["a"] == pytest.approx(mass["b"])
    weighted.save(tmp_path / "out")
    assert np.allclose(DatasetIndex.load(tmp_path / "out").sample_weights("train"), w, rtol=1e-5)


def test_exact_duplicates_across_splits_are_reported(tmp_path):
    root = class_tree(tmp_path / "d", {"a": (9, 1, "jpg"), "b": (9, 1, "jpg")})
    src = next((root / "a").glob("*.jpg"))
    for i in range(4):
        (root / "a" / f"copy{i}.jpg").write_bytes(src.read_bytes())
    assert index_dataset(root, verify="none").audit["duplicates"]["checked"] is False
    index = index_dataset(root, verify="sample")
    dup = index.audit["duplicates"]
    assert dup["groups"] == 1 and dup["files"] == 5
    if dup["across_splits"]:
        assert any(f["kind"] == "duplicate_leak" for f in index.audit["flags"])


def test_find_duplicates_compares_whole_files(tmp_path):
    from geocam_gui.core.data.audit import find_duplicates
    from geocam_gui.core.data.layouts import Found

    big = np.random.default_rng(1).integers(0, 256, 40000, dtype=np.uint8).tobytes()
    contents = {"h1": big + b"1", "h2": big + b"2", "h3": big + b"1", "s1": b"abc", "s2": b"abc", "s3": b"abd"}
    found = []
    for name, data in contents.items():
        (tmp_path / name).write_bytes(data)
        found.append(Found(str(tmp_path / name), "a", name, len(data), 0))
    groups = [[Path(f.path).name for f in g] for g in find_duplicates(found)]
    assert sorted(groups) == [["h1", "h3"], ["s1", "s2"]]


def test_save_load_roundtrip_and_fingerprint(tmp_path):
    root = class_tree(tmp_path / "d", {"a": (5, 2, "jpg"), "b": (5, 2, "jpg")})
    index = index_dataset(root)
    out = index.save(tmp_path / "idx")
    with open(out / "index.csv", newline="") as fh:
        header = next(csv.reader(fh))
    assert header[:4] == ["path", "label", "group", "split"]
    meta = json.loads((out / "audit.json").read_text())
    assert meta["classes"] == ["a", "b"] and "per_class" in meta["audit"]
    assert not list(out.glob("*.tmp"))
    back = open_data(out)
    assert back.samples == index.samples
    assert back.classes == index.classes and back.layout == index.layout
    assert back.fingerprint() == index.fingerprint()
    before = index.fingerprint()
    os.utime(index.samples[0].path, ns=(1, 1))  # a file changed on disk: the fingerprint follows
    assert index.fingerprint() != before
    moved = DatasetIndex([Sample(s.path, s.label, s.group, "train", s.extra) for s in index.samples],
                         index.classes, index.roots, index.layout)
    assert moved.fingerprint() != index.fingerprint()


def test_errors_name_the_root_or_class(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        index_dataset(tmp_path / "nowhere")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    (tmp_path / "empty" / "a" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match="holds no images"):
        index_dataset(tmp_path / "empty")
    one = class_tree(tmp_path / "one", {"tokyo": (6, 1, "jpg")})
    with pytest.raises(DataError, match="no class subfolders"):
        index_dataset(one / "tokyo")
    with pytest.raises(DataError, match="Only one class"):
        index_dataset(one)
    few = class_tree(tmp_path / "few", {"a": (6, 1, "jpg"), "b": (2, 3, "jpg")})
    with pytest.raises(DataError, match=r"Class 'b' has 2 group\(s\) \(6 images\)"):
        index_dataset(few)
    assert index_dataset(few, split="8:2:0", verify="none").split("test") == []
    with pytest.raises(BadArgument):
        index_dataset(few, split="6:2")
    with pytest.raises(BadArgument, match="one label per root"):
        index_dataset([few], labels=["a", "b"])


def test_cli_index_writes_files_and_exit_codes(tmp_path, capsys):
    pitts = _pitts(tmp_path / "pitts", panos=6)
    tokyo = _tokyo247(tmp_path / "tokyo", panos=6)
    out = tmp_path / "out"
    rc = cli_main(["index", str(pitts), str(tokyo), "--label", "pittsburgh", "--label", "tokyo",
                   "--split", "6:2:2", "--seed", "1", "--balance", "undersample", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0
    assert "Pittsburgh 250k" in text and "Tokyo 24/7" in text and "WARNING" in text
    assert (out / "index.csv").is_file() and (out / "audit.json").is_file()
    assert open_data(out).classes == ["pittsburgh", "tokyo"]

    assert cli_main(["index", str(tmp_path / "missing"), "--out", str(tmp_path / "o2")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli_main(["index", str(pitts), "--out", str(tmp_path / "o3")]) == 2
    assert "Only one class" in capsys.readouterr().err
    assert cli_main(["index", str(pitts), str(tokyo), "--label", "x", "--out", str(tmp_path / "o4")]) == 2
    assert cli_main(["index", str(pitts), "--split", "a:b", "--out", str(tmp_path / "o5")]) == 2
    assert not (tmp_path / "o2").exists() and not (tmp_path / "o3").exists()


def test_flat_folders_each_labelled_and_tokyotm_images_root(tmp_path):
    for i in range(5):
        write_image(tmp_path / "my_pgh" / f"IMG_{i:04d}.jpg", seed=i)
        write_image(tmp_path / "my_tokyo" / "day1" / f"DSC{i:04d}.jpg", seed=20 + i)
    index = index_dataset([tmp_path / "my_pgh", tmp_path / "my_tokyo"], labels=["pittsburgh", "tokyo"], verify="none")
    assert index.classes == ["pittsburgh", "tokyo"] and len(index.samples) == 10
    assert {d["layout"] for d in index.audit["detected"]} == {"folders"}
    assert_no_leak(index)
    tm = _tokyotm(tmp_path / "tm")
    assert layouts.detect_layout(str(tm / "images")) == "tokyotm"
    scan = layouts.scan_root(str(tm / "images"))
    assert scan.layout == "tokyotm" and len({f.group for f in scan.files}) == 5
    assert "Tokyo Time Machine" in scan.describe()


def test_progress_is_reported(tmp_path):
    root = class_tree(tmp_path / "d", {"a": (4, 1, "jpg"), "b": (4, 1, "jpg")})
    seen = []
    index_dataset(root, progress=lambda done, total: seen.append((done, total)))
    assert seen and seen[-1][0] == seen[-1][1] and all(d <= t for d, t in seen)
