"""Long work for the window: ``TaskRunner`` runs ``TaskWorker``s with an optional progress dialog
and knows when none is left; ``default_screenshot_timer`` grabs the window once it is idle."""

from __future__ import annotations

import logging
import time
from typing import Callable

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QProgressDialog, QWidget

from geocam_gui.ui.workers import TaskWorker

log = logging.getLogger(__name__)


class TaskRunner(QObject):
    """The window's running tasks. ``idleChanged`` after each task's end."""

    idleChanged = Signal()

    def __init__(self, window: QWidget, on_error: Callable[[str], None], on_message: Callable[[str], None]):
        super().__init__(window)
        self._window = window
        self._on_error = on_error
        self._on_message = on_message
        self.tasks: list[TaskWorker] = []
        self._keyed: dict[str, TaskWorker] = {}

    def run(self, name: str, fn, on_done, *, progress_text: str | None = None, on_fail=None,
            replaces: str | None = None) -> TaskWorker:
        """Run ``fn(progress, cancelled)`` in a worker; a progress dialog shows when it is slow.
        ``replaces``: a key; a task still running under the same key is cancelled."""
        task = TaskWorker(name, fn, self._window)
        if replaces is not None:
            old = self._keyed.pop(replaces, None)
            if old is not None:
                old.cancel()
            self._keyed[replaces] = task
        dialog = None
        if progress_text:
            # Not modal: a modal QProgressDialog runs the event loop inside setValue(), which
            # would deliver the task's end (and delete the dialog) in the middle of an update.
            dialog = QProgressDialog(progress_text, "Cancel", 0, 0, self._window)
            dialog.setWindowTitle("GeoCAM")
            dialog.setWindowModality(Qt.WindowModality.NonModal)
            dialog.setMinimumDuration(400)
            dialog.canceled.connect(task.cancel)

            def show_progress(done: int, total: int, _text: str) -> None:
                if task in self.tasks:
                    dialog.setMaximum(max(total, 1))
                    dialog.setValue(min(done, max(total, 1)))

            task.progress.connect(show_progress)
        task.returned.connect(on_done)
        task.errored.connect(on_fail or self._on_error)
        task.cancelled.connect(lambda: self._on_message(f"{progress_text or name}: cancelled."))

        def cleanup():
            if task in self.tasks:
                self.tasks.remove(task)
            if replaces is not None and self._keyed.get(replaces) is task:
                del self._keyed[replaces]
            if dialog is not None:
                task.progress.disconnect(show_progress)
                dialog.reset()
                dialog.deleteLater()
            task.thread.wait(5000)
            self.idleChanged.emit()

        task.finished.connect(cleanup)
        self.tasks.append(task)
        task.start()
        return task

    def busy(self) -> bool:
        return bool(self.tasks)

    def cancel_and_wait(self, ms: int = 60000) -> None:
        """Cancel every task and wait for each thread (window closing)."""
        for task in list(self.tasks):
            task.cancel()
        for task in list(self.tasks):
            task.wait(ms)


def default_screenshot_timer(window, path: str, timeout_s: float, on_done) -> QTimer:
    """Poll until ``window.is_idle()`` three times in a row (or the timeout), then grab it to ``path``."""
    start = time.monotonic()
    state = {"idle": 0}
    timer = QTimer(window)

    def tick():
        state["idle"] = state["idle"] + 1 if window.is_idle() else 0
        if state["idle"] >= 3 or time.monotonic() - start > timeout_s:
            timer.stop()
            if state["idle"] < 3:
                log.warning("Screenshot taken before start-up work finished (timeout %.0f s).", timeout_s)
            on_done(window.grab().save(path))

    timer.timeout.connect(tick)
    timer.start(300)
    return timer
