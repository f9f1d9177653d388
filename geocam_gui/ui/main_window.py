"""GeoCAM's main window: dataset browser (left), tri-pane viewer (centre), training (bottom).

The window holds the app's state in one ``core.workspace.Workspace`` (open dataset, run folder,
active checkpoint per model); the views read it and follow its events. The window wires the
remaining signals and runs long work in workers.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QTabWidget,
    QWidget,
)

from geocam_gui.core import paths, runs
from geocam_gui.core.data.datasets import DatasetIndex, open_data
from geocam_gui.core.data.sample_table import table_for
from geocam_gui.core.device import describe_device, resolve_device
from geocam_gui.core.models import MODEL_LABELS, MODEL_NAMES
from geocam_gui.core.train.config import DEMO_ORDER, demo_config
from geocam_gui.core.workspace import Workspace, default_run_dir
from geocam_gui.ui import dialogs, window_settings
from geocam_gui.ui.analysis_panel import AnalysisPanel
from geocam_gui.ui.cam_viewer import CamViewer
from geocam_gui.ui.compute import Predictions
from geocam_gui.ui.dataset_browser import DatasetBrowser, dataset_title
from geocam_gui.ui.tasks import TaskRunner
from geocam_gui.ui.runs_dialog import manage_runs
from geocam_gui.ui.training_panel import TrainingPanel
from geocam_gui.ui.units_panel import UnitsPanel
from geocam_gui.ui.workers import TaskWorker

log = logging.getLogger(__name__)


class MainWindow(QMainWindow):
    """The explorer. ``checkpoint_dir``: where training runs are written and found."""

    datasetOpened = Signal(object)
    idleChanged = Signal()

    def __init__(self, checkpoint_dir: str | Path | None = None, device: str = "auto", parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("GeoCAM")
        self.setObjectName("MainWindow")
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else paths.default_checkpoint_dir()
        self.workspace = Workspace(self.checkpoint_dir)
        self.auto_train_missing = False
        self.confirm_close = True
        self.tasks = TaskRunner(self, lambda msg: self.show_error("GeoCAM", msg), self.show_message)
        self.tasks.idleChanged.connect(self.idleChanged)
        self._trained_in_run: set[str] = set()  # models with a new best checkpoint this run

        self.device = resolve_device(device)
        self.viewer = CamViewer(self, device=str(self.device) if self.device.type != "mps" else "cpu",
                                workspace=self.workspace)
        self.setCentralWidget(self.viewer)
        self.predictions = Predictions(self.viewer.bridge, self)

        self.browser = DatasetBrowser()
        self.browser.attach(self.workspace)
        self.browser_dock = self._dock("Dataset", "datasetDock", self.browser, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.training = TrainingPanel()
        self.analysis = AnalysisPanel(bridge=self.viewer.bridge)  # its model work runs in the viewer's compute process
        self.analysis.attach(self.workspace)
        self.units = UnitsPanel(bridge=self.viewer.bridge)
        self.units.attach(self.workspace)
        self.bottom_tabs = QTabWidget()
        for panel, title in ((self.training, "Training"), (self.analysis, "Analysis"), (self.units, "Units")):
            self.bottom_tabs.addTab(panel, title)
        self.training_dock = self._dock("Training", "trainingDock", self.bottom_tabs,
                                        Qt.DockWidgetArea.BottomDockWidgetArea)
        self.resizeDocks([self.browser_dock], [360], Qt.Orientation.Horizontal)
        self.resizeDocks([self.training_dock], [300], Qt.Orientation.Vertical)

        self.status_label, self.device_label = QLabel(), QLabel(f"device: {describe_device(self.device)}")
        self.training_label = self.training.state_label  # the run's state while one goes on
        self.statusBar().addWidget(self.status_label, 1)
        self.statusBar().addPermanentWidget(self.training_label)
        self.statusBar().addPermanentWidget(self.device_label)
        self.device_label.setContentsMargins(16, 0, 4, 0)  # apart from the run's state beside it

        self._build_menus()
        self._wire()
        self._restore_settings()
        self.show_message("Open a dataset (File ▸ Open dataset…) or the demo (File ▸ Open demo dataset).")

    @property
    def index(self) -> DatasetIndex | None:
        """The open dataset (the workspace's)."""
        return self.workspace.index

    @property
    def run_dir(self) -> Path | None:
        """Where the runs on the open dataset live (the workspace's)."""
        return self.workspace.run_dir

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
        self.runs_action = self._action(file_menu, "Manage &runs…", lambda: manage_runs(self), None,
                                        "The training runs on disk: size, accuracy, prune or delete")
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
        self._action(help_menu, "&About GeoCAM", lambda: dialogs.show_about(self, self.device))
        self._action(help_menu, "Show &log file", lambda: dialogs.show_log_location(self))

    def _wire(self) -> None:
        self.browser.sampleSelected.connect(self._on_sample)
        self.browser.dropped.connect(lambda folders: self.open_dataset(folders))
        self.browser.auditRequested.connect(lambda: self.index is not None and dialogs.show_audit(self, self.index))
        self.viewer.trainRequested.connect(self.train_model)
        self.viewer.exportRequested.connect(self.export)
        self.viewer.statusMessage.connect(self.show_message)
        self.training.statusMessage.connect(self.show_message)
        self.training.epochCheckpoint.connect(self._on_epoch_checkpoint)
        self.training.checkpointReady.connect(self._on_checkpoint_ready)
        self.training.runFinished.connect(self._on_run_finished)
        self.training.runStarted.connect(lambda: self.show_message(self.training.status.text()))
        self.training.runEnded.connect(lambda _state, outcome: self.show_message(outcome))
        self.training.paneNotesChanged.connect(  # panes of models in the run say so
            lambda: [self.viewer.set_training_note(n, self.training.pane_note(n)) for n in MODEL_NAMES])
        self.analysis.sampleRequested.connect(self._show_sample_path)
        self.analysis.statusMessage.connect(self.show_message)
        self.units.sample_provider = self.viewer.current_sample
        self.units.unitMapReady.connect(self.viewer.show_map)
        self.units.cam_button.clicked.connect(lambda: self.viewer.show_cam())
        self.units.statusMessage.connect(self.show_message)
        self.predictions.ready.connect(self._on_predictions)
        self.predictions.failed.connect(lambda name, msg: self.show_message(f"Predictions of {MODEL_LABELS[name]}: {msg}"))
        self.predictions.busyChanged.connect(self.idleChanged)

    # -- settings -------------------------------------------------------------------------------
    @classmethod
    def reset_settings(cls) -> None:
        """Forget window geometry, dock layout and recent datasets (``--reset-settings``)."""
        window_settings.reset()

    def _restore_settings(self) -> None:
        self.restored_geometry = window_settings.restore(self)
        self._refresh_recent()

    def save_settings(self) -> None:
        window_settings.save(self)

    def reset_layout(self) -> None:
        for dock in (self.browser_dock, self.training_dock):
            dock.setFloating(False)
            dock.show()
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.browser_dock)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.training_dock)
        self.resizeDocks([self.browser_dock], [360], Qt.Orientation.Horizontal)
        self.resizeDocks([self.training_dock], [300], Qt.Orientation.Vertical)
        self.viewer.fit()  # the whole images again, refitted on the resizes that follow

    def _remember_recent(self, spec: list[str]) -> None:
        window_settings.remember_recent(spec)
        self._refresh_recent()

    def _refresh_recent(self) -> None:
        self.recent_menu.clear()
        recent = window_settings.recent()
        for parts in recent:
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
        return self.tasks.run(name, fn, on_done, progress_text=progress_text, on_fail=on_fail)

    def is_idle(self) -> bool:
        """No task, no training, no CAM computation pending (used by --screenshot and tests)."""
        return not (self.tasks.busy() or self.training.is_running() or self.viewer.is_busy() or self.predictions.busy()
                    or self.browser.is_loading())

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
        roots = [str(s) for s in (spec if isinstance(spec, (list, tuple)) else [spec])]

        checkpoint_dir = self.checkpoint_dir

        def work(progress, _cancelled):
            index = open_data(roots[0] if len(roots) == 1 else roots, progress=lambda d, t: progress(d, t))
            table_for(index)  # the browser's columns, built here rather than on the GUI thread
            return index, default_run_dir(index, checkpoint_dir)  # the fingerprint stats every file

        self.show_message(f"Indexing {', '.join(roots)}…")
        self.run_task("index", work, lambda result: self.set_index(result[0], demo=demo, spec=roots, run_dir=result[1]),
                      progress_text="Indexing the dataset…")

    def set_index(self, index: DatasetIndex, *, demo: bool = False, spec: list[str] | None = None,
                  run_dir: Path | None = None) -> None:
        if self.training.is_running():
            self.show_error("GeoCAM", "A training run is in progress; cancel it before opening another dataset.")
            return
        self.workspace.set_index(index, run_dir)  # the browser and the analysis follow
        self.viewer.set_classes(index.classes)
        self.training.set_dataset(index, self.run_dir)
        self.setWindowTitle(f"GeoCAM - {dataset_title(index)}")
        if spec:
            self._remember_recent(spec)
        n_bad = len(index.bad_files)
        self.show_message(
            f"{len(index.samples)} images in {len(index.classes)} classes ({index.layout} layout)"
            + (f"; {n_bad} unreadable file(s) skipped" if n_bad else "")
        )
        found = self.load_run_checkpoints(self.run_dir)
        self.browser.select_first_of_split("test")  # once the browser has taken the index
        missing = [m for m in DEMO_ORDER if m not in found]
        if demo and self.auto_train_missing and missing:
            self.show_message(f"No demo models yet: training {', '.join(MODEL_LABELS[m] for m in missing)}…")
            self.training.start(configs=self.demo_configs(missing))
        self.datasetOpened.emit(index)
        self.idleChanged.emit()

    def demo_configs(self, models: list[str]) -> list:
        """Short runs that fill the three panes in a few CPU minutes."""
        return [demo_config(m, self.device.type if self.device.type != "cuda" else str(self.device))
                for m in models]

    def _show_sample_path(self, path: str) -> None:
        """A patch of the Analysis tab was clicked: select its image in the browser."""
        if not self.browser.select_path(path):
            self.show_message(f"{path} is not in the open dataset.")

    def _on_sample(self, sample) -> None:
        if sample is None:
            self.viewer.set_sample(None)
            return
        self.viewer.set_sample(sample.path, sample.label)
        self.show_message(f"{sample.path}  ·  class {sample.label}  ·  split {sample.split}  ·  group {sample.group}")

    # -- checkpoints ------------------------------------------------------------------------------
    def load_run_checkpoints(self, folder: Path) -> dict[str, str]:
        """Make the newest best checkpoint of each model below ``folder`` active (the workspace
        decides which, ``core.runs.reopen``); returns model -> path of those that can be used."""
        found = {}
        for name, entry in self.workspace.reopen(folder).items():
            if entry.path is None:
                if not entry.meta:  # damaged, not merely other classes
                    self.show_message(f"Skipped checkpoint {entry.source}: {entry.error}")
                continue
            found[name] = str(entry.path)
            self.training.show_checkpoint_metrics(name, entry.meta, str(entry.path))
            self.training.show_history(name, self.workspace.history(name))
            self.update_predictions(name, str(entry.path))
        return found

    def choose_checkpoints(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of checkpoints", str(self.checkpoint_dir))
        if folder:
            found = self.load_run_checkpoints(Path(folder))
            self.show_message(f"Loaded {len(found)} checkpoint(s) from {folder}." if found
                              else f"No checkpoints for this dataset's classes in {folder}.")

    def update_predictions(self, name: str, checkpoint: str) -> None:
        """Predict every image with a checkpoint, for the browser's columns and filters, in the
        compute process (a newer prediction of the same model replaces one still running)."""
        if self.index is not None:
            self.predictions.request(name, checkpoint, self.index)

    def _on_predictions(self, name: str, index, probs) -> None:
        if self.index is index:
            self.browser.set_predictions(name, probs)

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
        self.workspace.set_checkpoint(name, path)  # the user sees what the model learns to look at

    def _on_checkpoint_ready(self, name: str, path: str) -> None:
        self._trained_in_run.add(name)
        self.workspace.set_checkpoint(name, path)

    def _on_run_finished(self, ok: bool) -> None:
        # Only the models this run wrote a best checkpoint for: the others are unchanged,
        # and re-predicting the whole dataset for them would be work done twice.
        for name, path in runs.newest_best(self.run_dir, self._trained_in_run).items():
            self.workspace.set_checkpoint(name, str(path))
            self.update_predictions(name, str(path))
        self._trained_in_run.clear()
        self.idleChanged.emit()

    # -- export ----------------------------------------------------------------------------
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
        ExportDialog(
            self,
            checkpoints=self.workspace.checkpoints,
            images=images,
            batch_samples=batch,
            class_choice=self.viewer.class_choice(),
            method=self.viewer.method.currentData() or "gradcam",
            cmap=self.viewer.cmap.currentData() or "jet",
            opacity=self.viewer.opacity.value() / 100, scale=self.viewer.scale_mode(),
            reference_images=self.viewer.references.sample(self.index)[1],
        ).exec()

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
        self.tasks.cancel_and_wait(60000)
        QApplication.processEvents()
        self.analysis.shutdown()
        self.units.shutdown()
        self.predictions.cancel_all()
        self.viewer.shutdown()
        self.browser.shutdown()
