"""Safe checkpoints: safetensors weights + a JSON metadata sidecar, written atomically.

A checkpoint is ``<dir>/<stem>.safetensors`` + ``<dir>/<stem>.json``. The metadata is also
embedded in the safetensors header (key ``geocam``), so weights and metadata can never disagree:
if a crash lands between the two renames, the weights file still describes itself.

Writes go through ``core.files`` (temporary files in the same folder, fsync'ed, then renamed
over the old ones): a failed or interrupted write leaves the previous checkpoint intact.

Loading never runs code: safetensors is data only, and plain PyTorch files (e.g. torchvision
state dicts) are read with ``torch.load(weights_only=True)``, which refuses pickles that would
import or call anything but tensors and containers.
"""

from __future__ import annotations

import datetime as _dt
import pickle
import platform
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from geocam_gui.core import validate
from geocam_gui.core.errors import BadCheckpoint, CheckpointError, WriteError
from geocam_gui.core.files import atomic_write_group, json_default
from geocam_gui.core.tensor_file import write_tensor_file  # noqa: F401 - also used by train.saver
from geocam_gui.core.models import MEAN, MODEL_NAMES, STD, build_model, is_legacy_shallow

FORMAT_VERSION = 1
MAX_META_BYTES = 16 << 20
_META_KEY = "geocam"


@dataclass
class LoadedCheckpoint:
    """A model ready for inference (eval mode, on the asked device) with its metadata."""

    model: nn.Module
    meta: dict
    path: Path


# --------------------------------------------------------------------------- metadata helpers
def checkpoint_stamp(path: str | Path) -> str:
    """A key that changes when a checkpoint's files change (path, sizes and modification times),
    for caches of results computed from it."""
    import hashlib

    path = Path(path)
    parts = [str(path.resolve())]
    for suffix in (".safetensors", ".json"):
        f = path.with_suffix(suffix)
        if f.is_file():
            st = f.stat()
            parts.append(f"{suffix}:{st.st_size}:{st.st_mtime_ns}")
    if path.is_file() and path.suffix not in (".safetensors", ".json"):
        st = path.stat()
        parts.append(f"{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def library_versions() -> dict[str, str]:
    """Versions worth recording next to a trained model."""
    import numpy
    import torchvision

    from geocam_gui import __version__

    return {
        "geocam": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }


def base_meta(model_name: str, classes: list[str], image_size: int, **extra: Any) -> dict:
    """The metadata every checkpoint carries; ``extra`` adds or overrides keys."""
    meta = {
        "format_version": FORMAT_VERSION,
        "model": model_name,
        "classes": list(classes),
        "image_size": int(image_size),
        "mean": list(MEAN),
        "std": list(STD),
        "epoch": None,
        "metrics": {},
        "versions": library_versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    meta.update(extra)
    return meta


def plain_state(model: nn.Module | dict) -> dict[str, torch.Tensor]:
    state = model.state_dict() if isinstance(model, nn.Module) else model
    return {strip_prefix(k): v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def strip_prefix(key: str) -> str:
    # DistributedDataParallel adds "module.", torch.compile adds "_orig_mod.".
    for prefix in ("module.", "_orig_mod."):
        while key.startswith(prefix):
            key = key[len(prefix):]
    return key


# --------------------------------------------------------------------------- save
def save_checkpoint(path_without_suffix: str | Path, model: nn.Module | dict, meta: dict) -> Path:
    """Write ``<stem>.safetensors`` and ``<stem>.json`` atomically; returns the ``.json`` path.

    ``meta`` must hold at least ``model`` and ``classes``; ``base_meta`` fills the rest.
    Both files are first written and fsync'ed as temporaries; only then are they renamed, so an
    error at any point leaves the previous checkpoint (if any) as it was.
    """
    stem = _stem(Path(path_without_suffix))
    if "model" not in meta or "classes" not in meta:
        raise CheckpointError("Checkpoint metadata needs at least 'model' and 'classes'.")
    meta = dict(meta)
    meta.setdefault("format_version", FORMAT_VERSION)
    meta.setdefault("created", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    meta.setdefault("versions", library_versions())
    meta_text = validate.dumps(meta, indent=2, sort_keys=True, default=json_default)
    state = plain_state(model)
    st_path = stem.with_name(stem.name + ".safetensors")
    js_path = stem.with_name(stem.name + ".json")

    def write_weights(tmp: Path) -> None:
        # our own writer: safetensors' save_file renames its own 0600 temporary over ``tmp``
        write_tensor_file(tmp, state, {_META_KEY: validate.dumps(meta, default=json_default)})

    try:  # both written (and fsync'ed) as temporaries first, then renamed: weights, then metadata
        atomic_write_group([(st_path, write_weights), (js_path, meta_text + "\n")])
    except Exception as exc:
        raise CheckpointError(f"Could not write checkpoint {js_path}: {write_reason(exc)}") from exc
    return js_path


def write_reason(exc: Exception) -> str:
    """The reason part of a write failure (WriteError already says which file)."""
    if isinstance(exc, WriteError):
        return exc.reason
    return str(exc) or type(exc).__name__


def _stem(path: Path) -> Path:
    if path.suffix in (".json", ".safetensors"):
        return path.with_suffix("")
    return path


# --------------------------------------------------------------------------- load
def read_meta(path: str | Path) -> dict:
    """The metadata of a checkpoint (``.json``, ``.safetensors`` or stem) without its weights."""
    stem = _stem(Path(path))
    st_path = stem.with_name(stem.name + ".safetensors")
    if st_path.is_file():
        embedded = _embedded_meta(st_path)
        if embedded is not None:
            return embedded
    js_path = stem.with_name(stem.name + ".json")
    if js_path.is_file():
        try:
            if js_path.stat().st_size > MAX_META_BYTES:
                raise ValueError("too large")
            meta = validate.loads(js_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:  # also NaN tokens and bytes that are not UTF-8
            raise CheckpointError(f"{js_path.name} is not readable checkpoint metadata: {exc}") from exc
        return validate.check_checkpoint_meta(meta, js_path, MODEL_NAMES)
    raise BadCheckpoint(f"No checkpoint found at {path}.")


def safetensors_header(st_path: Path) -> tuple[set[str], dict[str, str]]:
    """The tensor names and string metadata of a safetensors file, from its header alone."""
    from safetensors import safe_open

    try:
        with safe_open(str(st_path), framework="pt") as fh:
            return set(fh.keys()), fh.metadata() or {}
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file
        raise CheckpointError(f"{st_path.name} is not a readable safetensors file: {exc}") from exc


def _embedded_meta(st_path: Path) -> dict | None:
    raw = safetensors_header(st_path)[1].get(_META_KEY)
    if raw is None:
        return None
    try:
        meta = validate.loads(raw)
    except ValueError as exc:
        raise CheckpointError(f"{st_path.name} carries corrupt metadata: {exc}") from exc
    return validate.check_checkpoint_meta(meta, st_path, MODEL_NAMES)


def tensor_names(path: str | Path) -> set[str] | None:
    """The names of a checkpoint's tensors (any path ``load_checkpoint`` takes), read from the
    safetensors header without the weights; ``None`` for a plain PyTorch file (a pickle has no
    header). Raises like ``load_checkpoint`` for a missing or unreadable file."""
    kind, file = _resolve(Path(path))
    return safetensors_header(file)[0] if kind == "safetensors" else None


def _resolve(path: Path) -> tuple[str, Path]:
    """('safetensors' | 'torch', file) for a user path (.json, .safetensors, stem or .pt)."""
    if path.suffix == ".json" or path.suffix == ".safetensors" or not path.suffix or not path.exists():
        stem = _stem(path)
        st_path = stem.with_name(stem.name + ".safetensors")
        if st_path.is_file():
            return "safetensors", st_path
        if path.suffix == ".json" and path.is_file():
            raise CheckpointError(f"{path.name} has no weights beside it ({st_path.name} is missing).")
    if path.is_file():
        if path.suffix == ".safetensors":
            return "safetensors", path
        return "torch", path
    raise BadCheckpoint(f"No checkpoint found at {path}.")


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file, or of a plain PyTorch file read with ``weights_only=True``.

    A pickle that would import or call code is refused with ``CheckpointError``.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return _finite(load_file(str(path)), path)
        except CheckpointError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise CheckpointError(f"{path.name} is not a readable safetensors file: {exc}") from exc
    obj = torch_load_safe(path)
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path.name} does not hold a state dict of tensors.")
    return _finite({strip_prefix(k): v for k, v in obj.items()}, path)


def _finite(state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """Refuse weights holding NaN or Inf: they would evaluate to a meaningless accuracy and
    explain with all-NaN maps."""
    for key, value in state.items():
        if value.is_complex():
            value = torch.view_as_real(value)
        if value.is_floating_point() and value.numel():
            # min and max propagate NaN and show an infinity: one pass, no tensor of booleans (20x faster)
            if not all(bool(torch.isfinite(x)) for x in value.float().aminmax()):
                raise BadCheckpoint(f"{path.name} was refused: its weights {key} hold NaN or infinite values.")
    return state


def torch_load_safe(path: Path) -> Any:
    """``torch.load(weights_only=True)`` with its refusals turned into ``CheckpointError``."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise BadCheckpoint(f"No checkpoint found at {path}.") from None
    except pickle.UnpicklingError as exc:  # one GeoCAM sentence, never torch's advice to disable the check
        match = re.search(r"GLOBAL ([\w.]+)", str(exc), re.IGNORECASE)
        if not match:
            raise CheckpointError(f"{path.name} is not a loadable PyTorch weights file: it is damaged or holds "
                                  "something other than plain tensors (objects or code are never loaded).") from None
        raise CheckpointError(
            f"{path.name} was refused: it is a pickle that carries code ({match.group(1)}), not plain weights; "
            "GeoCAM loads only tensors, numbers and containers."
        ) from None
    except Exception as exc:  # noqa: BLE001 - truncated zip, not a torch file, ...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise CheckpointError(f"{path.name} is not a loadable PyTorch weights file: {first}") from None


def infer_architecture(state: dict[str, torch.Tensor]) -> tuple[str, int]:
    """(model name, number of classes) of a state dict, from its keys and head shape."""
    if "fc.weight" in state and "layer4.1.conv2.weight" in state and "layer1.0.conv1.weight" in state:
        return "resnet18", int(state["fc.weight"].shape[0])
    if "classifier.6.weight" in state:
        return "vgg11", int(state["classifier.6.weight"].shape[0])
    if "classifier.4.weight" in state and "features.9.weight" in state:
        return "shallow", int(state["classifier.4.weight"].shape[0])
    raise CheckpointError(
        "Cannot tell which architecture these weights belong to "
        f"(known: {', '.join(MODEL_NAMES)})."
    )


def load_checkpoint(
    path: str | Path,
    *,
    device: str | torch.device = "cpu",
    expect_model: str | None = None,
    expect_classes: list[str] | None = None,
    meta: dict | None = None,
) -> LoadedCheckpoint:
    """Load a checkpoint (its ``.json``, ``.safetensors`` or stem), or a plain state dict file.

    For a plain PyTorch state dict (no GeoCAM metadata) the architecture and class count are
    inferred from the tensors; ``meta`` (or ``expect_classes``) supplies the class names and
    the input size. ``expect_model`` / ``expect_classes`` turn a mismatch into a clear
    ``CheckpointError`` instead of a surprise later.
    """
    path = Path(path)
    kind, file = _resolve(path)
    state = load_state_dict_file(file)
    found = _maybe_meta(file) if kind == "safetensors" else {}
    found = validate.check_checkpoint_meta({**found, **(meta or {})}, file, MODEL_NAMES)
    inferred_name, inferred_k = infer_architecture(state) if _needs_inference(found) else (None, None)
    name = found.get("model") or inferred_name
    classes = found.get("classes") or expect_classes
    if classes is None and inferred_k is not None:
        classes = [f"class{i}" for i in range(inferred_k)]
    if not name or not classes:
        raise CheckpointError(f"{file.name} carries no model name or class list; pass them as meta.")
    if name not in MODEL_NAMES:
        raise CheckpointError(f"{file.name} is for an unknown model {name!r} (known: {', '.join(MODEL_NAMES)}).")
    if expect_model is not None and name != expect_model:
        raise CheckpointError(f"{file.name} is a {name} checkpoint, but a {expect_model} model was asked for.")
    if expect_classes is not None and list(expect_classes) != list(classes):
        raise CheckpointError(
            f"{file.name} was trained on classes {list(classes)}, which differ from the data's "
            f"{list(expect_classes)}."
        )
    model = build_model(name, len(classes), legacy=name == "shallow" and is_legacy_shallow(state))
    head = [k for k, v in model.state_dict().items() if v.dim() == 2][-1]  # the last layer's weight
    if head in state and state[head].dim() == 2:
        validate.check_head_width(list(classes), state[head].shape[0], file)
    _load_into(model, state, name, len(classes), file)
    full = base_meta(name, list(classes), int(found.get("image_size") or 224))
    full.update(found)
    full["model"], full["classes"] = name, list(classes)
    model.to(device).eval()
    return LoadedCheckpoint(model=model, meta=full, path=file.with_suffix(".json") if kind == "safetensors" else file)


def _maybe_meta(st_path: Path) -> dict:
    """Embedded metadata, else the JSON sidecar, else {} (a foreign safetensors file)."""
    embedded = _embedded_meta(st_path)
    if embedded is not None:
        return embedded
    js_path = st_path.with_suffix(".json")
    if js_path.is_file():
        return read_meta(js_path)
    return {}


def _needs_inference(meta: dict) -> bool:
    return not meta.get("model") or not meta.get("classes")


def _load_into(model: nn.Module, state: dict, name: str, k: int, file: Path) -> None:
    # a half-precision copy (``--save-dtype float16``) computes in float32 like the original
    state = {key: v.float() if v.dtype in (torch.float16, torch.bfloat16) else v for key, v in state.items()}
    own = model.state_dict()
    missing = [key for key in own if key not in state]
    unexpected = [key for key in state if key not in own]
    if missing or unexpected:
        try:
            other, other_k = infer_architecture(state)
            what = f"a {other} with {other_k} classes"
        except CheckpointError:
            what = "another architecture"
        raise CheckpointError(
            f"{file.name} holds weights of {what}, not a {name} with {k} classes "
            f"({len(missing)} tensors missing, {len(unexpected)} unexpected)."
        )
    bad = [key for key in own if tuple(own[key].shape) != tuple(state[key].shape)]
    if bad:
        key = bad[0]
        raise CheckpointError(
            f"{file.name} does not fit a {name} with {k} classes: {key} has shape "
            f"{tuple(state[key].shape)}, expected {tuple(own[key].shape)}."
        )
    model.load_state_dict(state, strict=True)


# --------------------------------------------------------------------------- discovery
def find_checkpoints(folder: str | Path) -> list[Path]:
    """Every ``best.json`` below ``folder`` that has its weights beside it, newest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [p for p in folder.rglob("best.json") if p.with_suffix(".safetensors").is_file()]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)
