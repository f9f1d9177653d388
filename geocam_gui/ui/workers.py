"""QThread workers that run core engines off the GUI thread and report through Qt signals.

Every thread GeoCAM starts is a :class:`ManagedThread`, registered so that tests (and the
window's close handler) can check that none outlives its owner.

Signal names follow superqt's workers: ``returned`` (the result), ``errored`` (a sentence for
the user) and ``finished``, which is always emitted last, whatever happened.

* :class:`TaskWorker` runs one callable (demo generation, indexing, export...) with progress
  and cancel, like superqt's ``thread_worker``.
* :class:`TrainingWorker` runs a queue of training configs in a spawned child process
  (``core.train.child``) and relays its messages as signals.
* :class:`LatestWorker` is a long-lived thread that computes only the newest request (glue's
  compute worker): quick selection changes never queue stale CAMs or thumbnails.

The worker objects themselves live in the GUI thread; only their ``run`` code executes in the
thread. Their signals are emitted from the thread, so Qt queues every connected slot (bound
methods and lambdas alike) into the GUI thread: no widget is ever touched from a worker.
"""

from __future__ import annotations

import logging
import threading
import traceback
import weakref
from typing import Any, Callable

from PySide6.QtCore import QObject, QThread, Signal

from geocam_gui.core.data.datasets import DatasetIndex
from geocam_gui.core.errors import Cancelled, GeoCamError

log = logging.getLogger(__name__)

_THREADS: "weakref.WeakSet[ManagedThread]" = weakref.WeakSet()


def running_threads() -> list["ManagedThread"]:
    """Threads started by GeoCAM that are still running."""
    out = []
    for t in list(_THREADS):
        try:
            if t.isRunning():
                out.append(t)
        except RuntimeError:  # C++ object already deleted
            pass
    return out


class ManagedThread(QThread):
    """A QThread that runs ``target()`` and registers itself so leaks can be detected."""

    def __init__(self, name: str, parent: QObject | None = None, target: Callable[[], None] | None = None):
        super().__init__(parent)
        self.setObjectName(name)
        self._target = target
        _THREADS.add(self)

    def run(self) -> None:  # executes in the new thread
        if self._target is not None:
            self._target()

    def __repr__(self) -> str:  # shows up in leak reports
        return f"<ManagedThread {self.objectName()} running={self.isRunning()}>"


def error_text(exc: BaseException) -> str:
    """A sentence for the user: the message of our own errors, the type and message otherwise."""
    if isinstance(exc, GeoCamError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class TaskWorker(QObject):
    """Runs ``fn(progress, cancelled)`` in its own thread.

    ``progress(done, total, text="")`` and ``cancelled() -> bool`` are passed to ``fn``.
    Exactly one of ``returned(result)``, ``errored(message)`` or ``cancelled()`` is emitted,
    then ``finished()``.
    """

    progress = Signal(int, int, str)
    returned = Signal(object)
    errored = Signal(str)
    cancelled = Signal()
    finished = Signal()

    def __init__(self, name: str, fn: Callable[..., Any], parent: QObject | None = None):
        super().__init__()
        self._fn = fn
        self._cancel = threading.Event()
        self.thread = ManagedThread(name, parent, target=self._run)

    def start(self) -> None:
        self.thread.start()

    def cancel(self) -> None:
        self._cancel.set()

    def is_cancelled(self) -> bool:
        return self._cancel.is_set()

    def wait(self, ms: int = 30000) -> bool:
        return self.thread.wait(ms)

    def _run(self) -> None:  # worker thread
        def progress(done: int, total: int, text: str = "") -> None:
            self.progress.emit(int(done), int(total), str(text))

        try:
            result = self._fn(progress, self._cancel.is_set)
        except Cancelled:
            self.cancelled.emit()
        except Exception as exc:  # noqa: BLE001 - reported to the GUI, never a silent death
            if not isinstance(exc, GeoCamError):
                log.error("Task %s failed:\n%s", self.thread.objectName(), traceback.format_exc())
            self.errored.emit(error_text(exc))
        else:
            if self._cancel.is_set():
                self.cancelled.emit()
            else:
                self.returned.emit(result)
        finally:
            self.finished.emit()


class TrainingWorker(QObject):
    """Trains a queue of models one after the other with the core engine, in a child process.

    The child (``core.train.child.run_queue``, started with "spawn") has its own GIL, so the GUI
    thread never waits for the training's Python work. This thread only relays the child's
    messages (the protocol in ``core.train.child``) as signals: ``event(model, TrainEvent)`` for
    every engine event, ``modelStarted(model, position, total)``, ``modelReturned(model,
    TrainResult)``, ``errored(model, message)``, ``stopped(model, epoch, forced)`` when the run
    was cancelled and, always last, ``finished(all_finished)``.

    Cancel: the child stops between batches and says so at once (a ``Log`` with ``cancelling``,
    or ``Cancelled``/``RunCancelled``/``Done``). A batch can take a minute (VGG11 on a loaded
    CPU), so when no such word comes within ``GRACE_S`` the process is stopped (terminate, then
    kill): the saver writes every file whole and renames it, so the last complete epoch stays
    resumable. ``stopped`` then says ``forced`` and the epoch it interrupted.
    """

    GRACE_S = 1.5

    event = Signal(str, object)
    modelStarted = Signal(str, int, int)
    modelReturned = Signal(str, object)
    errored = Signal(str, str)
    stopped = Signal(str, object, bool)  # model, 1-based epoch interrupted (or None), forced
    finished = Signal(bool)  # always last; True when every queued model finished

    def __init__(self, configs: list, index: DatasetIndex, out_dir, parent: QObject | None = None):
        super().__init__()
        import multiprocessing

        self._configs = list(configs)
        self._index = index
        self._out_dir = out_dir
        self._ctx = multiprocessing.get_context("spawn")  # never fork a process that runs Qt
        self._cancel = self._ctx.Event()
        self._pause = self._ctx.Event()
        self._cancel_at: float | None = None
        self.pid: int | None = None  # the child's, once started
        self.thread = ManagedThread("training", parent, target=self._run)

    def start(self) -> None:
        self.thread.start()

    def cancel(self) -> None:
        import time

        if self._cancel_at is None:
            self._cancel_at = time.monotonic()
        self._cancel.set()

    def set_paused(self, paused: bool) -> None:
        (self._pause.set if paused else self._pause.clear)()

    def wait(self, ms: int = 30000) -> bool:
        return self.thread.wait(ms)

    def _run(self) -> None:  # worker thread
        import queue
        import time

        from geocam_gui.core.train import child
        from geocam_gui.core.train import events as ev

        events = self._ctx.Queue()
        proc = self._ctx.Process(target=child.run_queue, name="geocam-training", daemon=True,
                                 args=(self._configs, self._index, str(self._out_dir), events, self._cancel, self._pause))
        all_ok = True
        acknowledged = forced = False
        model = self._configs[0].model if self._configs else "?"
        epoch: int | None = None  # the 1-based epoch in progress of ``model``
        try:
            proc.start()
            self.pid = proc.pid
            while True:
                if (self._cancel_at is not None and not acknowledged
                        and time.monotonic() - self._cancel_at > self.GRACE_S):
                    forced = True  # the step in progress does not end soon: stop the process
                    break
                try:
                    msg = events.get(timeout=0.1)
                except queue.Empty:
                    if not proc.is_alive():
                        if self._cancel_at is not None:
                            break  # it ended on the cancel (e.g. before it could say so)
                        self.errored.emit(model, f"The training process ended unexpectedly (exit code {proc.exitcode}).")
                        all_ok = False
                        break
                    continue
                if isinstance(msg, child.ModelEvent):
                    e = msg.event
                    if isinstance(e, ev.Start):
                        epoch = e.start_epoch + 1
                    elif isinstance(e, ev.Batch):
                        epoch = e.epoch
                    elif isinstance(e, ev.Epoch):
                        epoch = e.epoch + 1 if e.epoch < e.epochs else e.epoch
                    elif isinstance(e, ev.Cancelled) or (isinstance(e, ev.Log) and e.extra.get("cancelling")):
                        acknowledged = True
                    self.event.emit(msg.model, e)
                elif isinstance(msg, child.ModelStarted):
                    model, epoch = msg.model, None
                    self.modelStarted.emit(msg.model, msg.position, msg.total)
                elif isinstance(msg, child.ModelFinished):
                    self.modelReturned.emit(msg.model, msg.result)
                elif isinstance(msg, child.ModelFailed):
                    log.error("Training %s failed: %s", msg.model, msg.message)
                    self.errored.emit(msg.model, msg.message)
                    all_ok = False
                elif isinstance(msg, child.RunCancelled):
                    acknowledged = True
                    all_ok = False
                elif isinstance(msg, child.Done):
                    acknowledged = True
                    break
        except Exception as exc:  # noqa: BLE001 - e.g. the child could not be started
            log.error("Training process failed:\n%s", traceback.format_exc())
            self.errored.emit(model, error_text(exc))
            all_ok = False
        finally:
            if forced:
                _stop_process(proc)
            else:
                proc.join(30)
                if proc.is_alive():  # it did not stop within a batch: stop it the hard way
                    _stop_process(proc)
            events.close()
            events.cancel_join_thread()
        if self._cancel_at is not None:
            self.stopped.emit(model, epoch, forced)
        self.finished.emit(all_ok and not self._cancel.is_set())


def _stop_process(proc) -> None:
    """Terminate ``proc``, kill it if it is still there a second later, and reap it."""
    proc.terminate()
    proc.join(1.0)
    if proc.is_alive():
        proc.kill()
        proc.join(5.0)


class LatestWorker(QObject):
    """A long-lived thread that runs ``fn(request)`` for the newest request only.

    ``submit(key, request)`` replaces any request still waiting; when the running
    computation ends, its result is emitted as ``returned(key, result)`` (the receiver
    compares ``key`` with what it currently shows) or ``errored(key, message)``, then
    ``finished(key)``. A long ``fn`` may poll ``pending()`` and stop early when a newer
    request waits.
    """

    returned = Signal(object, object)
    errored = Signal(object, str)
    finished = Signal(object)

    def __init__(self, name: str, fn: Callable[[Any], Any], parent: QObject | None = None):
        super().__init__(parent)
        self._fn = fn
        self._pending: tuple[Any, Any] | None = None
        self._cond = threading.Condition()
        self._stopping = False
        self.thread = ManagedThread(name, parent, target=self._loop)
        self.thread.start()

    def submit(self, key: Any, request: Any) -> None:
        with self._cond:
            self._pending = (key, request)
            self._cond.notify()

    def pending(self) -> bool:
        with self._cond:
            return self._pending is not None

    def stop(self, ms: int = 30000) -> bool:
        """Drop pending work, let the running request finish, end the thread."""
        with self._cond:
            self._pending = None
            self._stopping = True
            self._cond.notify()
        return self.thread.wait(ms)

    def _loop(self) -> None:  # worker thread
        while True:
            with self._cond:
                while self._pending is None and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                (key, request), self._pending = self._pending, None
            try:
                result = self._fn(request)
            except Exception as exc:  # noqa: BLE001 - the pane shows the reason
                if not isinstance(exc, GeoCamError):
                    log.error("%s failed:\n%s", self.thread.objectName(), traceback.format_exc())
                self.errored.emit(key, error_text(exc))
            else:
                self.returned.emit(key, result)
            finally:
                self.finished.emit(key)
