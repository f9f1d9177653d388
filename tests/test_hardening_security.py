"""Issue 15, security: sidecars and checkpoints are data, never code or a place to write to."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geocam_gui.cli import main
from geocam_gui.core.errors import BadCheckpoint, CheckpointError

CLASSES = ["pittsburgh", "tokyo"]


@pytest.fixture(scope="module")
def kit(tmp_path_factory, torch_threads):
    """A tiny shallow checkpoint, one photo and one real overlay export with its sidecar."""
    from geocam_gui.core.checkpoints import base_meta, save_checkpoint
    from geocam_gui.core import export as ex
    from geocam_gui.core.models import build_model

    torch_threads.manual_seed(0)
    root = tmp_path_factory.mktemp("hardening")
    save_checkpoint(root / "ck" / "best", build_model("shallow", 2), base_meta("shallow", CLASSES, 32))
    photo = root / "photos" / "tokyo" / "view.png"
    photo.parent.mkdir(parents=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(photo)
    req = ex.ExportRequest("overlays", [ex.ExportImage(str(photo), "tokyo")], [str(root / "ck" / "best.json")],
                           str(root / "export"), ex.ExportOptions(outputs=("overlay",)))
    summary = ex.export(req)
    assert len(summary.written) == 1
    sidecar = Path(summary.written[0] + ".json")
    return {"root": root, "ckpt": root / "ck" / "best.json", "photo": photo, "sidecar": sidecar,
            "data": json.loads(sidecar.read_text(encoding="utf-8"))}


def _evil(tmp_path, kit, **changes) -> Path:
    data = json.loads(json.dumps(kit["data"]))
    for key, value in changes.items():
        if key.startswith("params."):
            data["params"][key[7:]] = value
        else:
            data[key] = value
    path = tmp_path / "evil.png.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- sidecar containment
@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("output", ["../../escaped.png", "/tmp/geocam_escaped_abs.png", "sub/x.png",
                                    "x.sh", "x.png.exe", ".hidden.png", "..", "", 7])
def test_a_sidecar_output_must_be_a_plain_image_name(kit, tmp_path, capsys, output, overwrite):
    dest = tmp_path / "a" / "b" / "dest"
    dest.mkdir(parents=True)
    victim = tmp_path / "escaped.png"  # where ../../escaped.png would land
    victim.write_bytes(b"precious")
    side = _evil(tmp_path, kit, output=output)
    argv = ["export", "--from-sidecar", str(side), "--overlays", str(dest)] + (["--overwrite"] if overwrite else [])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "'output'" in err and str(side) in err
    assert victim.read_bytes() == b"precious"
    assert not Path("/tmp/geocam_escaped_abs.png").exists()
    assert list(dest.iterdir()) == []


def test_a_plain_sidecar_still_recreates_its_output(kit, tmp_path, capsys):
    dest = tmp_path / "again"
    assert main(["export", "--from-sidecar", str(kit["sidecar"]), "--overlays", str(dest)]) == 0
    out = dest / kit["data"]["output"]
    assert out.read_bytes() == (kit["sidecar"].parent / kit["data"]["output"]).read_bytes()


def test_an_output_link_leading_out_of_the_folder_is_refused(kit, tmp_path, capsys):
    dest = tmp_path / "dest"
    dest.mkdir()
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"precious")
    (dest / kit["data"]["output"]).symlink_to(outside)
    assert main(["export", "--from-sidecar", str(kit["sidecar"]), "--overlays", str(dest), "--overwrite"]) == 2
    assert "outside" in capsys.readouterr().err
    assert outside.read_bytes() == b"precious"


# --------------------------------------------------------------------------- bounded sidecar fields
@pytest.mark.parametrize("field,value", [
    ("params.opacity", 7.5), ("params.opacity", "abc"), ("params.dpi", 10), ("params.dpi", 100000),
    ("params.dpi", [1, 2]), ("params.images", []), ("params.images", "x.png"), ("params.checkpoints", [3]),
    ("params.model_index", 5), ("params.method", "rm -rf"), ("params.colormap", None), ("params.class", ""),
])
def test_sidecar_fields_out_of_bounds_name_field_and_file(kit, tmp_path, capsys, field, value):
    side = _evil(tmp_path, kit, **{field: value})
    assert main(["export", "--from-sidecar", str(side), "--overlays", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip()
    assert repr(field.split(".")[-1]) in err and str(side) in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "d").exists()


def test_a_sidecar_without_a_class_field_is_one_sentence(kit, tmp_path, capsys):
    data = json.loads(json.dumps(kit["data"]))
    del data["params"]["class"]
    side = tmp_path / "x.png.json"
    side.write_text(json.dumps(data), encoding="utf-8")
    assert main(["export", "--from-sidecar", str(side)]) == 2
    assert "'class'" in capsys.readouterr().err


def test_a_sidecar_with_nan_tokens_is_not_json(kit, tmp_path, capsys):
    text = kit["sidecar"].read_text(encoding="utf-8").replace('"opacity": 0.5', '"opacity": NaN', 1)
    assert "NaN" in text
    side = tmp_path / "nan.png.json"
    side.write_text(text, encoding="utf-8")
    assert main(["export", "--from-sidecar", str(side)]) == 2
    assert "strict JSON" in capsys.readouterr().err


# --------------------------------------------------------------------------- bounded checkpoint metadata
def _ckpt_with(tmp_path, kit, **changes) -> Path:
    import shutil

    folder = tmp_path / "ck"
    folder.mkdir()
    shutil.copy(kit["ckpt"].with_suffix(".safetensors"), folder / "best.safetensors")
    meta = json.loads(kit["ckpt"].read_text(encoding="utf-8"))
    for k, v in changes.items():
        if v is KeyError:
            del meta[k]
        else:
            meta[k] = v
    _rewrite_embedded(folder / "best.safetensors", meta)
    (folder / "best.json").write_text(json.dumps(meta), encoding="utf-8")
    return folder / "best.json"


def _rewrite_embedded(st_path: Path, meta: dict) -> None:
    from safetensors.torch import load_file, save_file

    save_file(load_file(str(st_path)), str(st_path), metadata={"geocam": json.dumps(meta)})


@pytest.mark.parametrize("field,value", [
    ("image_size", 100000), ("image_size", "abc"), ("image_size", 8), ("image_size", True),
    ("classes", []), ("classes", ["a", "a"]), ("classes", [1, 2]), ("classes", "ab"),
    ("classes", ["a", "b", "c"]),  # three names for a head of two outputs
    ("mean", [1, 2]), ("std", [0.2, 0.2, 0.0]), ("model", "evilnet"),
])
def test_checkpoint_metadata_outside_the_schema_is_refused_before_allocation(kit, tmp_path, capsys, field, value):
    from geocam_gui.core.checkpoints import load_checkpoint

    path = _ckpt_with(tmp_path, kit, **{field: value})
    with pytest.raises(BadCheckpoint, match=repr(field)):
        load_checkpoint(path)
    photo = str(kit["photo"])
    assert main(["export", "--checkpoint", str(path), "--images", photo, "--overlays", str(tmp_path / "o")]) == 2
    # one sentence (a progress line of the work done before the weights were read may precede it)
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not re.match(r"\[\d+/\d+\]", line)]
    assert len(err) == 1 and repr(field) in err[0] and "best" in err[0]
    assert main(["eval", str(path), str(kit["root"] / "photos")]) == 2


def test_checkpoint_metadata_missing_classes_is_named(kit, tmp_path):
    from geocam_gui.core.checkpoints import load_checkpoint

    path = _ckpt_with(tmp_path, kit, classes=KeyError)
    ck = load_checkpoint(path)  # the head's width is then used: class0, class1
    assert ck.meta["classes"] == ["class0", "class1"]


# --------------------------------------------------------------------------- weights
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_are_refused_at_load(kit, tmp_path, capsys, bad):
    import torch
    from safetensors.torch import load_file, save_file

    from geocam_gui.core.checkpoints import load_checkpoint, load_state_dict_file

    folder = tmp_path / "ck"
    folder.mkdir()
    state = load_file(str(kit["ckpt"].with_suffix(".safetensors")))
    key = sorted(k for k in state if k.endswith("weight"))[0]
    state[key].view(-1)[3] = bad
    meta = kit["ckpt"].read_text(encoding="utf-8")
    save_file(state, str(folder / "best.safetensors"), metadata={"geocam": meta})
    (folder / "best.json").write_text(meta, encoding="utf-8")
    with pytest.raises(BadCheckpoint, match="NaN or infinite"):
        load_checkpoint(folder / "best.json")
    torch.save(state, folder / "plain.pt")
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        load_state_dict_file(folder / "plain.pt")
    assert main(["export", "--checkpoint", str(folder / "best.json"), "--images", str(kit["photo"]),
                 "--overlays", str(tmp_path / "o")]) == 2
    assert "NaN or infinite" in capsys.readouterr().err
    assert not any((tmp_path / "o").glob("*.json")) if (tmp_path / "o").exists() else True


def test_written_json_is_strict(tmp_path):
    from geocam_gui.core import validate
    from geocam_gui.core.files import atomic_write_json

    atomic_write_json(tmp_path / "m.json", {"loss": float("nan"), "acc": [1.0, float("inf")]})
    text = (tmp_path / "m.json").read_text(encoding="utf-8")
    assert "NaN" not in text and "Infinity" not in text
    assert validate.loads(text) == {"loss": None, "acc": [1.0, None]}
    with pytest.raises(ValueError):
        validate.loads('{"x": NaN}')


def test_a_code_carrying_pickle_is_refused_in_one_geocam_sentence(tmp_path, capsys):
    import pickle

    import torch

    from geocam_gui.core.checkpoints import load_state_dict_file

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    torch.save({"w": torch.zeros(2), "x": Evil()}, tmp_path / "evil.pt")
    with open(tmp_path / "evil2.pt", "wb") as fh:
        pickle.dump({"x": Evil()}, fh)
    for name in ("evil.pt", "evil2.pt"):
        with pytest.raises(CheckpointError) as info:
            load_state_dict_file(tmp_path / name)
        msg = str(info.value)
        assert msg.startswith(f"{name} ") and "\n" not in msg and "weights_only" not in msg
        assert "code" in msg
    with pytest.raises(CheckpointError, match=r"carries code \((posix|nt)\.system\)"):
        load_state_dict_file(tmp_path / "evil.pt")
    assert main(["eval", str(tmp_path / "evil.pt"), str(tmp_path)]) in (1, 2)
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "weights_only" not in err
    assert not (tmp_path / "pwned").exists()


# --------------------------------------------------------------------------- crash between the two writes
def test_a_crash_between_output_and_sidecar_is_recreated_on_the_next_run(kit, tmp_path, monkeypatch, capsys):
    """The process dies at the second of the two renames (output and sidecar): the next run,
    without --overwrite, re-creates the export instead of reporting that it already exists."""

    real = os.replace
    calls = []

    def dying_replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise SystemExit("killed between the two renames")
        return real(src, dst)

    dest = tmp_path / "out"
    argv = ["export", "--checkpoint", str(kit["ckpt"]), "--images", str(kit["photo"]), "--overlays", str(dest),
            "--only", "overlay"]
    monkeypatch.setattr(os, "replace", dying_replace)
    with pytest.raises(SystemExit):
        main(argv)
    monkeypatch.setattr(os, "replace", real)
    out = dest / kit["data"]["output"]
    assert out.exists() != (dest / (out.name + ".json")).exists()  # exactly one of the two was renamed
    capsys.readouterr()
    assert main(argv) == 0, capsys.readouterr().err
    assert out.is_file() and (dest / (out.name + ".json")).is_file()
    assert out.read_bytes() == (kit["sidecar"].parent / out.name).read_bytes()


def test_the_sidecar_schema_knows_the_exporters_kinds_and_formats():
    from geocam_gui.core import export as ex
    from geocam_gui.core.export import sidecar_schema as schema

    assert schema.SIDECAR_FORMAT == ex.SIDECAR_FORMAT
    assert schema.PANE_KINDS == ex.MODEL_OUTPUTS and schema.OVERLAY_FORMATS == ex.OVERLAY_FORMATS
    assert schema.MAX_DPI == ex.MAX_DPI and schema.MIN_DPI <= ex.MIN_DPI
    from geocam_gui.core.export.request import MAX_REFERENCE_IMAGES

    assert schema.MAX_REFERENCE_IMAGES == MAX_REFERENCE_IMAGES
