"""GeoCAM's main window: dataset browser (left), tri-pane viewer (centre), training (bottom).

The window wires signals between the views and the core; long work runs in workers.
"""

from __future__ import annotations

import hashlib
import logging
import platform
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressDialog,
    QTabWidget,
    QTextBrowser,
    QWidget,
)

from geocam_gui import __version__
from geocam_gui.core import paths
from geocam_gui.core.models import MODEL_LABELS, MODEL_NAMES
from geocam_gui.ui.cam_viewer import CamViewer
from geocam_gui.ui.dataset_browser import DatasetBrowser
from geocam_gui.ui.training_panel import TrainingPanel
from geocam_gui.ui.workers import TaskWorker

log = logging.getLogger(__name__)
SETTINGS_VERSION = 1


def run_dir_for(index, checkpoint_dir: Path) -> Path:
    """Where the runs on a dataset live: one folder per dataset fingerprint."""
    root = Path(index.roots[0]) if index.roots else Path("dataset")
    name = "demo" if (paths.cache_dir() / "demo") in root.parents else root.name
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)[:40] or "dataset"
    digest = hashlib.sha1(index.fingerprint().encode()).hexdigest()[:8]
    return Path(checkpoint_dir) / f"{safe}-{digest}"


class MainWindow(QMainWindow):
    """The explorer. ``checkpoint_dir``: where training runs are written and found."""

    datasetOpened = Signal(object)
    idleChanged = Signal()

    def __init__(self, checkpoint_dir: str | Path | None = None, device: str = "auto", parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("GeoCAM")
        self.setObjectName("MainWindow")
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else paths.default_checkpoint_dir()
        self.index = None
        self.run_dir: Path | None = None
        self.auto_train_missing = False
        self.confirm_close = True
        self._tasks: list[TaskWorker] = []
        self._prediction_tasks: dict[str, TaskWorker] = {}
        self._trained_in_run: set[str] = set()  # models with a new best checkpoint this run

        from geocam_gui.core.device import resolve_device

        self.device = resolve_device(device)
        self.viewer = CamViewer(self, device=str(self.device) if self.device.type != "mps" else "cpu")
        self.setCentralWidget(self.viewer)

        self.browser = DatasetBrowser()
        self.browser_dock = self._dock("Dataset", "datasetDock", self.browser, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.training = TrainingPanel()
        self.bottom_tabs = QTabWidget()
        self.bottom_tabs.addTab(self.training, "Training")
        from geocam_gui.ui.analysis_panel import AnalysisPanel

        self.analysis = AnalysisPanel()
        self.bottom_tabs.addTab(self.analysis, "Analysis")
        from geocam_gui.ui.units_panel import UnitsPanel

        self.units = UnitsPanel()
        self.bottom_tabs.addTab(self.units, "Units")
        self.training_dock = self._dock("Training", "trainingDock", self.bottom_tabs,
                                        Qt.DockWidgetArea.BottomDockWidgetArea)
        self.resizeDocks([self.browser_dock], [360], Qt.Orientation.Horizontal)
        self.resizeDocks([self.training_dock], [300], Qt.Orientation.Vertical)

        self.status_label = QLabel()
        self.device_label = QLabel()
        self.statusBar().addWidget(self.status_label, 1)
        self.statusBar().addPermanentWidget(self.device_label)
        from geocam_gui.core.device import describe_device

        self.device_label.setText(f"device: {describe_device(self.device)}")

        self._build_menus()
        self._wire()
        self._restore_settings()
        self.show_message("Open a dataset (File ▸ Open dataset…) or the demo (File ▸ Open demo dataset).")

    # -- construction -------------------------------------------------------------------------
    def _dock(self, title: str, name: str, widget: QWidget, area) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                         | QDockWidget.DockWidgetFeature.DockWidgetFloatable
                         | QDockWidget.DockWidgetFeature.DockWidgetClosable)
        self.addDockWidget(area, dock)
        return dock

    def _action(self, menu, text: str, slot, shortcut=None, tip: str = "") -> QAction:
        act = QAction(text, self)
        if shortcut is not None:
            act.setShortcut(QKeySequence(shortcut))
        if tip:
            act.setStatusTip(tip)
        act.triggered.connect(slot)
        menu.addAction(act)
        return act

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self._action(file_menu, "&Open dataset…", self.choose_dataset, QKeySequence.StandardKey.Open,
                     "Open a folder of city photos, an index or a demo set")
        self._action(file_menu, "Open &demo dataset", lambda: self.open_demo(), None,
                     "Generate (once) and open the embedded two-cities demo set")
        self.recent_menu = file_menu.addMenu("Open &recent")
        self._action(file_menu, "Open &checkpoints…", self.choose_checkpoints, "Ctrl+K",
                     "Load trained models from a folder of checkpoints")
        file_menu.addSeparator()
        self.export_action = self._action(file_menu, "&Export…", self.export, "Ctrl+E",
                                          "Export overlays and a figure for a publication")
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", self.close, QKeySequence.StandardKey.Quit)

        view = bar.addMenu("&View")
        view.addAction(self.browser_dock.toggleViewAction())
        view.addAction(self.training_dock.toggleViewAction())
        view.addSeparator()
        self._action(view, "Reset &zoom", self.viewer.fit, "Ctrl+0")
        self._action(view, "Reset &layout", self.reset_layout)

        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "&About GeoCAM", self.about)
        self._action(help_menu, "Show &log file", self.show_log_location)

    def _wire(self) -> None:
        self.browser.sampleSelected.connect(self._on_sample)
        self.browser.dropped.connect(lambda folders: self.open_dataset(folders))
        self.browser.auditRequested.connect(self.show_audit)
        self.viewer.trainRequested.connect(self.train_model)
        self.viewer.exportRequested.connect(self.export)
        self.viewer.statusMessage.connect(self.show_message)
        self.training.statusMessage.connect(self.show_message)
        self.training.epochCheckpoint.connect(self._on_epoch_checkpoint)
        self.training.checkpointReady.connect(self._on_checkpoint_ready)
        self.training.runFinished.connect(self._on_run_finished)
        self.analysis.sampleRequested.connect(self._show_sample_path)
        self.analysis.statusMessage.connect(self.show_message)
        self.units.sample_provider = self.viewer.current_sample
        self.units.unitMapReady.connect(self.viewer.show_map)
        self.units.cam_button.clicked.connect(lambda: self.viewer.show_cam())
        self.units.statusMessage.connect(self.show_message)

    # -- settings -------------------------------------------------------------------------------
    @staticmethod
    def _settings() -> QSettings:
        return QSettings("GeoCAM", "GeoCAM")

    @classmethod
    def reset_settings(cls) -> None:
        """Forget window geometry, dock layout and recent datasets (``--reset-settings``)."""
        s = cls._settings()
        s.clear()
        s.sync()

    def _restore_settings(self) -> None:
        s = self._settings()
        self.restored_geometry = False
        if int(s.value("settingsVersion", 0) or 0) == SETTINGS_VERSION:
            geometry = s.value("geometry")
            state = s.value("windowState")
            if geometry is not None:
                self.restored_geometry = bool(self.restoreGeometry(geometry))
            if state is not None:
                self.restoreState(state, SETTINGS_VERSION)
        self._refresh_recent()

    def save_settings(self) -> None:
        s = self._settings()
        s.setValue("settingsVersion", SETTINGS_VERSION)
        s.setValue("geometry", self.saveGeometry())
        s.setValue("windowState", self.saveState(SETTINGS_VERSION))
        s.sync()

    def reset_layout(self) -> None:
        for dock in (self.browser_dock, self.training_dock):
            dock.setFloating(False)
            dock.show()
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.browser_dock)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.training_dock)
        self.resizeDocks([self.browser_dock], [360], Qt.Orientation.Horizontal)
        self.resizeDocks([self.training_dock], [300], Qt.Orientation.Vertical)

    def _remember_recent(self, spec: list[str]) -> None:
        s = self._settings()
        recent = [r for r in (s.value("recentDatasets") or []) if r != "|".join(spec)]
        recent.insert(0, "|".join(spec))
        s.setValue("recentDatasets", recent[:8])
        self._refresh_recent()

    def _refresh_recent(self) -> None:
        self.recent_menu.clear()
        recent = self._settings().value("recentDatasets") or []
        if isinstance(recent, str):
            recent = [recent]
        for entry in recent:
            parts = entry.split("|")
            act = self.recent_menu.addAction(", ".join(parts))
            act.triggered.connect(lambda _c=False, p=parts: self.open_dataset(p))
        self.recent_menu.setEnabled(bool(recent))

    # -- messages -------------------------------------------------------------------------------
    def show_message(self, text: str) -> None:
        self.status_label.setText(text)
        log.info(text)

    def show_error(self, title: str, text: str) -> None:
        self.show_message(text)
        if QApplication.instance().property("geocamQuiet"):
            return
        QMessageBox.warning(self, title, text)

    # -- long tasks -------------------------------------------------------------------------------
    def run_task(self, name: str, fn, on_done, *, progress_text: str | None = None, on_fail=None) -> TaskWorker:
        """Run ``fn(progress, cancelled)`` in a worker; a progress dialog shows when it is slow."""
        task = TaskWorker(name, fn, self)
        dialog = None
        if progress_text:
            # Not modal: a modal QProgressDialog runs the event loop inside setValue(), which
            # would deliver the task's end (and delete the dialog) in the middle of an update.
            dialog = QProgressDialog(progress_text, "Cancel", 0, 0, self)
            dialog.setWindowTitle("GeoCAM")
            dialog.setWindowModality(Qt.WindowModality.NonModal)
            dialog.setMinimumDuration(400)
            dialog.canceled.connect(task.cancel)

            def show_progress(done: int, total: int, _text: str) -> None:
                if task in self._tasks:
                    dialog.setMaximum(max(total, 1))
                    dialog.setValue(min(done, max(total, 1)))

            task.progress.connect(show_progress)
        task.finished.connect(on_done)
        task.failed.connect(on_fail or (lambda msg: self.show_error("GeoCAM", msg)))
        task.cancelled.connect(lambda: self.show_message(f"{progress_text or name}: cancelled."))

        def cleanup():
            if task in self._tasks:
                self._tasks.remove(task)
            if dialog is not None:
                task.progress.disconnect(show_progress)
                dialog.reset()
                dialog.deleteLater()
            task.thread.wait(5000)
            self.idleChanged.emit()

        task.done.connect(cleanup)
        self._tasks.append(task)
        task.start()
        return task

    def is_idle(self) -> bool:
        """No task, no training, no CAM computation pending (used by --screenshot and tests)."""
        return not self._tasks and not self.training.is_running() and not self.viewer.is_busy()

    # -- datasets ---------------------------------------------------------------------------------
    def choose_dataset(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open dataset folder")
        if folder:
            self.open_dataset([folder])

    def open_demo(self, **params) -> None:
        from geocam_gui.core.data.demo import ensure_demo

        def work(progress, cancelled):
            return ensure_demo(progress=lambda d, t: progress(d, t), cancel=cancelled, **params)

        self.show_message("Preparing the demo data set…")
        self.run_task("demo-data", work, lambda path: self.open_dataset([str(path)], demo=True),
                      progress_text="Generating the two-cities demo data set…")

    def open_dataset(self, spec, *, demo: bool = False) -> None:
        from geocam_gui.core.data.datasets import open_data

        roots = [str(s) for s in (spec if isinstance(spec, (list, tuple)) else [spec])]

        checkpoint_dir = self.checkpoint_dir

        def work(progress, _cancelled):
            index = open_data(roots[0] if len(roots) == 1 else roots, progress=lambda d, t: progress(d, t))
            return index, run_dir_for(index, checkpoint_dir)  # the fingerprint stats every file

        self.show_message(f"Indexing {', '.join(roots)}…")
        self.run_task("index", work, lambda result: self.set_index(result[0], demo=demo, spec=roots, run_dir=result[1]),
                      progress_text="Indexing the dataset…")

    def set_index(self, index, *, demo: bool = False, spec: list[str] | None = None,
                  run_dir: Path | None = None) -> None:
        if self.training.is_running():
            self.show_error("GeoCAM", "A training run is in progress; cancel it before opening another dataset.")
            return
        self.index = index
        self.run_dir = run_dir or run_dir_for(index, self.checkpoint_dir)
        self.browser.set_index(index)
        self.viewer.set_classes(index.classes)
        self.training.set_dataset(index, self.run_dir)
        from geocam_gui.ui.dataset_browser import dataset_title

        self.setWindowTitle(f"GeoCAM - {dataset_title(index)}")
        if spec:
            self._remember_recent(spec)
        n_bad = len(index.bad_files)
        self.show_message(
            f"{len(index.samples)} images in {len(index.classes)} classes ({index.layout} layout)"
            + (f"; {n_bad} unreadable file(s) skipped" if n_bad else "")
        )
        found = self.load_run_checkpoints(self.run_dir)
        for name in MODEL_NAMES:
            if name not in found:
                self.viewer.set_checkpoint(name, None)
        row = self.browser.first_row_of_split("test")
        self.browser.select_row(row if row is not None else 0)
        missing = [m for m in MODEL_NAMES if m not in found]
        if demo and self.auto_train_missing and missing:
            self.show_message(f"No demo models yet: training {', '.join(MODEL_LABELS[m] for m in missing)}…")
            self.training.start(configs=self.demo_configs(missing))
        self._sync_analysis()
        self.datasetOpened.emit(index)
        self.idleChanged.emit()

    def demo_configs(self, models: list[str]) -> list:
        """Short runs that fill the three panes in a few CPU minutes."""
        from geocam_gui.core.train.config import demo_config

        return [demo_config(m, self.device.type if self.device.type != "cuda" else str(self.device))
                for m in models]

    def show_audit(self) -> None:
        if self.index is None:
            return
        import json

        dlg = QMessageBox(self)
        dlg.setWindowTitle("Dataset audit")
        dlg.setText(f"Audit of {', '.join(self.index.roots)}")
        lines = [f"{p}: {r}" for p, r in self.index.bad_files[:200]]
        dlg.setDetailedText(json.dumps(self.index.audit, indent=2, default=str)
                            + ("\n\nUnreadable files:\n" + "\n".join(lines) if lines else ""))
        dlg.exec()

    def _show_sample_path(self, path: str) -> None:
        """A patch of the Analysis tab was clicked: select its image in the browser."""
        if not self.browser.select_path(path):
            self.show_message(f"{path} is not in the open dataset.")

    def _sync_analysis(self) -> None:
        self.analysis.set_context(self.index, self.viewer.checkpoints())
        self.units.set_context(self.index, self.viewer.checkpoints())

    def _on_sample(self, sample) -> None:
        if sample is None:
            self.viewer.set_sample(None)
            return
        self.viewer.set_sample(sample.path, sample.label)
        self.show_message(f"{sample.path}  ·  class {sample.label}  ·  split {sample.split}  ·  group {sample.group}")

    # -- checkpoints ------------------------------------------------------------------------------
    def load_run_checkpoints(self, folder: Path) -> dict[str, str]:
        """Put the newest best checkpoint of each model below ``folder`` into its pane."""
        from geocam_gui.core.checkpoints import find_checkpoints, read_meta

        found: dict[str, str] = {}
        if not folder or not Path(folder).is_dir():
            return found
        for path in find_checkpoints(folder):
            try:
                meta = read_meta(path)
            except Exception as exc:  # noqa: BLE001 - a bad file is reported, the rest loads
                self.show_message(f"Skipped checkpoint {path}: {exc}")
                name = Path(path).parent.name  # runs keep each model in a folder of its name
                if name in MODEL_NAMES and name not in found:
                    self.viewer.set_checkpoint(name, None, error=str(exc))
                continue
            name = meta.get("model")
            if name in MODEL_NAMES and name not in found:
                if self.index is not None and list(meta.get("classes", [])) != list(self.index.classes):
                    self.viewer.set_checkpoint(name, None, error=(
                        f"{Path(path).name} was trained on classes {meta.get('classes')}, "
                        f"this dataset has {self.index.classes}."))
                    continue
                found[name] = str(path)
                self.viewer.set_checkpoint(name, str(path))
                self._sync_analysis()
                self.training.show_checkpoint_metrics(name, meta, str(path))
                self.training.show_history(name, _read_history(Path(path).parent / "metrics.jsonl"))
                self.update_predictions(name, str(path))
        return found

    def choose_checkpoints(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of checkpoints", str(self.checkpoint_dir))
        if folder:
            found = self.load_run_checkpoints(Path(folder))
            self.show_message(f"Loaded {len(found)} checkpoint(s) from {folder}." if found
                              else f"No checkpoints for this dataset's classes in {folder}.")

    def update_predictions(self, name: str, checkpoint: str) -> None:
        """Predict every image with a checkpoint, for the browser's columns and filters."""
        if self.index is None:
            return
        from geocam_gui.core.explain.store import predict_samples

        samples = list(self.index.samples)
        old = self._prediction_tasks.pop(name, None)
        if old is not None:
            old.cancel()

        def work(progress, cancelled):
            return predict_samples(checkpoint, samples, progress=progress, cancel=cancelled)

        index = self.index

        def done(probs):
            if self.index is index:
                self.browser.set_predictions(name, probs)

        task = self.run_task(f"predict-{name}", work, done,
                             on_fail=lambda msg: self.show_message(f"Predictions of {MODEL_LABELS[name]}: {msg}"))
        self._prediction_tasks[name] = task
        task.done.connect(lambda: self._prediction_tasks.pop(name, None) if self._prediction_tasks.get(name) is task
                          else None)

    # -- training ---------------------------------------------------------------------------------
    def train_model(self, name: str) -> None:
        if self.index is None:
            self.show_error("GeoCAM", "Open a dataset first: there is nothing to train on.")
            return
        self.training_dock.show()
        self.bottom_tabs.setCurrentWidget(self.training)
        if not self.training.is_running():
            self.training.select_models([name])
            self.training.start([name])

    def _on_epoch_checkpoint(self, name: str, path: str) -> None:
        self.viewer.set_checkpoint(name, path)  # the user sees what the model learns to look at

    def _on_checkpoint_ready(self, name: str, path: str) -> None:
        self._trained_in_run.add(name)
        self.viewer.set_checkpoint(name, path)
        self._sync_analysis()

    def _on_run_finished(self, ok: bool) -> None:
        if self.run_dir is not None:
            from geocam_gui.core.checkpoints import find_checkpoints, read_meta

            # Only the models this run wrote a best checkpoint for: the others are unchanged,
            # and re-predicting the whole dataset for them would be work done twice.
            seen = set()
            for path in find_checkpoints(self.run_dir):
                name = read_meta(path).get("model")
                if name in self._trained_in_run and name not in seen:
                    seen.add(name)
                    self.viewer.set_checkpoint(name, str(path))
                    self.update_predictions(name, str(path))
        self._trained_in_run.clear()
        self._sync_analysis()
        self.show_message("Training finished." if ok else "Training stopped.")
        self.idleChanged.emit()

    # -- export, about ----------------------------------------------------------------------------
    def export(self) -> None:
        """The export dialog for the current image, or the rows the browser shows."""
        from geocam_gui.ui.export_dialog import ExportDialog

        selected = self.browser.selected_samples()
        if len(selected) > 1:  # several images selected: overlays of each, or a figure of them
            images = [(s.path, s.label) for s in selected]
        else:
            sample = self.viewer.current_sample()
            images = [sample] if sample is not None else []
        batch = self.browser.visible_samples() if self.index is not None else None
        dlg = ExportDialog(
            self,
            checkpoints=self.viewer.checkpoints(),
            images=images,
            batch_samples=batch,
            class_choice=self.viewer.class_choice(),
            method=self.viewer.method.currentData() or "gradcam",
            cmap=self.viewer.cmap.currentData() or "jet",
            opacity=self.viewer.opacity.value() / 100,
        )
        dlg.exec()

    def about(self) -> None:
        import PySide6
        import torch
        import torchvision

        from geocam_gui.core.device import describe_device

        QMessageBox.about(
            self,
            "About GeoCAM",
            f"<h3>GeoCAM {__version__}</h3>"
            "<p>See what convolutional networks look at when they tell cities apart: "
            "Grad-CAM of a shallow CNN, VGG11 and ResNet18 side by side, after "
            "Khademi et al., <i>Sight-seeing in the eyes of deep neural networks</i> (eScience 2018).</p>"
            f"<p>Qt {PySide6.QtCore.qVersion()} · PySide6 {PySide6.__version__} · torch {torch.__version__} · "
            f"torchvision {torchvision.__version__} · Python {platform.python_version()}<br>"
            f"Compute device: {describe_device(self.device)}</p>",
        )

    def show_log_location(self) -> None:
        from geocam_gui.core.logs import log_file

        QMessageBox.information(self, "Log file", f"GeoCAM writes its log to:\n{log_file()}")

    # -- closing ----------------------------------------------------------------------------------
    def closeEvent(self, event) -> None:  # noqa: N802
        if self.training.is_running() and self.confirm_close:
            answer = QMessageBox.question(
                self, "Training in progress",
                "A training run is in progress. Stop it and close GeoCAM?\n"
                "Checkpoints of finished epochs are kept.",
            )
            if answer != QMessageBox.StandardButton.Yes:
                event.ignore()
                return
        self.save_settings()
        self.shutdown()
        event.accept()

    def shutdown(self) -> None:
        """Stop every worker and wait for its thread: nothing outlives the window."""
        self.training.stop_and_wait()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            task.wait(60000)
        QApplication.processEvents()
        self.analysis.shutdown()
        self.units.shutdown()
        self.viewer.shutdown()
        self.browser.shutdown()


def _read_history(path: Path) -> list[dict]:
    """The per-epoch records of a run's ``metrics.jsonl`` (missing or damaged lines skipped)."""
    import json

    records = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return records
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def default_screenshot_timer(window: MainWindow, path: str, timeout_s: float, on_done) -> QTimer:
    """Poll until the window is idle twice in a row (or the timeout), then grab it to ``path``."""
    import time

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
