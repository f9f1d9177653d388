"""The training panel: choose models and settings, train them in a child process, watch live curves.

A ``TrainingWorker`` thread relays the child's typed events (``core.train.events``) as signals;
curves are decimated by pyqtgraph (``setDownsampling``/``setClipToView``) so long runs stay smooth.
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from geocam_gui.core.data.datasets import DatasetIndex
from geocam_gui.core.device import available_devices, resolve_device
from geocam_gui.core.models import MODEL_LABELS, MODEL_NAMES
from geocam_gui.ui import dialogs
from geocam_gui.ui.training_views import Curves, ResultsTable, fmt_duration
from geocam_gui.ui.workers import TrainingWorker


class TrainingPanel(QWidget):
    """Settings, start/pause/cancel, progress with ETA, curves, log and the results."""

    checkpointReady = Signal(str, str)  # model name, checkpoint path (best so far)
    epochCheckpoint = Signal(str, str)  # model name, checkpoint path (after each epoch)
    runFinished = Signal(bool)  # True when all queued models finished
    runStarted = Signal()
    statusMessage = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.index = None
        self.out_dir: Path | None = None
        self.worker: TrainingWorker | None = None
        self._queue: list[str] = []
        self._t0 = 0.0
        self._model_pos = 0
        self._epochs_total = 1
        self._torch_threads = 1
        self._build()
        self.set_dataset(None, None)

    # -- layout ------------------------------------------------------------------------------
    def _build(self) -> None:
        root = QHBoxLayout(self)
        root.setContentsMargins(4, 4, 4, 4)
        left = QVBoxLayout()
        box = QGroupBox("Models")
        bl = QHBoxLayout(box)
        self.model_checks: dict[str, QCheckBox] = {}
        for name in MODEL_NAMES:
            cb = QCheckBox(MODEL_LABELS[name])
            cb.setChecked(True)
            self.model_checks[name] = cb
            bl.addWidget(cb)
        left.addWidget(box)

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.device = QComboBox()
        for dev, label in available_devices():
            self.device.addItem(label, dev)
        self.device.currentIndexChanged.connect(self._apply_device_defaults)
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 1000)
        self.batch = QSpinBox()
        self.batch.setRange(1, 4096)
        self.lr = QDoubleSpinBox()
        self.lr.setDecimals(5)
        self.lr.setRange(1e-5, 1.0)
        self.lr.setSingleStep(1e-4)
        tip = ("A value you change applies to every model trained; unchanged values keep each "
               "model's own default (VGG11 trains at 1e-4).")
        for w in (self.epochs, self.batch, self.lr):
            w.setToolTip(tip)
        self.size = QSpinBox()
        self.size.setRange(32, 1024)
        self.size.setSingleStep(16)
        self.size.setSuffix(" px")
        self.size.setToolTip(tip)
        self.augment = QCheckBox("Random resized crop + horizontal flip")
        self.augment.setChecked(True)
        self.pretrained = QCheckBox("Start VGG11 and ResNet18 from ImageNet weights")
        self.pretrained.setToolTip(
            "torchvision's ImageNet weights (VGG11_Weights / ResNet18_Weights.IMAGENET1K_V1), read from torch's "
            "hub cache or downloaded there once with a checksum. Helps with a few dozen photos per class. "
            "The shallow CNN has none and trains from scratch; off, all models train from scratch as in the paper.")
        grid = QGridLayout()
        grid.addWidget(QLabel("Device"), 0, 0)
        grid.addWidget(self.device, 0, 1, 1, 3)
        grid.addWidget(QLabel("Epochs"), 1, 0)
        grid.addWidget(self.epochs, 1, 1)
        grid.addWidget(QLabel("Batch"), 1, 2)
        grid.addWidget(self.batch, 1, 3)
        grid.addWidget(QLabel("LR"), 2, 0)
        grid.addWidget(self.lr, 2, 1)
        grid.addWidget(QLabel("Image"), 2, 2)
        grid.addWidget(self.size, 2, 3)
        grid.addWidget(self.augment, 3, 0, 1, 4)
        grid.addWidget(self.pretrained, 4, 0, 1, 4)
        left.addLayout(grid)

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
        root.addWidget(split)
        self._apply_device_defaults()
        self._set_running(False)

    def _apply_device_defaults(self) -> None:
        """Show the device's defaults (the shallow net's); a field the user then changes is an
        override for every model trained, an unchanged one keeps each model's own default."""
        from geocam_gui.core.train.config import default_config

        try:
            dev = resolve_device(self.device.currentData() or "auto")
        except Exception:  # noqa: BLE001
            dev = resolve_device("cpu")
        cfg = default_config("shallow", str(dev))
        self.epochs.setValue(cfg.epochs)
        self.batch.setValue(cfg.batch_size)
        self.lr.setValue(cfg.lr)
        self.size.setValue(cfg.image_size)
        self._shown = self._field_values()

    def _field_values(self) -> dict:
        return {"epochs": self.epochs.value(), "batch_size": self.batch.value(), "lr": self.lr.value(),
                "image_size": self.size.value()}

    def overrides(self) -> dict:
        """The settings the user changed from the defaults shown (``config_for``'s overrides)."""
        out = {k: v for k, v in self._field_values().items() if v != self._shown.get(k)}
        if not self.augment.isChecked():
            out["augment"] = False
        if self.pretrained.isChecked():
            out["pretrained"] = "imagenet"
        return out

    # -- state -------------------------------------------------------------------------------
    def set_dataset(self, index: DatasetIndex | None, out_dir: Path | None) -> None:
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
        for w in (*self.model_checks.values(), self.device, self.epochs, self.batch, self.lr, self.size, self.augment,
                  self.pretrained):
            w.setEnabled(not running)
        if not running:
            self.pause_button.setChecked(False)

    def config_for(self, name: str):
        """The run for ``name``: its defaults on the chosen device with the user's changes
        applied (``core.train.config.config_for``, the rule ``geocam train`` follows too)."""
        from geocam_gui.core.train.config import config_for

        overrides = self.overrides()
        if name == "shallow":  # the paper's net has no ImageNet weights: it trains from scratch
            overrides.pop("pretrained", None)
        return config_for(name, self.device.currentData() or "auto", overrides)

    def selected_models(self) -> list[str]:
        return [n for n, cb in self.model_checks.items() if cb.isChecked()]

    def select_models(self, names: list[str]) -> None:
        for n, cb in self.model_checks.items():
            cb.setChecked(n in names)

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
        self._epochs_total = max(1, sum(int(c.epochs) for c in configs))
        self._epochs_done = 0
        self._t0 = time.monotonic()
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
        self.worker.finished.connect(self._on_done)
        self._set_running(True)
        # The child process trains with every core; this process's CAM and prediction workers
        # use one torch thread meanwhile, so they do not crowd out the GUI thread.
        import torch

        self._torch_threads = torch.get_num_threads()
        torch.set_num_threads(1)
        self.worker.start()
        self.runStarted.emit()
        return True

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
        self.status.setText("Paused." if paused else "Resumed.")

    def cancel(self) -> None:
        if self.worker is not None:
            self._log("Cancelling…")
            self.status.setText("Cancelling after the current batch…")
            self.worker.cancel()

    def stop_and_wait(self, ms: int = 60000) -> bool:
        """Cancel a run and wait for its thread (used when the window closes)."""
        if self.worker is None:
            return True
        self.worker.set_paused(False)
        self.worker.cancel()
        ok = self.worker.wait(ms)
        self._on_done(False)
        return ok

    # -- events (GUI thread) ------------------------------------------------------------------
    def _on_model_started(self, name: str, i: int, total: int) -> None:
        self._model_pos = i
        self.status.setText(f"Training {MODEL_LABELS[name]} ({i + 1} of {total})…")

    def _on_event(self, name: str, event) -> None:
        """One engine event (``core.train.events``) of model ``name``."""
        from geocam_gui.core.train import events as ev

        if isinstance(event, ev.Batch):
            total = max(1, event.batches)
            done = event.batch
            self.epoch_bar.setValue(int(100 * done / total))
            frac = (self._epochs_done + done / total) / self._epochs_total
            self.total_bar.setValue(int(100 * frac))
            elapsed = time.monotonic() - self._t0
            eta = elapsed * (1 - frac) / frac if frac > 0.01 else None
            self.status.setText(
                f"{MODEL_LABELS[name]} · epoch {event.epoch} · batch {done}/{total}"
                f" · loss {event.loss:.3f} · ETA {fmt_duration(eta)}"
            )
        elif isinstance(event, ev.Epoch):
            self._epochs_done += 1
            ep = float(event.epoch)
            self.curves.add(name, "loss", "train", ep, event.train_loss)
            self.curves.add(name, "loss", "val", ep, event.val_loss)
            self.curves.add(name, "acc", "train", ep, event.train_acc)
            self.curves.add(name, "acc", "val", ep, event.val_acc)
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
        elif isinstance(event, ev.Failed):
            self._log(f"{MODEL_LABELS[name]} failed: {event.message}")

    def _on_model_finished(self, name: str, result) -> None:
        metrics = result.test or {}
        best = result.best_checkpoint
        self._add_result_row(name, metrics, best)
        if best:
            self.checkpointReady.emit(name, str(best))
        acc = metrics.get("accuracy")
        self._log(f"{MODEL_LABELS[name]} finished" + (f": test accuracy {acc * 100:.1f} %" if acc is not None else ""))

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
        self._log(f"{MODEL_LABELS[name]} failed: {message}")
        self.statusMessage.emit(f"Training {MODEL_LABELS[name]} failed: {message}")

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
        self.pause_button.setText("Pause")
        elapsed = fmt_duration(time.monotonic() - self._t0)
        self.status.setText(("Finished" if ok else "Stopped") + f" after {elapsed}.")
        if ok:
            self.total_bar.setValue(100)
            self.tabs.setCurrentWidget(self.results)
        self._log(("Run finished" if ok else "Run stopped") + f" after {elapsed}.")
        self.runFinished.emit(ok)

    def _log(self, text: str) -> None:
        self.log.appendPlainText(time.strftime("%H:%M:%S ") + text)
