"""Choosing the compute device from a user string (auto, cpu, cuda, cuda:N, mps)."""

from __future__ import annotations

import torch

from geocam_gui.core.errors import BadArgument


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
