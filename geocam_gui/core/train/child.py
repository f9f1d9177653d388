"""Training in a child process, reporting through a queue (used by the GUI).

A training thread in the GUI's own process shares the GIL with the GUI thread; model building,
cache decoding and checkpoint serialisation hold it for 100-300 ms at a time, which freezes
the window. In a child process the GUI keeps its interpreter to itself.

The protocol: ``run_queue`` puts these messages (frozen dataclasses, all picklable) on
``events``, in this order per model: ``ModelStarted``, then ``ModelEvent`` for every engine event
(``core.train.events``, passed as they are), then ``ModelFinished`` (with the ``TrainResult``) or
``ModelFailed`` (one sentence). A cancel ends the queue with ``RunCancelled``. ``Done`` is always
the last message, also after an error; the parent stops reading there. ``tests/test_child_protocol.py``
holds this contract.

If the parent dies (SIGKILL, crash) the child notices within a fraction of a second
(:func:`watch_parent`), stops after the current batch like a cancel, and exits: the last
complete epoch stays resumable and no orphan goes on writing checkpoints.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from geocam_gui.core.background import watch_parent
from geocam_gui.core.errors import GeoCamError
from geocam_gui.core.data.datasets import DatasetIndex
from geocam_gui.core.train.events import TrainEvent, TrainResult


@dataclass(frozen=True)
class ModelStarted:
    """Model ``position`` (0-based) of ``total`` starts training."""

    model: str
    position: int
    total: int


@dataclass(frozen=True)
class ModelEvent:
    """An engine event of ``model``."""

    model: str
    event: TrainEvent


@dataclass(frozen=True)
class ModelFinished:
    model: str
    result: TrainResult


@dataclass(frozen=True)
class ModelFailed:
    """``model`` could not be trained; the queue goes on with the next one."""

    model: str
    message: str


@dataclass(frozen=True)
class RunCancelled:
    """The parent cancelled: no further model is trained."""


@dataclass(frozen=True)
class Done:
    """Always the last message."""


MESSAGE_TYPES = (ModelStarted, ModelEvent, ModelFinished, ModelFailed, RunCancelled, Done)


def _on_gpu(device: str) -> bool:
    from geocam_gui.core.device import gpu_path, resolve_device

    try:
        return gpu_path(resolve_device(device))
    except Exception:  # noqa: BLE001 - an unusable device: the trainer says so in its own message
        return False


def run_queue(configs: list, index: DatasetIndex, out_dir, events, cancel, pause, *,
              govern_threads: bool = True) -> None:
    """Train ``configs`` one after the other (child-process entry point).

    ``cancel`` and ``pause`` are ``multiprocessing.Event`` objects set by the parent; they act
    within one batch, as ``Trainer.cancel()`` / ``pause()`` do. ``govern_threads``: train on the
    cores other programs leave free (``core.cpu_share``; False only for its benchmark).
    """
    from geocam_gui.core.background import run_in_background
    from geocam_gui.core.cpu_share import ThreadGovernor
    from geocam_gui.core.train.engine import Trainer

    # Below the GUI: the window stays responsive while training fills the CPU. A process that
    # feeds a GPU is only reniced, so that other programs cannot starve it.
    run_in_background(5, policy="nice" if any(_on_gpu(c.device) for c in configs) else "idle")
    orphaned = threading.Event()

    def parent_died() -> None:
        orphaned.set()
        events.cancel_join_thread()  # nobody reads the queue any more: exit without flushing it

    finished = threading.Event()
    watch_parent(parent_died, finished)
    # At SCHED_IDLE a thread on a core that another program keeps busy starves, and the others
    # wait for it: train on the free cores only (used on CPU runs without determinism).
    governor = ThreadGovernor() if govern_threads and ThreadGovernor.available() else None
    try:
        for i, config in enumerate(configs):
            if orphaned.is_set():
                break
            if cancel.is_set():
                events.put(RunCancelled())
                break
            name = config.model

            def callback(event, _name=name) -> None:
                events.put(ModelEvent(_name, event))

            try:
                trainer = Trainer(config, index, out_dir, callback=callback)
            except GeoCamError as exc:
                events.put(ModelFailed(name, str(exc)))
                continue
            trainer.thread_governor = governor
            stop = threading.Event()
            watcher = threading.Thread(target=_relay_controls, args=(trainer, cancel, pause, stop, orphaned),
                                       daemon=True)
            watcher.start()
            events.put(ModelStarted(name, i, len(configs)))
            try:
                result = trainer.run()
            except GeoCamError as exc:
                events.put(ModelFailed(name, str(exc)))
                continue
            except Exception as exc:  # noqa: BLE001 - reported to the GUI, which logs it
                events.put(ModelFailed(name, f"{type(exc).__name__}: {exc}"))
                continue
            finally:
                stop.set()
                watcher.join()
            if result.status == "cancelled" or cancel.is_set():
                events.put(RunCancelled())
                break
            events.put(ModelFinished(name, result))
    finally:
        finished.set()
        if not orphaned.is_set():
            events.put(Done())
    if orphaned.is_set():  # the checkpoints are on disk (fsync'ed); skip a slow teardown nobody waits for
        import logging

        logging.shutdown()
        os._exit(0)


def _relay_controls(trainer, cancel, pause, stop: threading.Event, orphaned: threading.Event) -> None:
    """Pass the parent's cancel/pause flags on to the trainer (polled every 50 ms), and announce
    the checkpoints its background saver has finished (``Trainer.flush_saved``)."""
    paused = False
    flush = getattr(trainer, "flush_saved", None)
    while not stop.wait(0.05):
        if flush is not None:
            flush()
        if cancel.is_set() or orphaned.is_set():
            trainer.cancel()  # also ends a pause: the run stops after the current batch
            return
        if pause.is_set() != paused:
            paused = pause.is_set()
            (trainer.pause if paused else trainer.resume)()
