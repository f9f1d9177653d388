"""Issue 15, faults: read-only and full output folders give a sentence naming the folder and the
reason (exit 1, no traceback) and leave nothing half-written."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geocam_gui.cli import main


def _mount_tmpfs(where: Path, options: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    if not shutil.which("mount") or os.geteuid() != 0:
        return False
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True)
    return res.returncode == 0


@pytest.fixture(params=["read-only", "full"])
def bad_folder(request, tmp_path):
    """(folder, reason): a read-only or a full small tmpfs; where mounting is impossible a folder
    made read-only (skipped when the user can write anyway, e.g. root without mount rights)."""
    where = tmp_path / f"mnt-{uuid.uuid4().hex[:6]}"
    kind = request.param
    mounted = _mount_tmpfs(where, "ro,size=64k" if kind == "read-only" else "size=16k")
    try:
        if mounted and kind == "full":
            fd = os.open(where / "filler", os.O_WRONLY | os.O_CREAT)  # fill it up to the last block
            try:
                while True:
                    os.write(fd, b"\0" * 1024)
            except OSError:
                pass
            finally:
                os.close(fd)
        elif not mounted:
            if kind == "full":
                pytest.skip("cannot mount a small tmpfs here to fill it")
            where.chmod(0o555)
            if os.access(where, os.W_OK):
                pytest.skip("a read-only folder is writable for this user (root) and tmpfs cannot be mounted")
        yield where, ("the file system is read-only" if mounted else "permission denied") \
            if kind == "read-only" else "no space is left on the device"
    finally:
        if mounted:
            subprocess.run(["umount", str(where)], capture_output=True)
        else:
            where.chmod(0o755)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, torch_threads):
    from geocam_gui.core.checkpoints import base_meta, save_checkpoint
    from geocam_gui.core.models import build_model

    root = tmp_path_factory.mktemp("faults")
    rng = np.random.default_rng(0)
    for c in ("pittsburgh", "tokyo"):
        (root / "data" / c).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(root / "data" / c / f"{i}.png")
    ckpt = save_checkpoint(root / "ck" / "best", build_model("shallow", 2), base_meta("shallow", ["pittsburgh", "tokyo"], 32))
    return root / "data", ckpt


def _leftovers(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.name != "filler")


def _check(capsys, folder, reason, code):
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert str(folder) in err and reason in err, err
    assert _leftovers(folder) == []


def test_index_into_a_bad_folder(bad_folder, inputs, capsys):
    folder, reason = bad_folder
    data, _ = inputs
    _check(capsys, folder, reason, main(["index", str(data), "--verify", "none", "--out", str(folder / "idx")]))


def test_demo_data_into_a_bad_folder(bad_folder, capsys):
    folder, reason = bad_folder
    _check(capsys, folder, reason, main(["demo-data", str(folder / "demo"), "--per-class", "10", "--size", "32"]))


def test_analyze_into_a_bad_folder(bad_folder, inputs, capsys):
    folder, reason = bad_folder
    data, ckpt = inputs
    _check(capsys, folder, reason, main(["analyze", "--checkpoint", str(ckpt), "--data", str(data),
                                         "--out", str(folder / "an"), "--limit", "2"]))


def test_export_into_a_bad_folder(bad_folder, inputs, capsys):
    folder, reason = bad_folder
    data, ckpt = inputs
    code = main(["export", "--checkpoint", str(ckpt), "--images", str(data / "tokyo" / "0.png"),
                 "--overlays", str(folder / "exp")])
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and str(folder) in err
    assert not [p for p in _leftovers(folder) if p.endswith((".part", ".tmp")) or (folder / p).stat().st_size == 0
                and (folder / p).is_file()]


def test_outputs_get_the_umasks_mode(inputs, tmp_path, torch_threads):
    """index.csv, audit.json and checkpoints are 0666 & ~umask like every other output, never 0600."""
    data, _ = inputs
    old = os.umask(0o022)
    try:
        assert main(["index", str(data), "--verify", "none", "--out", str(tmp_path / "idx")]) == 0
        assert main(["train", str(tmp_path / "idx"), "--model", "shallow", "--epochs", "1", "--max-batches", "1",
                     "--image-size", "32", "--out", str(tmp_path / "run")]) == 0
    finally:
        os.umask(old)
    files = [tmp_path / "idx" / "index.csv", tmp_path / "idx" / "audit.json",
             *(tmp_path / "run" / "shallow").glob("*.*")]
    modes = {str(p.relative_to(tmp_path)): oct(p.stat().st_mode & 0o777) for p in files}
    assert {k: v for k, v in modes.items() if v != "0o644"} == {}
