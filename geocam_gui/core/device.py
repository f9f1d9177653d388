"""Choosing the compute device from a user string (auto, cpu, cuda, cuda:N, mps), and the CUDA
twin: a switch that makes the CPU take the code paths written for CUDA, so tests run their logic.

Code that does something only on a GPU asks ``gpu_path(dev)`` instead of ``dev.type == "cuda"``.
Inside ``cuda_twin()`` the CPU answers True and takes those paths: bf16 autocast (CPU autocast,
also on a CPU without native bf16), the device-resident copy of the training data, the
non-blocking copies and the deferred NaN check of the CAM engine, the out-of-memory fallbacks (``free_memory`` reports the
host's free RAM). What stays untested without a GPU is only the lines that call the CUDA runtime
itself (``torch.cuda.*``, pinned memory); ``gpu_check`` runs those on a GPU machine.
``bf16_native(dev)`` says where training autocasts to bf16: the GPU path, and CPUs with native bf16.
"""

from __future__ import annotations

import contextlib
import functools
import os

import torch

from geocam_gui.core.errors import BadArgument


#: Environment switch for whole processes (``gpu_check --dry-run-cpu`` sets it for the torchrun and
#: GUI processes it starts): "1" turns the twin on at import.
TWIN_ENV = "GEOCAM_CUDA_TWIN"
_twin = {"on": os.environ.get(TWIN_ENV, "") == "1"}


@contextlib.contextmanager
def cuda_twin(enabled: bool = True):
    """Within this block the CPU takes the CUDA code paths (module doc). Process-wide: threads
    started inside the block (a trainer's) see it too."""
    before = _twin["on"]
    _twin["on"] = bool(enabled)
    try:
        yield
    finally:
        _twin["on"] = before


def gpu_path(dev: torch.device | str) -> bool:
    """True when ``dev`` takes the code written for CUDA: a CUDA device, or the CPU inside
    ``cuda_twin()``."""
    kind = torch.device(dev).type
    return kind == "cuda" or (kind == "cpu" and _twin["on"])


def bf16_native(dev: torch.device | str) -> bool:
    """True where bf16 autocast makes training faster: the GPU path, and CPUs whose instruction
    set computes in bf16 (AVX512-BF16 or AMX; elsewhere oneDNN emulates it, slower than float32).
    On the 2-core AVX512-BF16 machine of benchmarks/RESULTS.md, bf16 + channels_last halves a
    ResNet18 step at 128 px."""
    if gpu_path(dev):
        return True
    return torch.device(dev).type == "cpu" and _cpu_bf16()


@functools.lru_cache(maxsize=1)
def _cpu_bf16() -> bool:
    if os.environ.get("GEOCAM_CPU_BF16") in ("0", "1"):  # an override, for comparisons and tests
        return os.environ["GEOCAM_CPU_BF16"] == "1"
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return bool({"avx512_bf16", "amx_bf16"} & set(line.split()))
    except OSError:
        pass
    return False


def free_memory(dev: torch.device | str) -> int:
    """Bytes free on ``dev``: ``torch.cuda.mem_get_info`` on CUDA, the host's available RAM on
    the CPU (0 when unknown)."""
    dev = torch.device(dev)
    if dev.type == "cuda":
        return int(torch.cuda.mem_get_info(dev)[0])
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return 0


def release_cached_memory(dev: torch.device | str) -> None:
    """Give the caching allocator's free blocks back after an out-of-memory error (CUDA only)."""
    if torch.device(dev).type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()


def ddp_backend(device_spec: str | None, cuda_available: bool) -> str:
    """The torch.distributed backend of a torchrun process: NCCL when CUDA is there and the run
    was not asked to use the CPU, gloo otherwise."""
    spec = str(device_spec or "auto").strip().lower()
    return "nccl" if cuda_available and spec != "cpu" else "gloo"


def ddp_device(backend: str, local_rank: int) -> torch.device:
    """The device a torchrun rank trains on: its own GPU (``LOCAL_RANK``) under NCCL, else the CPU."""
    return torch.device("cuda", int(local_rank)) if backend == "nccl" else torch.device("cpu")


def available_devices() -> list[tuple[str, str]]:
    """(device string, human label) for every device this machine can use; 'auto' first."""
    out = [("auto", "Auto (best available)")]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            out.append((f"cuda:{i}", f"CUDA {i}: {torch.cuda.get_device_name(i)}"))
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        out.append(("mps", "Apple MPS"))
    out.append(("cpu", "CPU"))
    return out


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """Turn 'auto'/'cpu'/'cuda'/'cuda:N'/'mps' into a usable ``torch.device``."""
    if isinstance(spec, torch.device):
        return spec
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError as exc:
        raise BadArgument(f"Unknown device {spec!r}: use auto, cpu, cuda, cuda:N or mps.") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise BadArgument(f"Device {spec!r} asked for, but no CUDA GPU is available here.")
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise BadArgument(
                f"Device {spec!r} does not exist: this machine has {torch.cuda.device_count()} CUDA device(s)."
            )
        return torch.device("cuda", index)
    if dev.type == "mps" and not (
        getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    ):
        raise BadArgument("Device 'mps' asked for, but Apple MPS is not available here.")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise BadArgument(f"Unsupported device {spec!r}: use auto, cpu, cuda, cuda:N or mps.")
    return dev


def describe_device(dev: torch.device) -> str:
    if dev.type == "cuda":
        return f"{dev} ({torch.cuda.get_device_name(dev)})"
    return str(dev)
