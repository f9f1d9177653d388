"""Checkpoints: round trips, atomic writes, refusal of code-carrying pickles and of mismatches."""

from __future__ import annotations

import json
import os
import pickle
import time

import pytest
import torch

from geocam_gui.core import checkpoints as ckpt
from geocam_gui.core.checkpoints import (
    find_checkpoints,
    load_checkpoint,
    read_meta,
    save_checkpoint,
)
from geocam_gui.core.errors import CheckpointError
from geocam_gui.core.models import build_model
from geocam_gui.core.train.saver import load_train_state, save_train_state

CLASSES = ["pittsburgh", "tokyo"]


def _meta(model="shallow", **extra):
    return ckpt.base_meta(model, CLASSES, 64, **{"epoch": 3, "metrics": {"val": {"accuracy": 0.9}}, **extra})


def _same_outputs(a, b, size=64):
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    a.eval(), b.eval()
    with torch.no_grad():
        return torch.equal(a(x), b(x))


def test_round_trip_through_json_safetensors_and_stem(tmp_path):
    torch.manual_seed(0)
    model = build_model("shallow", 2)
    path = save_checkpoint(tmp_path / "run" / "best", model, _meta(index_fingerprint="abc"))
    assert path == tmp_path / "run" / "best.json"
    assert (tmp_path / "run" / "best.safetensors").is_file()
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]
    for spec in (path, path.with_suffix(".safetensors"), tmp_path / "run" / "best"):
        loaded = load_checkpoint(spec, expect_model="shallow", expect_classes=CLASSES)
        assert _same_outputs(model, loaded.model)
        assert not loaded.model.training
        meta = loaded.meta
        assert meta["model"] == "shallow" and meta["classes"] == CLASSES and meta["image_size"] == 64
        assert meta["epoch"] == 3 and meta["metrics"]["val"]["accuracy"] == 0.9
        assert meta["index_fingerprint"] == "abc" and len(meta["mean"]) == 3 and len(meta["std"]) == 3
        assert {"torch", "torchvision", "geocam"} <= set(meta["versions"]) and meta["created"]
    on_disk = json.loads(path.read_text())
    assert on_disk["classes"] == CLASSES  # the sidecar is readable by people and other tools
    assert read_meta(path)["epoch"] == 3


def test_shallow_checkpoints_of_the_layout_before_batch_norm_still_load(tmp_path):
    """A shallow net saved before 2026-12-02 (no batch norm, 7x7 pool) loads as that layout, with
    or without GeoCAM's metadata, and gives the saved model's outputs."""
    from geocam_gui.core.models import is_legacy_shallow

    torch.manual_seed(0)
    old = build_model("shallow", 2, legacy=True)
    assert is_legacy_shallow(old.state_dict()) and not is_legacy_shallow(build_model("shallow", 2).state_dict())
    loaded = load_checkpoint(save_checkpoint(tmp_path / "best", old, _meta()), expect_model="shallow")
    assert _same_outputs(old, loaded.model)
    torch.save(old.state_dict(), tmp_path / "plain.pt")
    assert _same_outputs(old, load_checkpoint(tmp_path / "plain.pt", expect_classes=CLASSES).model)


def test_ddp_prefixes_are_stripped(tmp_path):
    model = build_model("shallow", 2)
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    save_checkpoint(tmp_path / "m", state, _meta())
    assert _same_outputs(model, load_checkpoint(tmp_path / "m").model)


def test_plain_torchvision_state_dict_is_loaded_with_inferred_architecture(tmp_path):
    torch.manual_seed(0)
    model = build_model("resnet18", 3)
    path = tmp_path / "resnet18_three.pth"
    torch.save(model.state_dict(), path)
    loaded = load_checkpoint(path)
    assert loaded.meta["model"] == "resnet18" and len(loaded.meta["classes"]) == 3
    assert _same_outputs(model, loaded.model)
    named = load_checkpoint(path, meta={"classes": ["a", "b", "c"], "image_size": 96})
    assert named.meta["classes"] == ["a", "b", "c"] and named.meta["image_size"] == 96
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"state_dict": model.state_dict(), "epoch": 4}, wrapped)
    assert _same_outputs(model, load_checkpoint(wrapped).model)


class _Malicious:
    """Unpickling this would create a file: the classic code-carrying pickle."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


@pytest.mark.parametrize("use_torch_save", [True, False])
def test_code_carrying_pickle_is_refused_and_runs_nothing(tmp_path, use_torch_save):
    marker = tmp_path / "pwned.txt"
    evil = tmp_path / "weights.pt"
    payload = {"conv.weight": torch.zeros(1), "x": _Malicious(str(marker))}
    if use_torch_save:
        torch.save(payload, evil)
    else:
        evil.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(CheckpointError, match="refused|not a loadable") as info:
        load_checkpoint(evil)
    if use_torch_save:  # torch's own format: the offending global is named
        assert "carries code" in str(info.value) and "open" in str(info.value)
    with pytest.raises(CheckpointError):
        load_train_state(evil)
    assert not marker.exists()


def test_mismatched_checkpoints_give_clear_errors(tmp_path):
    save_checkpoint(tmp_path / "shallow", build_model("shallow", 2), _meta())
    with pytest.raises(CheckpointError, match="is a shallow checkpoint, but a resnet18"):
        load_checkpoint(tmp_path / "shallow.json", expect_model="resnet18")
    with pytest.raises(CheckpointError, match="differ from the data's"):
        load_checkpoint(tmp_path / "shallow.json", expect_classes=["a", "b", "c"])
    # Weights of one architecture under another's name: the message says what they are.
    save_checkpoint(tmp_path / "liar", build_model("resnet18", 2), _meta("vgg11"))
    with pytest.raises(CheckpointError, match="weights of a resnet18 with 2 classes, not a vgg11"):
        load_checkpoint(tmp_path / "liar")
    # Same architecture, other class count.
    save_checkpoint(tmp_path / "three", build_model("shallow", 3), {**_meta(), "classes": ["a", "b"]})
    with pytest.raises(CheckpointError, match="'classes' names 2 classes but the weights' last layer has 3"):
        load_checkpoint(tmp_path / "three")
    torch.save(build_model("shallow", 3).state_dict(), tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="'classes' names 2 classes but the weights' last layer has 3"):
        load_checkpoint(tmp_path / "plain.pt", expect_classes=CLASSES)


def test_missing_and_corrupt_files_are_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="No checkpoint"):
        load_checkpoint(tmp_path / "nothing.json")
    save_checkpoint(tmp_path / "c", build_model("shallow", 2), _meta())
    data = (tmp_path / "c.safetensors").read_bytes()
    (tmp_path / "c.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "c.json")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file at all")
    with pytest.raises(CheckpointError, match="not a loadable"):
        load_checkpoint(tmp_path / "junk.pt")


@pytest.mark.parametrize("fail_at", ["weights", "fsync", "rename"])
def test_failed_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch, fail_at):
    torch.manual_seed(0)
    old = build_model("shallow", 2)
    save_checkpoint(tmp_path / "last", old, _meta(epoch=1))
    new = build_model("shallow", 2)
    if fail_at == "weights":
        from geocam_gui.core import checkpoints

        def broken_save(*a, **k):
            raise OSError("disk full")

        monkeypatch.setattr(checkpoints, "write_tensor_file", broken_save)
    elif fail_at == "fsync":
        from geocam_gui.core import files

        monkeypatch.setattr(files, "fsync_file", lambda p: (_ for _ in ()).throw(OSError("I/O error")))
    else:
        real_replace = os.replace

        def replace_then_fail(src, dst):  # the crash lands between the two renames
            if str(dst).endswith(".json"):
                raise OSError("power cut")
            return real_replace(src, dst)

        monkeypatch.setattr(os, "replace", replace_then_fail)
    with pytest.raises(CheckpointError, match="Could not write checkpoint"):
        save_checkpoint(tmp_path / "last", new, _meta(epoch=2))
    monkeypatch.undo()
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    loaded = load_checkpoint(tmp_path / "last.json")
    if fail_at == "rename":
        # The weights were already replaced: they carry their own metadata, so they stay consistent.
        assert loaded.meta["epoch"] == 2 and _same_outputs(new, loaded.model)
    else:
        assert loaded.meta["epoch"] == 1 and _same_outputs(old, loaded.model)


def test_find_checkpoints_lists_best_json_newest_first(tmp_path):
    model = build_model("shallow", 2)
    a = save_checkpoint(tmp_path / "runA" / "shallow" / "best", model, _meta())
    save_checkpoint(tmp_path / "runA" / "shallow" / "last", model, _meta())
    b = save_checkpoint(tmp_path / "runB" / "resnet" / "best", model, _meta())
    os.utime(a, (time.time() - 100, time.time() - 100))
    (tmp_path / "orphan").mkdir()
    (tmp_path / "orphan" / "best.json").write_text("{}")  # no weights beside it: not listed
    assert find_checkpoints(tmp_path) == [b, a]
    assert find_checkpoints(tmp_path / "missing") == []


def test_train_state_round_trip_with_weights_only(tmp_path):
    model = build_model("shallow", 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    opt.step()
    path = save_train_state(tmp_path / "last_state.pt", {"epoch": 2, "optimizer": opt.state_dict(),
                                                         "history": json.dumps([{"epoch": 1}])})
    state = torch.load(path, weights_only=True)  # what load_train_state does
    assert state["epoch"] == 2
    opt2 = torch.optim.AdamW(build_model("shallow", 2).parameters(), lr=1e-3)
    opt2.load_state_dict(load_train_state(path)["optimizer"])
    assert opt2.state_dict()["state"][0]["step"] == 1


def test_tensor_names_come_from_the_header_alone(tmp_path):
    """The layer names of a checkpoint without loading its weights: from its stem, its .json or
    its .safetensors; None for a plain PyTorch file; a sentence for a missing or broken one."""
    from geocam_gui.core.checkpoints import tensor_names
    from geocam_gui.core.errors import BadCheckpoint

    model = build_model("shallow", 2)
    st = save_checkpoint(tmp_path / "best", model, {"model": "shallow", "classes": CLASSES, "image_size": 32})
    expected = set(model.state_dict())
    for path in (st, st.with_suffix(".json"), tmp_path / "best"):
        assert tensor_names(path) == expected
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    assert tensor_names(tmp_path / "plain.pt") is None
    with pytest.raises(BadCheckpoint, match="No checkpoint found"):
        tensor_names(tmp_path / "missing.safetensors")
    (tmp_path / "broken.safetensors").write_bytes(b"\xff" * 16)
    with pytest.raises(CheckpointError, match="broken.safetensors is not a readable safetensors file"):
        tensor_names(tmp_path / "broken.safetensors")
