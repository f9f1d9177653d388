"""What a training run reports while it runs (``TrainEvent``) and what it returns (``TrainResult``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

EVENT_KINDS = ("start", "batch", "epoch", "checkpoint", "finished", "failed", "cancelled", "log")


@dataclass
class TrainEvent:
    """One thing that happened; ``kind`` is one of ``EVENT_KINDS``."""

    kind: str
    data: dict = field(default_factory=dict)


@dataclass
class TrainResult:
    """The outcome of ``Trainer.run``: ``status`` is "finished" or "cancelled"."""

    status: str
    model: str
    run_dir: Path
    best_checkpoint: Path | None
    last_checkpoint: Path | None
    best_epoch: int | None
    epochs_done: int
    history: list[dict]
    test: dict | None
    seconds: float
