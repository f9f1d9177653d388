"""The training panel: choose models and settings, train them in a child process, watch live curves.

A ``TrainingWorker`` thread relays the child's typed events (``core.train.events``) as signals;
curves are decimated by pyqtgraph (``setDownsampling``/``setClipToView``) so long runs stay smooth.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from geocam_gui.core.data.datasets import DatasetIndex
from geocam_gui.core.models import MODEL_LABELS
from geocam_gui.core.train.cost import RunClock, RunCost
from geocam_gui.ui import dialogs
from geocam_gui.ui.training_run import RunTracker
from geocam_gui.ui.training_settings import TrainingSettings
from geocam_gui.ui.training_views import Curves, ResultsTable, fmt_about, fmt_duration
from geocam_gui.ui.workers import TrainingWorker


class TrainingPanel(QWidget):
    """Settings, start/pause/cancel, progress with ETA, curves, log and the results."""

    checkpointReady = Signal(str, str)  # model name, checkpoint path (best so far)
    epochCheckpoint = Signal(str, str)  # model name, checkpoint path (after each epoch)
    runFinished = Signal(bool)  # True when all queued models finished
    runStarted = Signal()
    runEnded = Signal(str, str)  # "finished" | "cancelled" | "failed", the outcome sentence
    paneNotesChanged = Signal()  # ``pane_note`` changed for some model
    statusMessage = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.index = None
        self.out_dir: Path | None = None
        self.worker: TrainingWorker | None = None
        self._queue: list[str] = []
        self._clock = RunClock()  # the run's time, pauses left out of its ETA
        self._model_pos = 0
        self._cost = RunCost([], {})  # the run's progress, weighted by each model's FLOPs
        self._torch_threads = 1
        self.run: RunTracker | None = None  # the run going on (or the last one, once ended)
        self._stopped: tuple | None = None
        self._user_fields: tuple | None = None
        self._build()
        self.set_dataset(None, None)

    # -- layout ------------------------------------------------------------------------------
    def _build(self) -> None:
        root = QHBoxLayout(self)
        root.setContentsMargins(4, 4, 4, 4)
        left = QVBoxLayout()
        self.settings = TrainingSettings()
        # the fields, by the names the window and the tests use
        for attr in ("model_checks", "device", "epochs", "batch", "lr", "size", "augment", "pretrained"):
            setattr(self, attr, getattr(self.settings, attr))
        left.addWidget(self.settings)

        buttons = QHBoxLayout()
        self.start_button = QPushButton("Start training")
        self.start_button.setObjectName("primary")
        self.start_button.clicked.connect(lambda: self.start())
        self.pause_button = QPushButton("Pause")
        self.pause_button.setCheckable(True)
        self.pause_button.toggled.connect(self._on_pause)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        for b in (self.start_button, self.pause_button, self.cancel_button):
            buttons.addWidget(b)
        left.addLayout(buttons)
        self.status = QLabel("Open a dataset to train models on it.")
        self.status.setWordWrap(True)
        left.addWidget(self.status)
        self.state_label = QLabel()  # one line of the run's state, for the window's status bar
        self.state_label.setObjectName("trainingState")
        self.state_label.setVisible(False)
        self.epoch_bar = QProgressBar()
        self.epoch_bar.setFormat("epoch %p %")
        self.total_bar = QProgressBar()
        self.total_bar.setFormat("run %p %")
        left.addWidget(self.epoch_bar)
        left.addWidget(self.total_bar)
        left.addStretch(1)
        left_w = QWidget()
        left_w.setLayout(left)
        settings = QScrollArea()  # lets the panel shrink on small screens without clipping
        settings.setWidget(left_w)
        settings.setWidgetResizable(True)
        settings.setFrameShape(QScrollArea.Shape.NoFrame)
        settings.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        settings.setMinimumWidth(left_w.sizeHint().width() + 12)
        settings.setMaximumWidth(400)

        self.tabs = QTabWidget()
        self.curves = Curves()
        self.tabs.addTab(self.curves, "Curves")
        self.results = ResultsTable()
        self.tabs.addTab(self.results, "Results")
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(5000)
        self.tabs.addTab(self.log, "Log")

        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(settings)
        split.addWidget(self.tabs)
        split.setStretchFactor(1, 1)
        split.setChildrenCollapsible(False)  # a dragged splitter never hides the settings or the curves
        root.addWidget(split)
        self._set_running(False)

    # -- state -------------------------------------------------------------------------------
    def set_dataset(self, index: DatasetIndex | None, out_dir: Path | None) -> None:
        if index is not self.index and not self.is_running():  # another dataset's runs are not these
            self.curves.clear()
            self.results.setRowCount(0)
            self.epoch_bar.setValue(0)
            self.total_bar.setValue(0)
        self.index = index
        self.out_dir = Path(out_dir) if out_dir else None
        if index is None:
            self.status.setText("Open a dataset to train models on it.")
        elif not self.is_running():
            n = len(index.split("train"))
            self.status.setText(f"Ready: {n} training images, classes {', '.join(index.classes)}.")
        self._set_running(self.is_running())

    def is_running(self) -> bool:
        return self.worker is not None

    def _set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running and self.index is not None)
        self.pause_button.setEnabled(running)
        self.cancel_button.setEnabled(running)
        self.settings.set_editable(not running)
        if not running:
            self.pause_button.setChecked(False)

    def overrides(self) -> dict:
        """The settings the user changed from the defaults shown (``config_for``'s overrides)."""
        return self.settings.overrides()

    def config_for(self, name: str):
        """The run for ``name`` (``TrainingSettings.config_for``)."""
        return self.settings.config_for(name)

    def selected_models(self) -> list[str]:
        return self.settings.selected_models()

    def select_models(self, names: list[str]) -> None:
        self.settings.select_models(names)

    # -- run control ---------------------------------------------------------------------------
    def start(self, models: list[str] | None = None, configs: list | None = None) -> bool:
        """Train ``models`` (default: the checked ones) one after the other in a worker thread."""
        if self.is_running() or self.index is None or self.out_dir is None:
            return False
        if configs is None:
            names = models if models is not None else self.selected_models()
            if not names:
                self.statusMessage.emit("Choose at least one model to train.")
                return False
            configs = [self.config_for(n) for n in names]
        if not self._may_replace([c.model for c in configs]):
            return False
        self._queue = [c.model for c in configs]
        self.run, self._stopped = RunTracker(configs), None
        # one pass over the index on the GUI thread (index.split would walk it once per split)
        self._cost = RunCost(configs, Counter(s.split for s in self.index.samples), len(self.index.classes))
        self._clock = RunClock()
        self.curves.clear()
        self.results.setRowCount(0)
        self.epoch_bar.setValue(0)
        self.total_bar.setValue(0)
        self._log(f"Training {', '.join(MODEL_LABELS[m] for m in self._queue)} into {self.out_dir}")
        self.worker = TrainingWorker(configs, self.index, self.out_dir, parent=self)
        self.worker.event.connect(self._on_event)
        self.worker.modelStarted.connect(self._on_model_started)
        self.worker.modelReturned.connect(self._on_model_finished)
        self.worker.errored.connect(self._on_failed)
        self.worker.stopped.connect(lambda *args: setattr(self, "_stopped", args))
        self.worker.finished.connect(self._on_done)
        self._set_running(True)
        self._user_fields = self.settings.snapshot()
        self.settings.show_config(configs[0])
        # The child process trains with every core; this process's CAM and prediction workers
        # use one torch thread meanwhile, so they do not crowd out the GUI thread.
        import torch

        self._torch_threads = torch.get_num_threads()
        torch.set_num_threads(1)
        self.worker.start()
        self.status.setText(f"Training {', '.join(MODEL_LABELS[m] for m in self._queue)}…")
        self.runStarted.emit()
        self._progress_changed(notes=True)
        return True

    # -- what the settings show during a run: the recipe running, then the user's own again -----
    def pane_note(self, name: str) -> str | None:
        """What ``name``'s pane says while a run trains or queues it (None otherwise)."""
        return self.run.pane_note(name) if self.run is not None and self.is_running() else None

    def _progress_changed(self, notes: bool = False) -> None:
        if self.run is not None and self.is_running():
            text = self.run.status_text()
            eta = self._cost.eta(self._clock.running())
            if self.run.state == "running" and not self.run.paused and eta is not None:
                text += f" · {fmt_about(eta)} left in the run"
            self.state_label.setText(text)
            self.state_label.setVisible(True)
        if notes:
            self.paneNotesChanged.emit()

    def _may_replace(self, models: list[str]) -> bool:
        """Ask before training from scratch over runs already in the output folder."""
        if dialogs.may_replace_runs(self, self.out_dir, models):
            return True
        self.statusMessage.emit("Training not started: the trained models were kept.")
        return False

    def _on_pause(self, paused: bool) -> None:
        if self.worker is None:
            return
        self.worker.set_paused(paused)
        self.pause_button.setText("Resume" if paused else "Pause")
        self.status.setText("Pausing after the current batch…" if paused else "Resumed.")

    def cancel(self) -> None:
        if self.worker is not None and self.run is not None and self.run.state == "running":
            self._log("Cancelling…")
            self.status.setText("Cancelling…")
            self.cancel_button.setEnabled(False)
            self.pause_button.setEnabled(False)
            self.run.cancelling()
            self.worker.cancel()
            self._progress_changed(notes=True)

    def stop_and_wait(self, ms: int = 60000) -> bool:
        """Cancel a run and wait for its thread (used when the window closes)."""
        if self.worker is None:
            return True
        self.worker.set_paused(False)
        if self.run is not None:
            self.run.cancelling()
        self.worker.cancel()
        ok = self.worker.wait(ms)
        self._on_done(False)
        return ok

    # -- events (GUI thread) ------------------------------------------------------------------
    def _on_model_started(self, name: str, i: int, total: int) -> None:
        self._model_pos = i
        if self.run is not None and self.run.state == "running":
            self.run.model_started(name)
            self.settings.show_config(self.run.configs.get(name))
            self.status.setText(f"Training {MODEL_LABELS[name]} ({i + 1} of {total})…")
        self._progress_changed(notes=True)

    def _on_event(self, name: str, event) -> None:
        """One engine event (``core.train.events``) of model ``name``."""
        from geocam_gui.core.train import events as ev

        notes = self.run.on_event(name, event) if self.run is not None else False
        running = self.run is None or self.run.state == "running"  # else cancelling: "Cancelling…" stays
        if isinstance(event, ev.Start):
            self._cost.started(name, event.start_epoch)
        if isinstance(event, ev.Batch) and running:
            total = max(1, event.batches)
            done = event.batch
            self.epoch_bar.setValue(int(100 * done / total))
            self._cost.batch(name, event.epoch, done, total)
            self._show_total()
            eta = self._cost.eta(self._clock.running())
            self.status.setText(
                f"{MODEL_LABELS[name]} · epoch {event.epoch} · batch {done}/{total}"
                f" · loss {event.loss:.3f} · ETA {fmt_duration(eta)}"
            )
        elif isinstance(event, ev.Epoch):
            self._cost.epoch_done(name, event.epoch)
            self._show_total()
            ep = float(event.epoch)
            self.curves.add(name, "loss", "train", ep, event.train_loss)
            self.curves.add(name, "loss", "val", ep, event.val_loss)
            self.curves.add(name, "acc", "train", ep, event.train_acc)
            self.curves.add(name, "acc", "val", ep, event.val_acc)
            if running:
                self.status.setText(f"{MODEL_LABELS[name]} · epoch {event.epoch} of {event.epochs} done · "
                                    f"val accuracy {event.val_acc * 100:.0f} %")
            self.epoch_bar.setValue(100)
            self._log(
                f"{MODEL_LABELS[name]} epoch {event.epoch}: train_loss {event.train_loss:.4f}, "
                f"train_acc {event.train_acc:.4f}, val_loss {event.val_loss:.4f}, val_acc {event.val_acc:.4f}, "
                f"{event.images_per_s:.0f} img/s"
            )
        elif isinstance(event, ev.Checkpoint):
            if event.which == "last":
                self.epochCheckpoint.emit(name, event.path)
            elif event.which == "best":
                self.checkpointReady.emit(name, event.path)
        elif isinstance(event, ev.Log):
            self._log(f"{MODEL_LABELS[name]}: {event.message}")
            if "paused" in event.extra and self.run is not None and running:
                self.run.paused = bool(event.extra["paused"])
                if self.run.paused:
                    self._clock.pause()
                else:
                    self._clock.resume()
                self.status.setText("Paused." if self.run.paused else "Resumed.")
        elif isinstance(event, ev.Failed):
            self._log(f"{MODEL_LABELS[name]} failed: {event.message}")
        if isinstance(event, (ev.Batch, ev.Epoch, ev.Start, ev.Log)):
            self._progress_changed(notes)

    def _show_total(self) -> None:
        """The run's bar: the share of its FLOPs done (``core.train.cost``; at 64 px an image costs
        VGG11 twelve times what it costs the shallow net)."""
        self.total_bar.setValue(int(100 * self._cost.fraction()))

    def _on_model_finished(self, name: str, result) -> None:
        if self.run is not None:
            self.run.model_finished(name)
        self._cost.finished(name)
        self._show_total()
        metrics = result.test or {}
        best = result.best_checkpoint
        self._add_result_row(name, metrics, best)
        if best:
            self.checkpointReady.emit(name, str(best))
        acc = metrics.get("accuracy")
        self._log(f"{MODEL_LABELS[name]} finished" + (f": test accuracy {acc * 100:.1f} %" if acc is not None else ""))
        self._progress_changed(notes=True)

    def _add_result_row(self, name: str, metrics: dict, checkpoint) -> None:
        classes = self.index.classes if self.index is not None else []
        self.results.add_row(name, metrics, checkpoint, classes)

    def show_checkpoint_metrics(self, name: str, meta: dict, path: str) -> None:
        """Fill a result row from a checkpoint's metadata (when earlier runs are reopened)."""
        metrics = dict((meta.get("metrics") or {}).get("test") or meta.get("metrics") or {})
        metrics.setdefault("classes", meta.get("classes"))
        self.results.remove_model(name)
        self._add_result_row(name, metrics, path)

    def show_history(self, name: str, records: list[dict]) -> None:
        """Curves of an earlier run (its ``metrics.jsonl``), when its checkpoint is reopened."""
        self.curves.remove_model(name)
        for rec in records:
            ep = float(rec.get("epoch", 0))
            for metric in ("loss", "acc"):
                self.curves.add(name, metric, "train", ep, rec.get(f"train_{metric}"))
                self.curves.add(name, metric, "val", ep, rec.get(f"val_{metric}"))

    def _on_failed(self, name: str, message: str) -> None:
        if self.run is not None:
            self.run.model_failed(name, message)
        self._cost.finished(name, ok=False)
        self._log(f"{MODEL_LABELS[name]} failed: {message}")
        self.statusMessage.emit(f"Training {MODEL_LABELS[name]} failed: {message}")
        self._progress_changed(notes=True)

    def _on_done(self, ok: bool) -> None:
        if self.worker is None:
            return
        worker, self.worker = self.worker, None
        worker.wait(60000)
        import torch

        torch.set_num_threads(self._torch_threads)
        worker.thread.deleteLater()
        worker.deleteLater()
        self._set_running(False)
        if self._user_fields is not None:
            self.settings.restore(self._user_fields)
            self._user_fields = None
        self.pause_button.setText("Pause")
        elapsed = fmt_duration(self._clock.wall())
        outcome = self.run.end(ok, self._stopped, elapsed) if self.run is not None else "Training ended."
        self.status.setText(outcome)
        if self.run is not None and self.run.state == "finished":
            self.total_bar.setValue(100)
            self.tabs.setCurrentWidget(self.results)
        self._log(outcome + ("" if self.run is not None and self.run.state == "finished" else f" ({elapsed})"))
        self.state_label.setVisible(False)
        self.paneNotesChanged.emit()
        self.runEnded.emit(self.run.state if self.run is not None else "failed", outcome)
        self.runFinished.emit(ok)

    def _log(self, text: str) -> None:
        self.log.appendPlainText(time.strftime("%H:%M:%S ") + text)
