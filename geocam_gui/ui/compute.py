"""The window's end of the compute process (``core.explain.service``): replies become a signal.

No thread: a ``QSocketNotifier`` on the pipe wakes the GUI thread when a reply is waiting, and
reading it costs only the unpickling of a few numpy arrays. When the process dies, the views get
``Reply(status="crashed")`` with a sentence, and the next request starts a fresh process.

One bridge per device serves every view of the application (``shared_bridge``); it is started on
the first request and stopped when the application quits (``shutdown_all``; the process also
exits by itself when this one dies). Its process also runs the analysis room's kinds (``JOBS``:
the Analysis tab's pass, the Units tab's scans, unit maps and layer lists), which ``LaneJob``
drives like a ``TaskWorker``: progress, Cancel, one result or a sentence.
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import QObject, QSocketNotifier, Signal

from geocam_gui.core.explain.service import ComputeService, Reply

log = logging.getLogger(__name__)

#: Modules whose job kinds the window's compute process adds (see ``server.serve``).
JOBS = ("geocam_gui.core.analysis.jobs",)


class ComputeBridge(QObject):
    """Owns the compute process; ``replied(Reply)`` carries each lane's latest answer."""

    replied = Signal(object)

    def __init__(self, device: str = "cpu", parent: QObject | None = None):
        super().__init__(parent)
        self.service = ComputeService(device, jobs=JOBS)
        self._notifier: QSocketNotifier | None = None

    def _ensure(self) -> None:
        if self.service.alive and self._notifier is not None:
            return
        self._drop_notifier()
        if not self.service.alive:
            self.service.start()
        self._notifier = QSocketNotifier(self.service.fileno(), QSocketNotifier.Type.Read, self)
        self._notifier.activated.connect(self._read)

    def submit(self, lane: str, kind: str, **kwargs: Any) -> int:
        """Send a request (it replaces the lane's previous one); returns its id."""
        self._ensure()
        return self.service.submit(lane, kind, **kwargs)

    def cancel(self, lane: str) -> None:
        if self.service.alive:
            self.service.cancel(lane)

    @property
    def pid(self) -> int | None:
        return self.service.pid if self.service.alive else None

    def _read(self, *_args) -> None:
        replies = self.service.poll()
        if not self.service.alive:
            self._drop_notifier()
        for reply in replies:
            if reply.status == "crashed":
                log.warning("%s", reply.payload)
            self.replied.emit(reply)

    def _drop_notifier(self) -> None:
        if self._notifier is not None:
            self._notifier.setEnabled(False)
            self._notifier.deleteLater()
            self._notifier = None

    def shutdown(self) -> None:
        """Stop the process (within a few seconds at most)."""
        self._drop_notifier()
        self.service.close(timeout=2.0)


class LaneRequests(QObject):
    """Requests on named lanes of a bridge, the newest per lane winning: ``_pending`` maps a lane
    to (request id, context); a reply to the latest request of its lane goes to
    ``_finished(context, reply)``, older ones and progress are dropped. A request replaced by
    another listener's on the same lane (``superseded``) is forgotten through ``_replaced(context)``,
    so ``busy()`` does not stay true for an answer that will never come."""

    def __init__(self, bridge: ComputeBridge, parent: QObject | None = None):
        super().__init__(parent)
        self.bridge = bridge
        self._pending: dict[str, tuple[int, object]] = {}
        bridge.replied.connect(self._on_reply)

    def _submit(self, lane: str, kind: str, context, **params) -> None:
        self._pending[lane] = (self.bridge.submit(lane, kind, **params), context)

    def busy(self) -> bool:
        return bool(self._pending)

    def cancel_all(self) -> None:
        for lane in list(self._pending):
            self.bridge.cancel(lane)
        self._pending.clear()

    def _on_reply(self, reply: Reply) -> None:
        pending = self._pending.get(reply.lane)
        if pending is None or pending[0] != reply.id or reply.status == "progress":
            return
        del self._pending[reply.lane]
        if reply.status == "superseded":
            self._replaced(pending[1])
        else:
            self._finished(pending[1], reply)

    def _finished(self, context, reply: Reply) -> None:
        raise NotImplementedError

    def _replaced(self, context) -> None:
        """Another listener's newer request on the lane took this one's place."""


class Predictions(LaneRequests):
    """The browser's predictions, one lane per model (``predict-<model>``): a newer request for a
    model replaces one still running. ``ready(model, index, probs)`` names the index the
    probabilities belong to, so a view can drop those of a dataset it no longer shows."""

    ready = Signal(str, object, object)
    failed = Signal(str, str)
    busyChanged = Signal()

    def request(self, model: str, checkpoint: str, index) -> None:
        self._submit(f"predict-{model}", "predict", (model, index), checkpoint=str(checkpoint),
                     samples=list(index.samples))
        self.busyChanged.emit()

    def cancel_all(self) -> None:
        super().cancel_all()
        self.busyChanged.emit()

    def _finished(self, context, reply: Reply) -> None:
        model, index = context
        if reply.status == "result":
            self.ready.emit(model, index, reply.payload)
        else:
            self.failed.emit(model, str(reply.payload))
        self.busyChanged.emit()

    def _replaced(self, context) -> None:
        self.busyChanged.emit()


class LaneJob(LaneRequests):
    """One job at a time on one lane, with a ``TaskWorker``'s signals: ``progress(done, total,
    text)``, then exactly one of ``returned(result)``, ``errored(sentence)`` (a failure, or the
    compute process's crash) or ``cancelled()``, then ``finished()``; ``busy()`` while a job runs.
    A new ``start`` replaces the running job (whose reply is dropped); ``cancel`` is answered at
    once, while the compute process stops the job at its next check. A job replaced by another
    listener's request on the same lane ends as ``cancelled()``."""

    progress = Signal(int, int, str)
    returned = Signal(object)
    errored = Signal(str)
    cancelled = Signal()
    finished = Signal()

    def __init__(self, bridge: ComputeBridge, lane: str, parent: QObject | None = None):
        super().__init__(bridge, parent)
        self.lane = lane

    def start(self, kind: str, **params) -> None:
        self._submit(self.lane, kind, None, **params)

    def cancel(self) -> None:
        if self.busy():
            self.cancel_all()
            self.cancelled.emit()
            self.finished.emit()

    def _on_reply(self, reply: Reply) -> None:
        pending = self._pending.get(reply.lane)
        if reply.status == "progress" and pending is not None and pending[0] == reply.id:
            done, total, *text = reply.payload
            self.progress.emit(int(done), int(total), str(text[0]) if text else "")
            return
        super()._on_reply(reply)

    def _finished(self, _context, reply: Reply) -> None:
        if reply.status == "result":
            self.returned.emit(reply.payload)
        else:
            self.errored.emit(str(reply.payload))
        self.finished.emit()

    def _replaced(self, _context) -> None:
        self.cancelled.emit()
        self.finished.emit()


_SHARED: dict[str, ComputeBridge] = {}


def shared_bridge(device: str = "cpu") -> ComputeBridge:
    """The application's bridge for ``device`` (created on first use, stopped at quit)."""
    bridge = _SHARED.get(device)
    if bridge is None:
        from PySide6.QtCore import QCoreApplication

        app = QCoreApplication.instance()
        bridge = _SHARED[device] = ComputeBridge(device, parent=app)
        if app is not None:
            app.aboutToQuit.connect(shutdown_all)
        import atexit

        atexit.register(shutdown_all)  # also for scripts that never quit the application
    return bridge


def shutdown_all() -> None:
    """Stop every compute process of this application (at quit; idempotent)."""
    for bridge in list(_SHARED.values()):
        bridge.shutdown()


__all__ = ["ComputeBridge", "LaneJob", "Predictions", "Reply", "shared_bridge", "shutdown_all"]
