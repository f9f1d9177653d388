"""Near-duplicates (core/data/dedupe.py): the hash, the banded search, and the index's grouping."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from geocam_gui.core.data import dedupe


def _brute_pairs(h: np.ndarray, threshold: int) -> set[tuple[int, int]]:
    return {(i, j) for i, j in itertools.combinations(range(len(h)), 2)
            if bin(int(h[i]) ^ int(h[j])).count("1") <= threshold}


@pytest.mark.parametrize("threshold", [0, 3, 7, 8, 11])
def test_banded_search_finds_exactly_the_brute_force_pairs(threshold):
    rng = np.random.default_rng(threshold)
    base = rng.integers(0, 2**63, size=300, dtype=np.int64).astype(np.uint64) << np.uint64(1)
    # plant neighbours at every distance 0..14 so the threshold's edge is exercised
    near = []
    for d in range(15):
        for src in rng.choice(len(base), 8, replace=False):
            bits = rng.choice(64, d, replace=False)
            mask = np.uint64(sum(1 << int(b) for b in bits))
            near.append(base[src] ^ mask)
    h = np.concatenate([base, np.array(near, dtype=np.uint64)])
    got = {tuple(p) for p in dedupe.near_pairs(h, threshold).tolist()}
    assert got == _brute_pairs(h, threshold)


def test_union_find_joins_chains():
    comps = dedupe.components(6, np.array([[0, 1], [1, 2], [4, 5]]))
    assert sorted(map(sorted, comps)) == [[0, 1, 2], [4, 5]]


def test_search_is_bounded():
    same = np.zeros(2000, dtype=np.uint64)  # all alike: every pair is a candidate
    with pytest.raises(dedupe.TooAlike):
        dedupe.near_pairs(same, max_candidates=10_000)


def _variants(im: Image.Image) -> dict[str, Image.Image]:
    """What a user's folder of one photo holds: the photo, a re-encode, a resize, a trimmed
    crop (98 % of each side) and a brightened copy. (Trims of 3 % reach 10 bits on some of
    these synthetic scenes: beyond THRESHOLD, as the module's docstring says.)"""
    w, h = im.size
    return {"orig.png": im, "q70.jpg": im, "small.png": im.resize((w * 3 // 4, h * 3 // 4)),
            "trim.png": im.crop((w * 2 // 100, h * 2 // 100, w, h)),
            "bright.png": ImageEnhance.Brightness(im).enhance(1.08)}


@pytest.fixture(scope="module")
def crops_folder(tmp_path_factory):
    """Two classes x 3 subfolders (fewer than MIN_SUBFOLDER_GROUPS) x 2 photos x 5 variants."""
    from geocam_gui.core.data.demo import generate_demo

    demo = generate_demo(tmp_path_factory.mktemp("d") / "base", per_class=10, size=96, views_per_place=1, seed=5)
    root = tmp_path_factory.mktemp("own")
    photos = {}
    for label in ("pittsburgh", "tokyo"):
        bases = sorted(p for p in (demo / label).iterdir() if p.suffix == ".png")[:6]
        assert len(bases) == 6
        for k, base in enumerate(bases):
            folder = root / label / f"trip{k // 2}"
            folder.mkdir(parents=True, exist_ok=True)
            im = Image.open(base).convert("RGB")
            for name, v in _variants(im).items():
                path = folder / f"photo{k}_{name}"
                v.save(path, quality=70) if name.endswith(".jpg") else v.save(path)
                photos[str(path)] = f"{label}/{k}"
    return root, photos


def test_near_duplicates_never_cross_splits(crops_folder):
    from geocam_gui.core.data.datasets import index_dataset
    from geocam_gui.core.data.layouts import MIN_SUBFOLDER_GROUPS

    root, photos = crops_folder
    assert 3 < MIN_SUBFOLDER_GROUPS  # so the layout alone groups these by file name
    index = index_dataset(root, verify="all", seed=1)
    split_of_photo: dict[str, set] = {}
    for s in index.samples:
        split_of_photo.setdefault(photos[s.path], set()).add(s.split)
    assert len(split_of_photo) == 12
    assert all(len(splits) == 1 for splits in split_of_photo.values()), split_of_photo
    assert {s.split for s in index.samples} == {"train", "val", "test"}
    near = index.audit["near_duplicates"]
    # each photo's five files were five groups; merging leaves one: 12 photos x 4 merges
    assert near["checked"] and near["sets"] == 12 and near["files"] == 60 and near["groups_merged"] == 48
    assert near["across_splits"] == 0 and near["across_classes"] == 0
    from geocam_gui.core.data.audit import summary_lines

    assert any("48 groups merged" in line for line in summary_lines(index))
    few = [f for f in index.audit["flags"] if f["kind"] == "few_subfolders"]
    assert sorted(f["class"] for f in few) == ["pittsburgh", "tokyo"]
    assert all(f["subfolders"] == 3 and f["groups"] == 6 for f in few)


def test_without_every_file_decoded_the_audit_says_not_checked(crops_folder):
    from geocam_gui.core.data.datasets import index_dataset

    root, _ = crops_folder
    index = index_dataset(root, verify="sample", audit_per_class=5, seed=1)
    near = index.audit["near_duplicates"]
    assert not near["checked"] and "verify all" in near["reason"]
    none = index_dataset(root, verify="none", seed=1)
    assert not none.audit["near_duplicates"]["checked"]


def test_phash_is_stable_under_reencoding_and_apart_for_other_photos(crops_folder):
    from geocam_gui.core.data import images

    root, photos = crops_folder
    by_photo: dict[str, list[int]] = {}
    for path, photo in photos.items():
        by_photo.setdefault(photo, []).append(dedupe.phash(images.load_resized(path, 32)))
    hashes = {k: np.array(v, dtype=np.uint64) for k, v in by_photo.items()}
    within = max(int(dedupe.popcount(v ^ v[0]).max()) for v in hashes.values())
    firsts = np.array([v[0] for v in hashes.values()], dtype=np.uint64)
    between = min(int(dedupe.popcount(firsts[i] ^ firsts[j])[0])
                  for i, j in itertools.combinations(range(len(firsts)), 2))
    assert within <= dedupe.THRESHOLD < between
