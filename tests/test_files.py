"""core.files: the one atomic writer - all or nothing, the umask's mode, a sentence on failure."""

from __future__ import annotations

import errno
import json
import os
import stat
import sys

import pytest

from geocam_gui.core import files
from geocam_gui.core.errors import GeoCamError, WriteError


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("data", [b"\x00new bytes\xff", "new text, caf\u00e9\n"])
def test_bytes_and_text_replace_the_file(tmp_path, data):
    target = tmp_path / "sub" / "f.txt"
    assert files.atomic_write(target, "old") == target  # the folder is created
    files.atomic_write(target, data)
    want = data if isinstance(data, bytes) else data.encode("utf-8")
    assert target.read_bytes() == want
    assert _leftovers(target.parent) == []


@pytest.mark.parametrize("fsync", [True, False])
def test_a_failure_mid_write_keeps_the_old_file_and_no_temporary(tmp_path, fsync):
    target = tmp_path / "keep.bin"
    target.write_bytes(b"previous content")

    def half_then_fail(tmp):
        tmp.write_bytes(b"half")  # something is on disk when it fails
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(WriteError) as err:
        files.atomic_write(target, half_then_fail, fsync=fsync)
    assert str(err.value) == f"Could not write {target}: no space is left on the device."
    assert err.value.reason == "no space is left on the device" and isinstance(err.value, GeoCamError)
    assert target.read_bytes() == b"previous content"
    assert os.listdir(tmp_path) == ["keep.bin"]


def test_a_non_os_error_in_the_writer_propagates_and_cleans_up(tmp_path):
    target = tmp_path / "x.json"
    target.write_text("{}")

    def boom(tmp):
        tmp.write_text("partial")
        raise ValueError("not serialisable")

    with pytest.raises(ValueError, match="not serialisable"):
        files.atomic_write(target, boom)
    assert target.read_text() == "{}" and os.listdir(tmp_path) == ["x.json"]


def test_a_failed_rename_leaves_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "r.txt"
    target.write_text("old")

    def no_rename(src, dst):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(WriteError, match="input/output error"):
        files.atomic_write(target, "new")
    monkeypatch.undo()
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["r.txt"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_get_the_umask_mode_not_mkstemp_0600(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        a = files.atomic_write(tmp_path / "a.txt", "text")
        b = files.atomic_write(tmp_path / "b.png", lambda tmp: tmp.write_bytes(b"png"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(a.stat().st_mode) == mode
    assert stat.S_IMODE(b.stat().st_mode) == mode


@pytest.mark.skipif(sys.platform == "win32" or (hasattr(os, "geteuid") and os.geteuid() == 0),
                    reason="root ignores folder permissions")
def test_a_read_only_folder_gives_the_sentence(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    (folder / "old.txt").write_text("old")
    folder.chmod(0o555)
    try:
        with pytest.raises(WriteError) as err:
            files.atomic_write(folder / "old.txt", "new")
    finally:
        folder.chmod(0o755)
    assert str(err.value) == f"Could not write {folder / 'old.txt'}: permission denied."
    assert (folder / "old.txt").read_text() == "old" and os.listdir(folder) == ["old.txt"]


@pytest.mark.parametrize("code, words", [(errno.EROFS, "the file system is read-only"),
                                         (errno.EACCES, "permission denied"),
                                         (errno.ENOSPC, "no space is left on the device")])
def test_reasons_are_sentences(tmp_path, code, words):
    err = files.write_error(tmp_path / "f", OSError(code, os.strerror(code)))
    assert str(err) == f"Could not write {tmp_path / 'f'}: {words}."


def test_json_is_strict_nan_becomes_null(tmp_path):
    target = files.atomic_write_json(tmp_path / "m.json", {"a": [1, 2.5], "b": "\u00e9"})
    assert json.loads(target.read_text(encoding="utf-8")) == {"a": [1, 2.5], "b": "\u00e9"}
    assert target.read_text(encoding="utf-8").endswith("}\n")
    files.atomic_write_json(tmp_path / "m.json", {"a": float("nan"), "b": [float("-inf"), 1.0]})
    text = target.read_text(encoding="utf-8")
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": None, "b": [None, 1.0]}
    assert os.listdir(tmp_path) == ["m.json"]


def test_json_default_writes_paths_scalars_and_arrays(tmp_path):
    """The one ``default=`` of checkpoints' and indexes' metadata: numpy and torch scalars become
    numbers, arrays (of any size) nested lists, paths text; anything else is refused."""
    import numpy as np
    import torch

    meta = {"p": tmp_path / "a b", "s": {"b", "a", "c"}, "i": np.int64(7), "f": np.float32(0.5), "t": torch.tensor(2.5),
            "a": np.arange(4).reshape(2, 2), "ta": torch.tensor([1, 2])}
    target = files.atomic_write_json(tmp_path / "m.json", meta, default=files.json_default)
    assert json.loads(target.read_text(encoding="utf-8")) == {
        "p": str(tmp_path / "a b"), "s": ["a", "b", "c"], "i": 7, "f": 0.5, "t": 2.5, "a": [[0, 1], [2, 3]], "ta": [1, 2]}
    with pytest.raises(TypeError, match="cannot write object to JSON"):
        files.json_default(object())


def test_a_group_is_renamed_only_after_every_file_is_written(tmp_path):
    first, second = tmp_path / "w.bin", tmp_path / "w.json"
    files.atomic_write_group([(first, b"w1"), (second, "m1")])

    def fail(tmp):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(WriteError, match=r"w\.json: no space"):
        files.atomic_write_group([(first, b"w2"), (second, fail)])
    assert first.read_bytes() == b"w1" and second.read_text() == "m1"  # the first was not renamed either
    assert sorted(os.listdir(tmp_path)) == ["w.bin", "w.json"]


@pytest.mark.parametrize("code, words", [(errno.EROFS, "the file system is read-only"),
                                         (errno.EACCES, "permission denied")])
def test_a_folder_that_refuses_new_files_gives_the_sentence(tmp_path, monkeypatch, code, words):
    """What a read-only mount or a locked folder does (also where the tests run as root)."""
    target = tmp_path / "old.txt"
    target.write_text("old")
    real_open = os.open

    def refuse(path, flags, *a, **k):
        if flags & os.O_CREAT:
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, flags, *a, **k)

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(WriteError) as err:
        files.atomic_write(target, "new")
    monkeypatch.undo()
    assert str(err.value) == f"Could not write {target}: {words}."
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["old.txt"]


def test_numpy_savers_keep_the_target_name(tmp_path):
    import numpy as np

    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    files.atomic_write(tmp_path / "a.npy", files.to_file_object(np.save, arr, allow_pickle=False))
    files.atomic_write(tmp_path / "b.npz", files.to_file_object(np.savez_compressed, x=arr))
    assert sorted(os.listdir(tmp_path)) == ["a.npy", "b.npz"]
    assert np.array_equal(np.load(tmp_path / "a.npy"), arr)
    with np.load(tmp_path / "b.npz") as z:
        assert np.array_equal(z["x"], arr)
