"""What a training run reports while it runs (typed events) and what it returns (``TrainResult``).

One small frozen dataclass per kind. ``Trainer.emit`` hands them to the callback; the CLI printer
(``commands/train.py``), the child-process relay (``core/train/child.py``) and the training panel
(``ui/training_panel.py``) read their fields by name. Every event is picklable (plain fields:
numbers, strings, lists, dicts), so it crosses the process boundary as it is. ``event.kind`` is the
kind's name and ``event.data`` a plain dict of the fields (for logs and JSON).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar


@dataclass(frozen=True)
class TrainEvent:
    """Base of every training event."""

    kind: ClassVar[str] = ""

    @property
    def data(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Start(TrainEvent):
    """A model's training begins (data decoded, model built). ``batches``: per epoch and process."""

    kind: ClassVar[str] = "start"
    model: str
    config: dict
    device: str
    classes: list
    n_train: int
    n_val: int
    n_test: int
    epochs: int
    start_epoch: int  # > 0 when resuming after that epoch
    world: int
    batches: int
    run_dir: str


@dataclass(frozen=True)
class Batch(TrainEvent):
    """Progress inside an epoch (at most every ``loop._EVENT_INTERVAL_S`` and at its last batch);
    ``loss``/``acc`` are running means over the epoch so far."""

    kind: ClassVar[str] = "batch"
    epoch: int
    epochs: int
    batch: int
    batches: int
    loss: float
    acc: float
    images_per_s: float
    eta_s: float
    lr: float


@dataclass(frozen=True)
class Epoch(TrainEvent):
    """An epoch ended and was validated (the same record is appended to ``metrics.jsonl``)."""

    kind: ClassVar[str] = "epoch"
    model: str
    epoch: int
    epochs: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    images_per_s: float
    seconds: float
    lr: float
    batch_size: int
    improved: bool
    best_epoch: int | None
    best_val_acc: float
    eta_s: float


@dataclass(frozen=True)
class Checkpoint(TrainEvent):
    """A checkpoint was written: ``which`` is "best", "last" or "best_float16" (``--save-dtype
    float16``, after the run); ``test`` when the best one got its test metrics at the end."""

    kind: ClassVar[str] = "checkpoint"
    which: str
    path: str
    epoch: int | None
    test: bool = False


@dataclass(frozen=True)
class Finished(TrainEvent):
    """The model's run ended normally (``test`` is None without a test split)."""

    kind: ClassVar[str] = "finished"
    model: str
    best_checkpoint: str | None
    best_epoch: int | None
    best_val_acc: float
    test: dict | None
    seconds: float


@dataclass(frozen=True)
class Failed(TrainEvent):
    """The run stopped on an error; ``Trainer.run`` raises right after."""

    kind: ClassVar[str] = "failed"
    message: str


@dataclass(frozen=True)
class Cancelled(TrainEvent):
    """The run was cancelled; ``epoch`` is the one interrupted (None before the first)."""

    kind: ClassVar[str] = "cancelled"
    message: str
    epoch: int | None = None


@dataclass(frozen=True)
class Log(TrainEvent):
    """A line for the log; ``extra`` holds details (``paused``, ``split``/``done``/``total``,
    ``batch_size``, ``epoch`` ...). ``data`` flattens them beside ``message``."""

    kind: ClassVar[str] = "log"
    message: str
    extra: dict = field(default_factory=dict)

    @property
    def data(self) -> dict:
        return {**self.extra, "message": self.message}


#: Every event class, in the order a run emits them at most.
EVENT_TYPES = (Start, Batch, Epoch, Checkpoint, Finished, Failed, Cancelled, Log)
EVENT_KINDS = tuple(t.kind for t in EVENT_TYPES)


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
