"""The Qt-free workspace: open index, run folder, active checkpoint per model, events."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from geocam_gui.core import checkpoints as ckpt
from geocam_gui.core.data.demo import README_TITLE
from geocam_gui.core.models import MODEL_NAMES
from geocam_gui.core.workspace import Emitter, Workspace, default_run_dir


def _index(root, classes=("pittsburgh", "tokyo"), fingerprint="fp"):
    return SimpleNamespace(roots=[str(root)], classes=list(classes), fingerprint=lambda: fingerprint)


def _save(run_dir, model, classes, epochs=2):
    path = ckpt.save_checkpoint(run_dir / model / "best", {"w": torch.zeros(1)},
                                {"model": model, "classes": list(classes), "image_size": 32})
    with open(run_dir / model / "metrics.jsonl", "w") as fh:
        for e in range(1, epochs + 1):
            fh.write(json.dumps({"epoch": e, "val_acc": e / 10}) + "\n")
    return path


def test_default_run_dir_names_the_demo_by_its_readme(tmp_path):
    digest = hashlib.sha1(b"fp").hexdigest()[:8]
    plain = tmp_path / "street photos"
    plain.mkdir()
    assert default_run_dir(_index(plain), tmp_path / "ck") == tmp_path / "ck" / f"street_photos-{digest}"
    demo = tmp_path / "anywhere"
    demo.mkdir()
    (demo / "README.txt").write_text(README_TITLE + " v1\n")
    assert default_run_dir(_index(demo), tmp_path / "ck").name == f"demo-{digest}"
    # without a checkpoint_dir: the user's (GEOCAM_CHECKPOINTS in the tests)
    assert default_run_dir(_index(plain)).parent == ckpt_dir_env()


def ckpt_dir_env():
    from geocam_gui.core import paths

    return paths.default_checkpoint_dir()


def test_set_index_clears_checkpoints_and_announces_the_run_dir(tmp_path):
    ws = Workspace(tmp_path / "ck")
    seen = []
    ws.events.index.connect(lambda index, run_dir: seen.append(("index", index, run_dir)))
    ws.events.checkpoint.connect(lambda model, path, error: seen.append(("ckpt", model, path, error)))
    ws.set_checkpoint("vgg11", tmp_path / "x.json")
    assert ws.checkpoints["vgg11"] == str(tmp_path / "x.json") and ws.active_checkpoints() == {"vgg11": str(tmp_path / "x.json")}
    seen.clear()
    index = _index(tmp_path)
    ws.set_index(index)
    assert seen[:3] == [("ckpt", m, None, None) for m in MODEL_NAMES]
    assert seen[3] == ("index", index, default_run_dir(index, tmp_path / "ck"))
    assert ws.index is index and ws.run_dir == default_run_dir(index, tmp_path / "ck")
    assert ws.checkpoints == {m: None for m in MODEL_NAMES}
    ws.set_index(index, run_dir=tmp_path / "given")
    assert ws.run_dir == tmp_path / "given"
    ws.set_index(None)
    assert ws.index is None and ws.run_dir is None


def test_reopen_makes_the_runs_checkpoints_active_with_their_history(tmp_path):
    ws = Workspace(tmp_path / "ck")
    index = _index(tmp_path / "data")
    ws.set_index(index)
    best = _save(ws.run_dir, "shallow", index.classes, epochs=3)
    _save(ws.run_dir, "resnet18", ["a", "b"])
    events = []
    ws.events.checkpoint.connect(lambda *a: events.append(a))
    found = ws.reopen()
    assert set(found) == {"shallow", "resnet18"}
    assert ws.checkpoints == {"shallow": str(best), "vgg11": None, "resnet18": None}
    assert "trained on classes ['a', 'b']" in ws.checkpoint_error("resnet18")
    assert ws.checkpoint_error("shallow") is None
    assert [r["epoch"] for r in ws.history("shallow")] == [1, 2, 3]
    assert ws.history("vgg11") == []
    assert sorted(e[0] for e in events) == ["resnet18", "shallow"]
    # the same path again is announced again: a run rewrites best.json in place
    events.clear()
    ws.set_checkpoint("shallow", best)
    assert events == [("shallow", str(best), None)]
    with pytest.raises(ValueError):
        ws.set_checkpoint("alexnet", best)


def test_emitter_connect_disconnect():
    em, got = Emitter(), []
    cb = em.connect(got.append)
    em.connect(cb)  # once only
    em.emit(1)
    em.disconnect(cb)
    em.emit(2)
    assert got == [1]


def test_workspace_needs_no_qt():
    code = "import sys, geocam_gui.core.workspace; sys.exit('PySide6' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0
