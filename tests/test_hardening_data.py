"""Issue 15: one bad file never stops a dataset; skipped files are named; exit codes agree."""

from __future__ import annotations

import json
import logging
import os
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geocam_gui.cli import main
from geocam_gui.core.errors import ImageError


def _dds_not_implemented(path: Path) -> Path:
    """A DDS header whose pixel format Pillow does not implement (it raises NotImplementedError)."""
    header = (b"DDS " + struct.pack("<7I", 124, 0x1 | 0x2 | 0x4 | 0x1000, 8, 8, 0, 0, 0) + b"\0" * 44
              + struct.pack("<2I", 32, 0x4) + b"ZZZZ" + b"\0" * 20 + struct.pack("<I", 0x1000) + b"\0" * 16)
    path.write_bytes(header + b"\0" * 256)
    return path


def _photos(root: Path, classes=("pittsburgh", "tokyo"), n=12, size=24) -> Path:
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / c / f"{c}_{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, torch_threads):
    from geocam_gui.core.checkpoints import base_meta, save_checkpoint
    from geocam_gui.core.models import build_model

    root = tmp_path_factory.mktemp("ck")
    return save_checkpoint(root / "best", build_model("shallow", 2), base_meta("shallow", ["pittsburgh", "tokyo"], 32))


# --------------------------------------------------------------------------- any decoder exception
def test_a_decoder_raising_not_implemented_error_skips_that_file(tmp_path, capsys):
    from geocam_gui.core.data import images

    bad = _dds_not_implemented(tmp_path / "unimplemented.jpg")
    for fn in (images.probe, images.load_rgb, lambda p: images.load_resized(p, 32)):
        with pytest.raises(ImageError) as info:
            fn(bad)
        assert info.value.reason.startswith("decode error: NotImplementedError: ")
    root = _photos(tmp_path / "data")
    _dds_not_implemented(root / "tokyo" / "zz_unimplemented.jpg")
    assert main(["index", str(root), "--verify", "all", "--out", str(tmp_path / "idx")]) == 0
    out = capsys.readouterr().out
    assert "zz_unimplemented.jpg: decode error: NotImplementedError" in out
    audit = json.loads((tmp_path / "idx" / "audit.json").read_text(encoding="utf-8"))
    assert [b["path"] for b in audit["bad_files"]] == [str(root / "tokyo" / "zz_unimplemented.jpg")]


# --------------------------------------------------------------------------- names that are not UTF-8
@pytest.mark.skipif(sys.platform != "linux", reason="byte file names are a Linux matter")
def test_a_file_name_that_is_not_utf8_is_indexed_and_trained_on(tmp_path, capsys, torch_threads):
    from geocam_gui.core.data.datasets import DatasetIndex

    root = _photos(tmp_path / "data")
    raw = os.fsencode(root / "tokyo") + b"/odd\xff\xfe.png"
    try:
        with open(raw, "wb") as fh:
            fh.write((root / "tokyo" / "tokyo_00.png").read_bytes()[:-1] + b"\x82")  # a distinct file
    except OSError:
        pytest.skip("this file system refuses names that are not UTF-8")
    name = os.fsdecode(raw)
    assert main(["index", str(root), "--verify", "all", "--out", str(tmp_path / "idx")]) == 0
    index = DatasetIndex.load(tmp_path / "idx")
    assert name in [s.path for s in index.samples]  # surrogate-escaped str, the same file
    assert os.path.isfile(name)
    json.loads((tmp_path / "idx" / "audit.json").read_text(encoding="utf-8"))  # valid UTF-8 JSON
    capsys.readouterr()
    assert main(["train", str(tmp_path / "idx"), "--model", "shallow", "--epochs", "1", "--max-batches", "1",
                 "--image-size", "32", "--batch-size", "4", "--out", str(tmp_path / "run")]) == 0
    assert (tmp_path / "run" / "shallow" / "best.json").is_file()


# --------------------------------------------------------------------------- skipped files are named
def test_train_names_every_skipped_file_and_the_counts_agree_with_the_audit(tmp_path, capsys, caplog,
                                                                             torch_threads):
    root = _photos(tmp_path / "data")
    skipped = [_dds_not_implemented(root / "tokyo" / "zz_dds.jpg"), root / "pittsburgh" / "zz_empty.png",
               root / "tokyo" / "zz_html.jpg"]
    skipped[1].write_bytes(b"")
    skipped[2].write_bytes(b"<html>404</html>")
    assert main(["index", str(root), "--verify", "all", "--out", str(tmp_path / "idx")]) == 0
    audit = json.loads((tmp_path / "idx" / "audit.json").read_text(encoding="utf-8"))
    capsys.readouterr()
    with caplog.at_level(logging.INFO, logger="geocam_gui"):
        assert main(["train", str(tmp_path / "idx"), "--model", "shallow", "--epochs", "1", "--max-batches", "1",
                     "--image-size", "32", "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert f"{len(audit['bad_files'])} files were skipped" in err
    assert len(audit["bad_files"]) == len(skipped)
    for b in audit["bad_files"]:
        assert f"{b['path']}: {b['reason']}" in err  # printed ...
        assert f"{b['path']}: {b['reason']}" in caplog.text  # ... and logged (the log file's logger)
    assert {b["path"] for b in audit["bad_files"]} == {str(p) for p in skipped}


# --------------------------------------------------------------------------- exit codes agree
@pytest.mark.parametrize("case", ["one class", "no images", "missing"])
def test_unusable_data_is_exit_2_in_every_command(tmp_path, capsys, checkpoint, case):
    data = tmp_path / "data"
    if case == "one class":
        _photos(data, classes=("tokyo",), n=3)
    elif case == "no images":
        (data / "tokyo").mkdir(parents=True)
        (data / "tokyo" / "notes.txt").write_text("nothing here")
    commands = [
        ["index", str(data), "--out", str(tmp_path / "idx")],
        ["train", str(data), "--model", "shallow", "--epochs", "1", "--out", str(tmp_path / "run")],
        ["eval", str(checkpoint), str(data)],
        ["analyze", "--checkpoint", str(checkpoint), "--data", str(data), "--out", str(tmp_path / "an")],
    ]
    for argv in commands:
        assert main(argv) == 2, argv
        assert "error:" in capsys.readouterr().err
    assert not (tmp_path / "run").exists() and not (tmp_path / "an").exists()


def test_a_missing_checkpoint_is_exit_2_in_every_command(tmp_path, capsys):
    data = _photos(tmp_path / "data", n=3)
    missing = str(tmp_path / "nope" / "best.json")
    photo = str(data / "tokyo" / "tokyo_00.png")
    for argv in (["eval", missing, str(data)],
                 ["analyze", "--checkpoint", missing, "--data", str(data), "--out", str(tmp_path / "an")],
                 ["export", "--checkpoint", missing, "--images", photo, "--overlays", str(tmp_path / "o")],
                 ["train", str(data), "--model", "shallow", "--weights", missing, "--out", str(tmp_path / "r")]):
        assert main(argv) == 2, argv
        assert "error:" in capsys.readouterr().err


def test_a_one_class_index_file_is_exit_2_for_train(tmp_path, capsys):
    data = _photos(tmp_path / "data", n=6)
    assert main(["index", str(data), "--out", str(tmp_path / "idx")]) == 0
    csv_path = tmp_path / "idx" / "index.csv"
    lines = csv_path.read_text(encoding="utf-8").splitlines()
    csv_path.write_text("\n".join([lines[0]] + [ln for ln in lines[1:] if ",tokyo," in ln]) + "\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["train", str(tmp_path / "idx"), "--model", "shallow", "--epochs", "1", "--image-size", "32",
                 "--out", str(tmp_path / "run")]) == 2


# --------------------------------------------------------------------------- manifests
def test_a_manifest_path_with_conflicting_labels_is_warned_about(tmp_path, caplog):
    from geocam_gui.core.data.datasets import index_dataset

    data = _photos(tmp_path / "data", n=6)
    rows = ["path,label"] + [f"{c}/{c}_{i:02d}.png,{c}" for c in ("pittsburgh", "tokyo") for i in range(6)]
    rows.append("tokyo/tokyo_03.png,pittsburgh")
    (data / "manifest.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="geocam_gui"):
        index = index_dataset([data], layout="csv", verify="none")
    path = str(data / "tokyo" / "tokyo_03.png")
    assert any(path in r.getMessage() and "pittsburgh, tokyo" in r.getMessage() for r in caplog.records)
    assert any(path in w for w in index.audit["warnings"])
    assert [s.label for s in index.samples if s.path == path] == ["tokyo"]


@pytest.mark.parametrize("row", ["x.png,tokyo,g1,holiday", "x.png,tokyo", ",tokyo,g1,train", "x.png,tokyo,g1,train,abc",
                                 "x.png,tokyo,g1,train,nan", "x.png,tokyo,g1,train,-1"])
def test_a_damaged_index_csv_row_is_one_sentence(tmp_path, row):
    from geocam_gui.core.data.datasets import DatasetIndex
    from geocam_gui.core.errors import DataError

    (tmp_path / "index.csv").write_text("path,label,group,split,weight\n" + row + "\n", encoding="utf-8")
    (tmp_path / "audit.json").write_text('{"classes": 5, "bad_files": [{"path": 1}], "roots": "x"}', encoding="utf-8")
    with pytest.raises(DataError, match="index.csv line 2"):
        DatasetIndex.load(tmp_path)


def test_a_damaged_audit_json_is_ignored_not_a_crash(tmp_path):
    from geocam_gui.core.data.datasets import DatasetIndex

    (tmp_path / "index.csv").write_text("path,label,group,split\n/a.png,tokyo,g,train\n/b.png,pitt,g2,val\n",
                                        encoding="utf-8")
    for audit in ('{"classes": 5, "bad_files": [{"path": 1}, 3], "roots": "x", "audit": []}', "[1, 2]",
                  '{"classes": [NaN]}'):
        (tmp_path / "audit.json").write_text(audit, encoding="utf-8")
        index = DatasetIndex.load(tmp_path)
        assert index.classes == ["pitt", "tokyo"] and index.bad_files == []
