"""Run folders (core/runs.py): naming, which checkpoint reopens, history, listing."""

from __future__ import annotations

import hashlib
import json
import os
import time
from types import SimpleNamespace

import pytest
import torch

from geocam_gui.core import checkpoints as ckpt
from geocam_gui.core import runs


def _index(root, fingerprint="fp-1"):
    return SimpleNamespace(roots=[str(root)], fingerprint=lambda: fingerprint)


def _save(folder, model, classes, *, mtime=None):
    state = {"w": torch.zeros(2)}
    path = ckpt.save_checkpoint(folder / model / "best", state, {"model": model, "classes": classes,
                                                                  "image_size": 64})
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def test_run_dir_name_is_label_and_fingerprint_digest(tmp_path):
    digest = hashlib.sha1(b"fp-1").hexdigest()[:8]
    assert runs.run_dir_for(_index(tmp_path / "My City/photos"), tmp_path / "ck") == tmp_path / "ck" / f"photos-{digest}"
    assert runs.run_dir_for(_index(tmp_path / "x"), tmp_path, demo=True).name == f"demo-{digest}"
    assert runs.run_dir_name("a b/ü..", "fp-1") == f"a_b_ü..-{digest}"  # isalnum keeps letters
    assert runs.run_dir_name("..", "fp-1") == f"dataset-{digest}"
    assert runs.run_dir_name("", "fp-1") == f"dataset-{digest}"
    assert len(runs.run_dir_name("n" * 300, "fp-1")) == runs.LABEL_CHARS + 9
    # a different dataset (other fingerprint) gets another folder
    assert runs.run_dir_for(_index(tmp_path, "fp-2"), tmp_path) != runs.run_dir_for(_index(tmp_path, "fp-1"), tmp_path)


def test_reopen_picks_newest_matching_and_reports_bad_ones(tmp_path):
    now = time.time()
    old = _save(tmp_path / "run-old", "shallow", ["a", "b"], mtime=now - 100)
    new = _save(tmp_path / "run-new", "shallow", ["a", "b"], mtime=now)
    other = _save(tmp_path / "run-new", "vgg11", ["x", "y"], mtime=now)
    damaged = tmp_path / "run-new" / "resnet18"
    damaged.mkdir()
    (damaged / "best.json").write_text("{not json")
    (damaged / "best.safetensors").write_bytes(b"junk")

    found = runs.reopen(tmp_path, ["a", "b"])
    assert found["shallow"].path == new and found["shallow"].error is None
    assert found["shallow"].history_path == new.parent / "metrics.jsonl"
    assert found["vgg11"].path is None and "trained on classes ['x', 'y']" in found["vgg11"].error
    assert found["resnet18"].path is None and found["resnet18"].error
    assert found["resnet18"].source == damaged / "best.json" and found["resnet18"].history_path is None
    # without classes to compare, the other-class checkpoint is offered
    assert runs.reopen(tmp_path)["vgg11"].path == other
    assert runs.reopen(tmp_path / "missing", ["a", "b"]) == {}
    assert runs.newest_best(tmp_path) == {"shallow": new, "vgg11": other}
    assert runs.newest_best(tmp_path, {"vgg11"}) == {"vgg11": other}
    assert old.is_file()


def test_read_history_skips_damaged_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"epoch": 1}) + "\n{broken\n[1, 2]\n" + json.dumps({"epoch": 2}) + "\n")
    assert runs.read_history(path) == [{"epoch": 1}, {"epoch": 2}]
    assert runs.read_history(tmp_path / "none.jsonl") == []
    assert runs.read_history(None) == []


def test_list_runs_newest_first(tmp_path):
    now = time.time()
    _save(tmp_path / "a-1", "shallow", ["a", "b"], mtime=now - 50)
    _save(tmp_path / "b-2", "vgg11", ["a", "b"], mtime=now)
    (tmp_path / "empty-3").mkdir()
    listed = runs.list_runs(tmp_path)
    assert [r.path.name for r in listed] == ["b-2", "a-1"]
    assert set(listed[1].models) == {"shallow"}
    assert runs.list_runs(tmp_path / "nope") == []


def _tiny_config(epochs):
    """The shallow net on the tiny demo set: one batch of 8 per epoch at 32 px."""
    from geocam_gui.core.train.config import default_config

    cfg = default_config("shallow", "cpu")
    cfg.epochs, cfg.image_size, cfg.batch_size, cfg.max_batches_per_epoch = epochs, 32, 8, 1
    return cfg


def test_a_run_folder_written_before_relative_fingerprints_is_still_found(tmp_path):
    index = SimpleNamespace(roots=[str(tmp_path / "photos")], fingerprint=lambda: "fp-new",
                            legacy_fingerprint=lambda: "fp-old")
    new = tmp_path / "ck" / runs.run_dir_name("photos", "fp-new")
    old = tmp_path / "ck" / runs.run_dir_name("photos", "fp-old")
    assert runs.run_dir_for(index, tmp_path / "ck") == new  # neither exists: the new name
    old.mkdir(parents=True)
    assert runs.run_dir_for(index, tmp_path / "ck") == old
    new.mkdir()
    assert runs.run_dir_for(index, tmp_path / "ck") == new  # both: the new one wins


def test_a_moved_data_folder_keeps_its_run_folder_and_resumes(tiny_demo, tmp_path):
    import shutil

    from geocam_gui.core.data.datasets import open_data
    from geocam_gui.core.train.engine import Trainer
    from geocam_gui.core.workspace import default_run_dir

    here = tmp_path / "here" / "tiny"
    shutil.copytree(tiny_demo, here)  # copy2 keeps the files' times, as mv does
    index = open_data(here)
    run = default_run_dir(index, tmp_path / "ck")
    before = index.fingerprint(), index.legacy_fingerprint()
    Trainer(_tiny_config(1), index, run).run()

    there = tmp_path / "elsewhere" / "renamed"
    there.parent.mkdir()
    os.rename(here, there)
    moved = open_data(there)
    assert moved.samples[0].path.startswith(str(there))
    assert moved.fingerprint() == before[0] and moved.legacy_fingerprint() != before[1]
    assert default_run_dir(moved, tmp_path / "ck") == run
    events = []
    result = Trainer(_tiny_config(2), moved, run, events.append, resume=True).run()
    assert [e.start_epoch for e in events if e.kind == "start"] == [1]  # resumed, not started again
    assert [h["epoch"] for h in result.history] == [1, 2]


def test_a_training_state_from_before_relative_fingerprints_resumes(tiny_index, tmp_path, monkeypatch):
    from geocam_gui.core.data.datasets import DatasetIndex
    from geocam_gui.core.train.engine import Trainer

    with monkeypatch.context() as m:  # the state as GeoCAM wrote it before: absolute-path fingerprint
        m.setattr(DatasetIndex, "fingerprint", DatasetIndex.legacy_fingerprint)
        Trainer(_tiny_config(1), tiny_index, tmp_path / "run").run()
    events = []
    Trainer(_tiny_config(2), tiny_index, tmp_path / "run", events.append, resume=True).run()
    assert [e.start_epoch for e in events if e.kind == "start"] == [1]


def test_a_shallow_run_from_before_batch_norm_says_it_cannot_resume(tiny_index, tmp_path, monkeypatch):
    from geocam_gui.core import models
    from geocam_gui.core.errors import GeoCamError
    from geocam_gui.core.train import loop
    from geocam_gui.core.train.engine import Trainer

    with monkeypatch.context() as m:  # a run trained with the shallow net's earlier layout
        m.setattr(loop, "build_model", lambda name, k, **kw: models.build_model(name, k, **kw, legacy=True))
        Trainer(_tiny_config(1), tiny_index, tmp_path / "run").run()
    with pytest.raises(GeoCamError, match="layout from before batch norm"):
        Trainer(_tiny_config(2), tiny_index, tmp_path / "run", resume=True).run()
