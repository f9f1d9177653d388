"""The decoded-image cache: built once, reused without decoding, bad files as zero rows."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

from geocam_gui.core import paths
from geocam_gui.core.data import cache
from geocam_gui.core.data import images
from geocam_gui.core.data.datasets import Sample
from geocam_gui.core.errors import Cancelled


def _samples(tmp_path, n=8, bad=()):
    out = []
    for i in range(n):
        p = tmp_path / f"img{i}.{'png' if i % 2 else 'jpg'}"
        if i in bad:
            p.write_bytes(b"" if i % 2 else b"garbage, not a jpeg")
        else:
            Image.new("RGB", (30 + i, 20), (10 * i, 100, 200)).save(p)
        out.append(Sample(str(p), "tokyo" if i % 2 else "pittsburgh", f"g{i}", "train", {}))
    return out


def test_build_then_reuse_without_decoding(tmp_path, monkeypatch):
    samples = _samples(tmp_path)
    calls = []
    real = images.load_resized

    def counting(path, size):
        calls.append(path)
        return real(path, size)

    monkeypatch.setattr(images, "load_resized", counting)
    progress = []
    first = cache.decoded_split(samples, 16, progress=lambda d, t: progress.append((d, t)))
    assert len(calls) == 8 and progress[-1] == (8, 8)
    assert isinstance(first.images, np.memmap) and first.images.dtype == np.uint8
    assert first.images.shape == (8, 16, 16, 3)
    assert first.labels.dtype == np.int64 and list(first.labels) == [0, 1] * 4
    assert first.ok.all() and first.errors == []
    assert first.paths == [s.path for s in samples]
    assert np.array_equal(first.images[3], real(samples[3].path, 16))
    assert str(first.folder).startswith(str(paths.cache_dir() / "decoded"))

    calls.clear()
    second = cache.decoded_split(samples, 16)
    assert calls == []  # nothing decoded the second time
    assert second.folder == first.folder
    assert np.array_equal(np.asarray(second.images), np.asarray(first.images))

    other_size = cache.decoded_split(samples, 8)
    assert other_size.folder != first.folder and len(calls) == 8


def test_changed_file_makes_a_new_entry(tmp_path):
    samples = _samples(tmp_path, n=4)
    a = cache.decoded_split(samples, 8)
    Image.new("RGB", (30, 20), (255, 0, 0)).save(samples[0].path)
    b = cache.decoded_split(samples, 8)
    assert a.folder != b.folder
    assert b.images[0, 4, 4, 0] > 200


def test_bad_files_are_zero_rows_with_reasons(tmp_path):
    samples = _samples(tmp_path, n=6, bad=(2, 3))
    out = cache.decoded_split(samples, 8, classes=["pittsburgh", "tokyo", "paris"])
    assert list(out.ok) == [True, True, False, False, True, True]
    assert not out.images[2].any() and not out.images[3].any()
    assert dict(out.errors) == {samples[2].path: "not an image", samples[3].path: "empty file (0 bytes)"}
    assert out.classes == ["pittsburgh", "tokyo", "paris"]
    again = cache.decoded_split(samples, 8, classes=["pittsburgh", "tokyo", "paris"])
    assert again.errors == out.errors and list(again.ok) == list(out.ok)
    with pytest.raises(ValueError, match="not among the classes"):
        cache.decoded_split(samples, 8, classes=["paris"])


def test_cancel_leaves_no_entry(tmp_path):
    samples = _samples(tmp_path, n=6)
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        cache.decoded_split(samples, 8, cancel=stop)
    root = paths.cache_dir() / "decoded"
    assert not [p for p in root.iterdir()] if root.exists() else True
    assert cache.decoded_split(samples, 8).ok.all()
    assert cache.clear_decoded_cache() > 0
    assert not list(root.iterdir())


def test_plain_paths_and_empty_list(tmp_path):
    samples = _samples(tmp_path, n=3)
    out = cache.decoded_split([s.path for s in samples], 4)
    assert out.images.shape == (3, 4, 4, 3) and list(out.labels) == [-1, -1, -1]
    empty = cache.decoded_split([], 4)
    assert empty.images.shape == (0, 4, 4, 3) and empty.labels.shape == (0,)


