"""A run's per-epoch state: each tensor written once, by a background writer, crash-safe.

After every complete epoch the run folder (``<out>/<model>/``) holds:

* ``last.safetensors`` + ``last.json``: the weights, an ordinary checkpoint the viewer opens. Its
  header also carries ``geocam_resume`` (epoch, config, history, best, index fingerprint, the
  optimiser's param groups and the name and id of its moments file): the resume authority.
* ``last_optim-<id>.safetensors``: the optimiser's tensors (AdamW step and moments, SGD momentum).
* ``best.safetensors`` + ``best.json`` when validation improved: a hard link to the same weights
  file (a copy where the file system has no hard links), so best costs no second serialisation.

Order of one save, so that a crash at any point leaves the previous complete epoch resumable:
moments file under a new name -> weights to a temporary file (fsync) -> best linked to it ->
rename over ``last.safetensors`` (the commit) -> ``last.json`` -> stale moments files and an old
``last_state.pt`` removed -> metrics line. Every file is written whole, fsync'ed, then renamed.

``StateWriter`` copies the tensors to host memory at the epoch's end (pinned, reused buffers on
CUDA; the copy is queued on the training stream so later steps cannot change it), then writes them
in a thread while the next epoch runs. At most one save is pending: a new one first waits for the
previous. ``close()`` flushes (end of run, cancel, failure); a failed write surfaces as
``CheckpointError`` at the next ``save``/``close``. The CPU uses the same thread (its twin path).

Runs of older versions (``last_state.pt``: weights + optimiser in one ``torch.save``) still resume.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch

from geocam_gui.core import checkpoints as ckpt, validate
from geocam_gui.core.errors import CheckpointError
from geocam_gui.core.files import atomic_write, atomic_write_json, commit_file, json_default, link_or_copy, temp_beside

RESUME_KEY = "geocam_resume"
OPTIM_KEY = "geocam_optimizer"
LEGACY_STATE = "last_state.pt"
_OPTIM_NAME = re.compile(r"^last_optim-[0-9a-f]{12}\.safetensors$")


@dataclass
class EpochSave:
    """What one epoch end saves besides the tensors (all JSON-serialisable)."""

    epoch: int
    meta: dict  # checkpoint metadata (``kind`` is set per file)
    improved: bool
    config: dict
    history: list
    best: dict
    fingerprint: str
    metrics_lines: list = field(default_factory=list)  # [(path, record)] appended after the commit


@dataclass
class _Snapshot:
    weights: dict
    optim: dict
    groups: str
    plain: str
    ready: object = None  # a CUDA event the writer waits for, or None


class StateWriter:
    """Writes ``EpochSave``s of one run folder, one at a time, off the training thread."""

    def __init__(self, run_dir: Path, device: torch.device, *, background: bool = True):
        self.run_dir = Path(run_dir)
        self.device = device
        self.cuda = device.type == "cuda"
        self.background = background
        self._buffers: dict[str, torch.Tensor] = {}
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._events: list[dict] = []
        self._lock = threading.Lock()
        self.bytes_written = 0  # by the last completed save

    # ---------------------------------------------------------------- training thread
    def save(self, net: torch.nn.Module, opt: torch.optim.Optimizer, job: EpochSave) -> None:
        """Wait for the previous save, copy the state to host memory, then write it (in the background)."""
        self.wait()
        snap = self._snapshot(net, opt)
        if not self.background:
            self._run(snap, job)
            self._raise()
            return
        self._thread = threading.Thread(target=self._run, args=(snap, job), name="geocam-state-writer", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        """Block until the pending save (if any) is on disk; raise its error, if it failed."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._raise()

    def drain(self) -> list[dict]:
        """The ``checkpoint`` events of the saves finished since the last call (``kind``, ``path``, ``epoch``)."""
        with self._lock:
            events, self._events = self._events, []
        return events

    def close(self) -> list[dict]:
        """Flush: wait for the pending save; returns the events not drained yet."""
        self.wait()
        return self.drain()

    def abandon(self) -> None:
        """Wait for the pending save without raising (the run is failing already)."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _raise(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            if isinstance(error, CheckpointError):
                raise error
            raise CheckpointError(f"Could not write the run state in {self.run_dir}: {error}") from error

    def _host(self, key: str, t: torch.Tensor) -> torch.Tensor:
        t = t.detach()
        buf = self._buffers.get(key)
        if buf is None or buf.shape != t.shape or buf.dtype != t.dtype:
            buf = torch.empty(t.shape, dtype=t.dtype, pin_memory=self.cuda)
            self._buffers[key] = buf
        buf.copy_(t, non_blocking=self.cuda)
        return buf

    def _snapshot(self, net, opt) -> _Snapshot:
        weights = {}
        for key, value in net.state_dict().items():
            weights[ckpt.strip_prefix(key)] = self._host("w:" + key, value)
        state = opt.state_dict()
        optim, plain = {}, {}
        for idx, entry in state["state"].items():
            for name, value in entry.items():
                if torch.is_tensor(value):
                    optim[f"optim.{int(idx)}.{name}"] = self._host(f"o:{idx}.{name}", value)
                else:
                    plain.setdefault(str(int(idx)), {})[name] = value
        ready = None
        if self.cuda:
            ready = torch.cuda.Event()
            ready.record(torch.cuda.current_stream(self.device))  # after the copies queued on that stream
        return _Snapshot(weights, optim, json.dumps(state["param_groups"]), json.dumps(plain), ready)

    # ---------------------------------------------------------------- writer thread
    def _run(self, snap: _Snapshot, job: EpochSave) -> None:
        try:
            if snap.ready is not None:
                snap.ready.synchronize()
            events = self._write(snap, job)
            with self._lock:
                self._events.extend(events)
        except BaseException as exc:  # noqa: BLE001 - handed to the training thread
            self._error = exc

    def _write(self, snap: _Snapshot, job: EpochSave) -> list[dict]:
        d = self.run_dir
        d.mkdir(parents=True, exist_ok=True)
        token = secrets.token_hex(6)
        optim_name = f"last_optim-{token}.safetensors"
        tmp, written = _write_temp(d / optim_name, snap.optim, {OPTIM_KEY: json.dumps({"id": token, "epoch": job.epoch})})
        commit_file(tmp, d / optim_name)

        resume = {"epoch": job.epoch, "config": job.config, "history": job.history, "best": job.best,
                  "fingerprint": job.fingerprint, "optimizer_file": optim_name, "optimizer_id": token,
                  "param_groups": json.loads(snap.groups), "optimizer_plain": json.loads(snap.plain)}
        last_meta = {**job.meta, "kind": "last"}
        tmp, n = _write_temp(d / "last.safetensors", snap.weights, {
            "geocam": validate.dumps(last_meta, default=json_default),
            RESUME_KEY: json.dumps(resume, default=json_default)})
        written += n
        events = []
        try:
            if job.improved:
                written += link_or_copy(tmp, d / "best.safetensors")
                written += _json_size(atomic_write_json(d / "best.json", {**job.meta, "kind": "best"}, default=json_default))
                events.append({"kind": "best", "path": str(d / "best.json"), "epoch": job.epoch})
            commit_file(tmp, d / "last.safetensors")  # the commit point
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        written += _json_size(atomic_write_json(d / "last.json", last_meta, default=json_default))
        events.append({"kind": "last", "path": str(d / "last.json"), "epoch": job.epoch})
        for old in d.glob("last_optim-*.safetensors"):
            if old.name != optim_name:
                old.unlink(missing_ok=True)
        (d / LEGACY_STATE).unlink(missing_ok=True)
        for path, record in job.metrics_lines:
            line = json.dumps(record) + "\n"
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(line)
            written += len(line.encode("utf-8"))
        self.bytes_written = written
        return events


def _write_temp(path: Path, tensors: dict, metadata: dict) -> tuple[Path, int]:
    """A complete, fsync'ed temporary file beside ``path`` (removed again if writing fails)."""
    tmp = temp_beside(path)
    try:
        return tmp, ckpt.write_tensor_file(tmp, tensors, metadata)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _json_size(path: Path) -> int:
    return path.stat().st_size


# --------------------------------------------------------------------------- reading it back
def resume_config_dict(run_dir: str | Path) -> dict | None:
    """The saved ``TrainConfig.to_dict()`` of the last complete epoch, read from the header only
    (an older run's ``last_state.pt`` is read whole); None if the folder has no state."""
    run_dir = Path(run_dir)
    raw = _resume_block(run_dir / "last.safetensors")
    legacy = run_dir / LEGACY_STATE
    if raw is None and not legacy.is_file():
        return None
    try:
        config = json.loads(raw)["config"] if raw is not None else json.loads(load_train_state(legacy)["config"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"The resume record in {run_dir} is damaged: {exc}") from exc
    if not isinstance(config, dict):
        raise CheckpointError(f"{run_dir / 'last.safetensors'} carries a damaged resume record.")
    return config


def _resume_block(last: Path) -> str | None:
    return ckpt.safetensors_header(last)[1].get(RESUME_KEY) if last.is_file() else None


def save_train_state(path: str | Path, state: dict) -> Path:
    """Write an older version's resume state (``last_state.pt``: one atomic ``torch.save`` of
    tensors, numbers, strings and containers); tests and benchmarks make such runs with it."""

    def write(tmp: Path) -> None:
        torch.save(state, tmp)

    try:
        return atomic_write(path, write)
    except Exception as exc:
        raise CheckpointError(f"Could not write the training state {path}: {ckpt.write_reason(exc)}") from exc


def load_train_state(path: str | Path) -> dict:
    """Read an older version's resume state with ``weights_only=True`` (no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"No training state to resume from at {path}.")
    obj = ckpt.torch_load_safe(path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path.name} is not a GeoCAM training state.")
    return obj


def load_resume(run_dir: str | Path) -> dict | None:
    """The state of the last complete epoch, or None if the folder has none.

    Returns ``{"epoch", "model" (state dict), "optimizer" (state dict), "config", "history", "best"
    (JSON strings), "fingerprint"}``, read from ``last.safetensors`` + its moments file, or from an
    older run's ``last_state.pt``. Damaged or inconsistent files raise ``CheckpointError``.
    """
    run_dir = Path(run_dir)
    last = run_dir / "last.safetensors"
    raw = _resume_block(last)
    if raw is None:
        legacy = run_dir / LEGACY_STATE
        return load_train_state(legacy) if legacy.is_file() else None
    try:
        block = json.loads(raw)
        epoch = int(block["epoch"])
        name = str(block["optimizer_file"])
        token = str(block["optimizer_id"])
        groups = block["param_groups"]
        plain = block["optimizer_plain"]
        if not isinstance(groups, list) or not isinstance(plain, dict):
            raise ValueError("param groups or optimiser values are malformed")
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{last} carries a damaged resume record: {exc}") from exc
    if not _OPTIM_NAME.match(name):
        raise CheckpointError(f"{last} names an invalid optimiser file {name!r}.")
    optim_path = run_dir / name
    if not optim_path.is_file():
        raise CheckpointError(f"Cannot resume: the optimiser state {optim_path} that {last.name} names is missing "
                              "(was the run pruned?); train into a new --out folder.")
    from safetensors import safe_open

    try:
        with safe_open(str(optim_path), framework="pt") as fh:
            header = json.loads((fh.metadata() or {}).get(OPTIM_KEY, "{}"))
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"{optim_path} is not a readable optimiser state: {exc}") from exc
    if header.get("id") != token:
        raise CheckpointError(f"{optim_path.name} does not belong to {last.name} (ids differ); the run cannot resume.")
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        parts = key.split(".", 2)
        if len(parts) != 3 or parts[0] != "optim" or not parts[1].isdigit():
            raise CheckpointError(f"{optim_path.name} holds an unexpected tensor {key!r}.")
        state.setdefault(int(parts[1]), {})[parts[2]] = value
    for idx, values in plain.items():
        if not str(idx).isdigit() or not isinstance(values, dict):
            raise CheckpointError(f"{last.name} carries malformed optimiser values.")
        state.setdefault(int(idx), {}).update(values)
    return {"epoch": epoch, "model": ckpt.load_state_dict_file(last),
            "optimizer": {"state": state, "param_groups": groups},
            "config": json.dumps(block.get("config")), "history": json.dumps(block.get("history")),
            "best": json.dumps(block.get("best")), "fingerprint": block.get("fingerprint")}


def save_half_copy(source: Path, dest: Path) -> Path:
    """Write a float16 copy of checkpoint ``source`` as ``dest`` (the weight matrices and kernels
    halved; 1-D tensors - biases, batch norm's scales and running statistics, a few KB - kept in
    float32, where a running variance near zero would otherwise lose its digits; the metadata says
    ``dtype: float16`` and names its source); returns the ``.json``."""
    state = ckpt.load_state_dict_file(source.with_suffix(".safetensors"))
    half = {k: v.half() if v.is_floating_point() and v.dim() > 1 else v for k, v in state.items()}
    meta = {**ckpt.read_meta(source), "dtype": "float16", "copy_of": source.name,
            "note": "float16 copy for viewing and sharing; Grad-CAM maps match the float32 model's to about "
                    "0.001 (99 % of images within 0.01, a few up to a few hundredths)"}
    return ckpt.save_checkpoint(dest, half, meta)
