"""Issue 15: seeded fuzzing of the three readers of outside data. Random bytes, random truncations
and random JSON mutations may only ever raise GeoCAM's own errors (or succeed)."""

from __future__ import annotations

import copy
import io
import json
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geocam_gui.core.errors import GeoCamError

SEED = 15
ODD_VALUES = [None, True, False, -1, 0, 1, 7.5, 1e308, -1e-9, 10**12, "", "abc", "../../x.png", "/etc/passwd",
              "a\x00b", [], {}, [1, 2], [1, 2, 3], ["a", "a"], {"x": 1}, "é" * 300, float("nan"), float("inf")]


def _mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    choice = rng.randrange(4)
    if choice == 0:  # truncation
        return data[: rng.randrange(len(data) + 1)]
    if choice == 1:  # flipped bytes
        b = bytearray(data)
        for _ in range(rng.randint(1, 16)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b)
    if choice == 2:  # random bytes behind the real header
        return data[: rng.randrange(1, 64)] + rng.randbytes(rng.randrange(0, 2048))
    return rng.randbytes(rng.randrange(0, 4096))


def _mutate_json(rng: random.Random, obj):
    """A deep copy of ``obj`` with 1-3 random edits: a key removed, a value replaced, a key added."""
    obj = copy.deepcopy(obj)
    for _ in range(rng.randint(1, 3)):
        node = obj
        for _depth in range(rng.randint(0, 3)):
            kids = list(node.values()) if isinstance(node, dict) else node if isinstance(node, list) else []
            kids = [k for k in kids if isinstance(k, (dict, list)) and k]
            if not kids:
                break
            node = rng.choice(kids)
        if isinstance(node, dict) and node:
            key = rng.choice(list(node))
            op = rng.randrange(3)
            if op == 0:
                del node[key]
            elif op == 1:
                node[key] = copy.deepcopy(rng.choice(ODD_VALUES))
            else:
                node[rng.choice(["extra", key + "_", "output", "classes"])] = copy.deepcopy(rng.choice(ODD_VALUES))
        elif isinstance(node, list) and node:
            node[rng.randrange(len(node))] = copy.deepcopy(rng.choice(ODD_VALUES))
    return obj


def _run(fn, what: str, failures: list) -> None:
    try:
        fn()
    except GeoCamError:
        pass
    except Exception as exc:  # noqa: BLE001 - the point of the test
        failures.append(f"{what}: {type(exc).__name__}: {str(exc)[:160]}")


def test_image_prober_and_decoder_raise_only_image_errors(tmp_path):
    from geocam_gui.core.data import images

    rng = random.Random(SEED)
    arr = np.random.default_rng(SEED).integers(0, 256, (20, 28, 3), dtype=np.uint8)
    seeds = []
    for fmt in ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM"):
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format=fmt)
        seeds.append(buf.getvalue())
    failures: list[str] = []
    for i in range(240):
        p = tmp_path / f"f{i}.{rng.choice(['jpg', 'png', 'tif'])}"
        p.write_bytes(_mutate_bytes(rng, rng.choice(seeds)))
        _run(lambda: images.probe(p), f"probe case {i}", failures)
        _run(lambda: images.load_resized(p, 16), f"decode case {i}", failures)
    assert not failures, failures[:10]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, torch_threads):
    from geocam_gui.core.checkpoints import base_meta, save_checkpoint
    from geocam_gui.core.models import build_model

    root = tmp_path_factory.mktemp("fuzz_ck")
    return save_checkpoint(root / "best", build_model("shallow", 2), base_meta("shallow", ["pittsburgh", "tokyo"], 32))


def test_checkpoint_loader_raises_only_geocam_errors(checkpoint, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    from geocam_gui.core.checkpoints import load_checkpoint, load_state_dict_file, read_meta

    rng = random.Random(SEED)
    weights = Path(checkpoint).with_suffix(".safetensors")
    st_bytes = weights.read_bytes()
    state = load_file(str(weights))
    meta = json.loads(Path(checkpoint).read_text(encoding="utf-8"))
    buf = io.BytesIO()
    torch.save(state, buf)
    pt_bytes = buf.getvalue()
    failures: list[str] = []
    for i in range(90):
        folder = tmp_path / f"c{i}"
        folder.mkdir()
        kind = i % 3
        if kind == 0:  # a damaged weights file
            (folder / "best.safetensors").write_bytes(_mutate_bytes(rng, st_bytes))
            (folder / "best.json").write_text(json.dumps(meta), encoding="utf-8")
        elif kind == 1:  # valid weights, mutated metadata (embedded and beside)
            m = _mutate_json(rng, meta)
            save_file(state, str(folder / "best.safetensors"), metadata={"geocam": json.dumps(m)})
            (folder / "best.json").write_text(json.dumps(m), encoding="utf-8")
        else:  # a plain PyTorch file, damaged
            (folder / "best.pt").write_bytes(_mutate_bytes(rng, pt_bytes))
            _run(lambda: load_state_dict_file(folder / "best.pt"), f"pt case {i}", failures)
            _run(lambda: load_checkpoint(folder / "best.pt", meta={"classes": ["a", "b"]}), f"pt case {i}", failures)
            continue
        _run(lambda: read_meta(folder / "best.json"), f"meta case {i}", failures)
        _run(lambda: load_checkpoint(folder / "best.json"), f"load case {i}", failures)
    assert not failures, failures[:10]


def test_sidecar_reader_raises_only_geocam_errors(checkpoint, tmp_path):
    from geocam_gui.core import export as ex

    photo = tmp_path / "photo.png"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(photo)
    req = ex.ExportRequest("overlays", [ex.ExportImage(str(photo), "tokyo")], [str(checkpoint)],
                           str(tmp_path / "export"), ex.ExportOptions())
    summary = ex.export(req)
    sidecars = [Path(p + ".json") for p in summary.written]
    rng = random.Random(SEED)
    failures: list[str] = []
    for i in range(210):
        src = rng.choice(sidecars)
        side = tmp_path / "cases" / f"s{i}" / src.name
        side.parent.mkdir(parents=True)
        if i % 4 == 0:
            side.write_bytes(_mutate_bytes(rng, src.read_bytes()))
        else:
            side.write_text(json.dumps(_mutate_json(rng, json.loads(src.read_text(encoding="utf-8")))),
                            encoding="utf-8")
        _run(lambda: ex.read_sidecar(side), f"read case {i}", failures)
        _run(lambda: ex.request_from_sidecar(side, tmp_path / "dest"), f"request case {i}", failures)
        _run(lambda: ex.request_from_sidecar(side), f"beside case {i}", failures)
    assert not failures, failures[:10]
    assert not (tmp_path / "dest").exists()  # reading a sidecar never writes
