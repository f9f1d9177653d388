"""The headless training engine behind ``geocam train`` and the GUI's training panel.

``Trainer(config, index, out_dir, callback).run()`` trains one model with cross-entropy on the
index's ``train`` split, validates every epoch on ``val``, keeps the best-by-validation
checkpoint and finally reports test accuracy, per-class precision/recall and the confusion
matrix of the best model. It is plain Python: the GUI runs it in a spawned child process
(``core.train.child``) whose messages a QThread relays as signals; the CLI calls ``run()``
directly. Progress goes to ``callback`` as typed events (``core.train.events``). ``cancel()``,
``pause()`` and ``resume()`` may be called from any thread and act before the next batch; the
loop asks ``is_cancelled()`` and ``wait_if_paused()``.

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

import threading
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from geocam_gui.core import checkpoints as ckpt
from geocam_gui.core.data.datasets import DatasetIndex
from geocam_gui.core.device import resolve_device
from geocam_gui.core.errors import BadData, Cancelled, CheckpointError, GeoCamError
from geocam_gui.core.train.loader import BatchFeeder
from geocam_gui.core.train.metrics import summarize
from geocam_gui.core.train.config import TrainConfig
from geocam_gui.core.train import events as ev
from geocam_gui.core.train.events import TrainEvent, TrainResult


class Trainer:
    """Trains ``config.model`` on ``index`` into ``out_dir / config.model`` (see module doc)."""

    def __init__(self, config: TrainConfig, index: DatasetIndex, out_dir: str | Path,
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
        self._loop = None
        #: A ``core.cpu_share.ThreadGovernor`` polled before every batch of a CPU run that does not
        #: ask for determinism (the GUI's training child sets one); its thread count is restored at the end.
        self.thread_governor = None

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

    def flush_saved(self) -> None:
        """Emit the checkpoint events of the epoch saves finished in the background so far (the
        training child calls it from its control thread, so a checkpoint is announced when it is
        on disk, not only after the next batch, which may take a minute)."""
        loop = self._loop
        if loop is not None:
            loop._flush()

    @property
    def paused(self) -> bool:
        return not self._unpaused.is_set()

    def is_cancelled(self) -> bool:
        """True once ``cancel()`` was called (the loop checks it before every batch)."""
        return self._cancel.is_set()

    def wait_if_paused(self) -> float:
        """Block while paused (a ``cancel()`` also releases it); returns the seconds held.
        Logs "Paused." and, unless cancelled, "Resumed."."""
        if self._unpaused.is_set():
            return 0.0
        t0 = time.perf_counter()
        self.log("Paused.", paused=True)
        while not self._unpaused.wait(0.1):
            pass
        if not self._cancel.is_set():
            self.log("Resumed.", paused=False)
        return time.perf_counter() - t0

    # ---------------------------------------------------------------- events
    def emit(self, event: TrainEvent) -> None:
        """Give ``event`` to the callback (rank 0 only under DDP)."""
        if self.callback is not None and self.rank == 0:
            self.callback(event)

    def log(self, message: str, /, **extra: Any) -> None:
        self.emit(ev.Log(message, extra))

    # ---------------------------------------------------------------- main entry
    def run(self) -> TrainResult:
        """Train; returns the result (status "finished" or "cancelled").

        A failure emits a "failed" event and raises ``GeoCamError`` (NaN loss, out of memory at
        batch size 1, unreadable data, a resume that does not match ...).
        """
        from geocam_gui.core.train import loop as tl

        started = time.perf_counter()
        own_group = tl.ddp_setup(self.config.device)
        self.rank, self.world = tl.ddp_rank_world()
        restore_det = torch.are_deterministic_algorithms_enabled()
        restore_bench = torch.backends.cudnn.benchmark
        try:
            self._loop = tl.TrainingLoop(self)
            result = self._loop.run(started)
        except Cancelled as exc:
            self.emit(ev.Cancelled(str(exc) or "Training was cancelled."))
            result = TrainResult("cancelled", self.config.model, self.run_dir, None, None, None, 0, [], None,
                                 time.perf_counter() - started)
        except GeoCamError as exc:
            self.emit(ev.Failed(str(exc)))
            raise
        except Exception as exc:  # noqa: BLE001 - reported, then re-raised with context
            self.emit(ev.Failed(f"Training failed: {exc}"))
            raise GeoCamError(f"Training failed unexpectedly: {type(exc).__name__}: {exc}") from exc
        finally:
            torch.use_deterministic_algorithms(restore_det)
            torch.backends.cudnn.benchmark = restore_bench
            if self.thread_governor is not None:
                self.thread_governor.restore()
            if own_group:
                tl.ddp_teardown()
        return result


def evaluate(checkpoint_or_model, index: DatasetIndex, split: str = "test", *, device: str = "auto",
             batch_size: int = 64, image_size: int | None = None, progress=None, cancel=None) -> dict:
    """Accuracy, per-class precision/recall, confusion matrix and ``n`` of a model on a split,
    computed in float32 on every device (as training's test pass and the browser's predictions).

    ``checkpoint_or_model``: a checkpoint path, a ``LoadedCheckpoint``, or an ``nn.Module``
    (then ``image_size`` should be given; the index's classes are assumed to be its outputs).
    """
    from geocam_gui.core.train.loop import decode_split, eval_confusion

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
        raise BadData(f"The data has no {split!r} split to evaluate on.")
    data = decode_split(samples, size, list(index.classes), progress=progress, cancel=cancel)
    model = model.to(dev).eval()
    feeder = BatchFeeder(data.images, data.labels, dev)
    confusion, loss_sum = eval_confusion(model, feeder, len(index.classes), batch_size, data.positions)
    out = summarize(confusion, list(index.classes), loss_sum=loss_sum)
    out.update(split=split, model=name, image_size=size, skipped=[list(s) for s in data.skipped])
    return out
