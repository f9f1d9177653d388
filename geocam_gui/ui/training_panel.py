"""The training panel: choose models and settings, run them in a QThread, watch live curves.

The GUI thread only receives the engine's events as signals; curves are decimated by
pyqtgraph (``setDownsampling``/``setClipToView``) so long runs stay smooth.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from geocam_gui.core.device import available_devices, resolve_device
from geocam_gui.core.models import MODEL_LABELS, MODEL_NAMES
from geocam_gui.ui.workers import TrainingWorker

MODEL_COLORS = {"shallow": "#e67e22", "vgg11": "#2f6fde", "resnet18": "#1c8a6a"}


def _fmt_eta(seconds: float | None) -> str:
    if seconds is None or not np.isfinite(seconds):
        return "–"
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds} s"


def _pct(value) -> str:
    """A share as a percentage; undefined (None, e.g. a class never predicted) as a dash."""
    return "–" if value is None else f"{value * 100:.0f} %"


class EpochAxis(pg.AxisItem):
    """An epoch axis with whole-epoch ticks only (pyqtgraph would label 1.2, 1.4, ... when zoomed in)."""

    def tickValues(self, minVal, maxVal, size):  # noqa: N802 - pyqtgraph's name
        levels = [(spacing, [v for v in values if abs(v - round(v)) < 1e-9])
                  for spacing, values in super().tickValues(minVal, maxVal, size) if spacing >= 1]
        levels = [(spacing, values) for spacing, values in levels if values]
        if not levels:  # less than a few epochs in view: one tick per whole epoch
            levels = [(1.0, [float(v) for v in range(int(np.ceil(minVal)), int(np.floor(maxVal)) + 1)])]
        return levels


class Curves(QWidget):
    """Loss and accuracy per epoch (train dashed, val solid), one colour per model."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.loss = pg.PlotWidget(title="Loss  (solid: validation, dashed: training)",
                                  axisItems={"bottom": EpochAxis("bottom")})
        self.acc = pg.PlotWidget(title="Accuracy  (solid: validation, dashed: training)",
                                 axisItems={"bottom": EpochAxis("bottom")})
        self.acc.setYRange(0, 1.0)
        for plot in (self.loss, self.acc):
            plot.setBackground("w")
            plot.showGrid(x=True, y=True, alpha=0.25)
            plot.setLabel("bottom", "epoch")
            plot.addLegend(offset=(-5, 5), labelTextSize="8pt")
            plot.setMenuEnabled(False)
            plot.setMinimumHeight(90)
            layout.addWidget(plot, 1)
        self._data: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
        self._items: dict[tuple[str, str, str], pg.PlotDataItem] = {}

    def clear(self) -> None:
        for item in self._items.values():
            item.getViewBox() and item.getViewBox().removeItem(item)
        for plot in (self.loss, self.acc):
            plot.clear()
            if plot.plotItem.legend is not None:
                plot.plotItem.legend.clear()
        self._data.clear()
        self._items.clear()

    def add(self, model: str, metric: str, part: str, x: float, y: float) -> None:
        if y is None or not np.isfinite(y):
            return
        key = (model, metric, part)
        self._data.setdefault(key, []).append((x, y))
        item = self._items.get(key)
        if item is None:
            plot = self.loss if metric == "loss" else self.acc
            style = Qt.PenStyle.SolidLine if part == "val" else Qt.PenStyle.DashLine
            pen = pg.mkPen(MODEL_COLORS.get(model, "#555"), width=2, style=style)
            # One legend entry per model (its validation curve); the line style tells the parts.
            item = plot.plot([], [], pen=pen, name=MODEL_LABELS.get(model, model) if part == "val" else None,
                             symbol="o" if part == "val" else None, symbolSize=5,
                             symbolBrush=MODEL_COLORS.get(model, "#555"))
            item.setDownsampling(auto=True, method="peak")
            item.setClipToView(True)
            self._items[key] = item
        xs, ys = zip(*self._data[key])
        item.setData(np.asarray(xs), np.asarray(ys))

    def series(self, model: str, metric: str, part: str) -> list[tuple[float, float]]:
        return list(self._data.get((model, metric, part), []))


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
        self.size = QSpinBox()
        self.size.setRange(32, 1024)
        self.size.setSingleStep(16)
        self.size.setSuffix(" px")
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
        self.results = QTableWidget(0, 5)
        self.results.setHorizontalHeaderLabels(["Model", "Test accuracy", "Per class (precision / recall)",
                                                "Confusion (rows = true)", "Checkpoint"])
        self.results.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.results.horizontalHeader().setStretchLastSection(True)
        self.results.verticalHeader().setVisible(False)
        self.results.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
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
        """Small images and batches on a CPU, the paper's 224 px on a GPU."""
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

    # -- state -------------------------------------------------------------------------------
    def set_dataset(self, index, out_dir: Path | None) -> None:
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
        from geocam_gui.core.train.config import default_config

        cfg = default_config(name, self.device.currentData() or "auto")
        cfg.epochs = self.epochs.value()
        cfg.batch_size = self.batch.value()
        cfg.image_size = self.size.value()
        if name == "shallow" or self.lr.value() != default_config("shallow", cfg.device).lr:
            cfg.lr = self.lr.value()
        if not self.augment.isChecked():
            from geocam_gui.core.train.loader import AugmentConfig

            cfg.augment = AugmentConfig(crop=False, hflip=False)
        if self.pretrained.isChecked() and name != "shallow":
            cfg.pretrained = "imagenet"
        return cfg.validate()

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
        self.worker.modelFinished.connect(self._on_model_finished)
        self.worker.failed.connect(self._on_failed)
        self.worker.done.connect(self._on_done)
        self._set_running(True)
        # The child process trains with every core; this process's CAM and prediction workers
        # use one torch thread meanwhile, so they do not crowd out the GUI thread.
        import torch

        self._torch_threads = torch.get_num_threads()
        torch.set_num_threads(1)
        self.worker.start()
        self.runStarted.emit()
        return True

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

    def _on_event(self, name: str, kind: str, data: dict) -> None:
        if kind == "batch":
            total = max(1, int(data.get("total_batches") or data.get("batches") or 1))
            done = int(data.get("batch", 0))
            self.epoch_bar.setValue(int(100 * done / total))
            frac = (self._epochs_done + done / total) / self._epochs_total
            self.total_bar.setValue(int(100 * frac))
            elapsed = time.monotonic() - self._t0
            eta = elapsed * (1 - frac) / frac if frac > 0.01 else None
            loss = data.get("loss")
            self.status.setText(
                f"{MODEL_LABELS[name]} · epoch {data.get('epoch', '?')} · batch {done}/{total}"
                + (f" · loss {loss:.3f}" if isinstance(loss, (int, float)) else "")
                + f" · ETA {_fmt_eta(eta)}"
            )
        elif kind == "epoch":
            self._epochs_done += 1
            ep = float(data.get("epoch", self._epochs_done))
            for metric in ("loss", "acc"):
                self.curves.add(name, metric, "train", ep, data.get(f"train_{metric}", data.get(metric)))
                self.curves.add(name, metric, "val", ep, data.get(f"val_{metric}"))
            self.epoch_bar.setValue(100)
            self._log(
                f"{MODEL_LABELS[name]} epoch {int(ep)}: "
                + ", ".join(f"{k} {v:.4f}" for k, v in data.items()
                            if isinstance(v, float) and k in ("train_loss", "train_acc", "val_loss", "val_acc"))
                + (f", {data['images_per_s']:.0f} img/s" if isinstance(data.get("images_per_s"), (int, float)) else "")
            )
        elif kind == "checkpoint":
            path = data.get("path")
            if path and data.get("kind") == "last":
                self.epochCheckpoint.emit(name, str(path))
            elif path and data.get("kind") == "best":
                self.checkpointReady.emit(name, str(path))
        elif kind == "log":
            self._log(f"{MODEL_LABELS[name]}: {data.get('message', data)}")
        elif kind == "failed":
            self._log(f"{MODEL_LABELS[name]} failed: {data.get('message', data)}")

    def _on_model_finished(self, name: str, result) -> None:
        metrics = result.test or {}
        best = result.best_checkpoint
        self._add_result_row(name, metrics, best)
        if best:
            self.checkpointReady.emit(name, str(best))
        acc = metrics.get("accuracy")
        self._log(f"{MODEL_LABELS[name]} finished" + (f": test accuracy {acc * 100:.1f} %" if acc is not None else ""))

    def _add_result_row(self, name: str, metrics: dict, checkpoint) -> None:
        row = self.results.rowCount()
        self.results.insertRow(row)
        acc = metrics.get("accuracy")
        classes = metrics.get("classes") or (self.index.classes if self.index is not None else [])
        per = metrics.get("per_class") or {}
        per_text = "  ".join(
            f"{c}: {_pct(v.get('precision'))} / {_pct(v.get('recall'))}" for c, v in per.items()
        ) if isinstance(per, dict) else str(per)
        conf = metrics.get("confusion")
        conf_text = " | ".join(" ".join(str(int(x)) for x in r) for r in conf) if conf else ""
        if conf and classes:
            conf_text = f"[{', '.join(classes)}]  " + conf_text
        cells = [MODEL_LABELS[name], f"{acc * 100:.1f} %" if acc is not None else "–", per_text, conf_text,
                 str(checkpoint or "")]
        for col, text in enumerate(cells):
            item = QTableWidgetItem(text)
            item.setToolTip(text)
            self.results.setItem(row, col, item)

    def show_checkpoint_metrics(self, name: str, meta: dict, path: str) -> None:
        """Fill a result row from a checkpoint's metadata (when earlier runs are reopened)."""
        metrics = dict((meta.get("metrics") or {}).get("test") or meta.get("metrics") or {})
        metrics.setdefault("classes", meta.get("classes"))
        for r in range(self.results.rowCount()):
            if self.results.item(r, 0).text() == MODEL_LABELS[name]:
                self.results.removeRow(r)
                break
        self._add_result_row(name, metrics, path)

    def show_history(self, name: str, records: list[dict]) -> None:
        """Curves of an earlier run (its ``metrics.jsonl``), when its checkpoint is reopened."""
        for key in [k for k in self.curves._data if k[0] == name]:
            self.curves._data.pop(key)
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
        elapsed = _fmt_eta(time.monotonic() - self._t0)
        self.status.setText(("Finished" if ok else "Stopped") + f" after {elapsed}.")
        if ok:
            self.total_bar.setValue(100)
            self.tabs.setCurrentWidget(self.results)
        self._log(("Run finished" if ok else "Run stopped") + f" after {elapsed}.")
        self.runFinished.emit(ok)

    def _log(self, text: str) -> None:
        self.log.appendPlainText(time.strftime("%H:%M:%S ") + text)
