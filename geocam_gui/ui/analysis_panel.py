"""The Analysis tab: measured interpretability of the loaded models, side by side.

Thin by design: ``core.analysis.run_analysis`` computes everything in the compute process (kind
``analyze`` of ``core.analysis.jobs``, on the ``analysis`` lane: progress bar, Cancel; the window's
process builds no model), ``core.analysis.report.write_report`` draws the plots into the cache
there, and this panel shows the report's tables (``QTableWidget``), the plot PNGs and the mosaics of
discriminative elements. Clicking a patch of a mosaic emits ``sampleRequested(image_path)``,
which the window connects to the dataset browser.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from geocam_gui.core.data.datasets import DatasetIndex
from geocam_gui.core.explain.cam import METHOD_LABELS, METHODS
from geocam_gui.core.models import MODEL_LABELS, MODEL_NAMES
from geocam_gui.ui.analysis_views import MosaicView, PlotView, scroll as _scroll
from geocam_gui.ui.compute import ComputeBridge, LaneJob, shared_bridge

SPLITS = ("test", "val", "train")
RESULTS_SHARE = 0.55  # of the window's height the Analysis dock takes when results arrive


class AnalysisPanel(QWidget):
    """Run ``core.analysis`` on the loaded checkpoints and show the results.

    ``set_context(index, {model_name: checkpoint_path_or_None})`` tells the panel what to analyse.
    Signals: ``sampleRequested(path)`` when a mosaic patch is clicked, ``analysisFinished(report)``,
    ``statusMessage(text)``.
    """

    sampleRequested = Signal(str)
    analysisFinished = Signal(object)
    statusMessage = Signal(str)

    def __init__(self, parent: QWidget | None = None, bridge: ComputeBridge | None = None):
        super().__init__(parent)
        self._index = None
        self._checkpoints: dict[str, str | None] = {}
        self._job = LaneJob(bridge if bridge is not None else shared_bridge("cpu"), "analysis", self)
        self._job.progress.connect(self._on_progress)
        self._job.returned.connect(self._on_finished)
        self._job.errored.connect(self._on_failed)
        self._job.cancelled.connect(lambda: self._set_status("Analysis cancelled."))
        self._job.finished.connect(self._on_done)
        self.report: dict | None = None
        self.files: dict[str, Path] = {}
        self._build()
        self._update_buttons()

    # ------------------------------------------------------------------ construction
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        bar = QHBoxLayout()
        self.models = QListWidget()
        self.models.setFlow(QListWidget.Flow.LeftToRight)
        self.models.setWrapping(False)
        self.models.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.models.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.models.setFixedHeight(self.fontMetrics().height() + 14)  # one line: the results need the room
        self.models.itemChanged.connect(lambda *_: self._update_buttons())
        self.split = QComboBox()
        self.split.addItems(SPLITS)
        self.split.currentTextChanged.connect(lambda *_: self._hint())
        self.method = QComboBox()
        for m in METHODS:
            self.method.addItem(METHOD_LABELS.get(m, m), m)
        self.limit = QSpinBox()
        self.limit.setRange(0, 1_000_000)
        self.limit.setSpecialValueText("all")
        self.limit.setSingleStep(50)
        self.limit.setToolTip("Analyse only the first N images of the split (classes interleaved); 0 = all")
        self.run_button = QPushButton("Run analysis")
        self.run_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.export_button = QPushButton("Export report…")
        self.export_button.clicked.connect(self._choose_export)
        for text, w in (("Models", self.models), ("Split", self.split), ("Method", self.method), ("Images", self.limit)):
            bar.addWidget(QLabel(text))
            bar.addWidget(w, 2 if w is self.models else 0)
        for b in (self.run_button, self.cancel_button, self.export_button):
            bar.addWidget(b)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(4)
        layout.addLayout(bar)
        row = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.setMaximumHeight(self.fontMetrics().height() + 6)
        self.status = QLabel("Load a dataset and trained models, then run the analysis.")
        self._status_hint = True  # the line gives advice (it follows the context) until something is said
        self.status.setWordWrap(False)
        self.status.setMinimumWidth(80)
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        row.addWidget(self.progress, 1)
        row.addWidget(self.status, 2)
        layout.addLayout(row)

        self.tabs = QTabWidget()
        self.tables_box = QWidget()
        self.tables_layout = QVBoxLayout(self.tables_box)
        self.tables_layout.addStretch(1)
        self.tabs.addTab(_scroll(self.tables_box), "Tables")
        self.plots_box = QWidget()
        self.plots_layout = QVBoxLayout(self.plots_box)
        self.plots_layout.addStretch(1)
        self.plots_area = _scroll(self.plots_box)
        self.plots_area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.tabs.addTab(self.plots_area, "Plots")
        elements = QWidget()
        el = QVBoxLayout(elements)
        pick = QHBoxLayout()
        pick.addWidget(QLabel("Discriminative elements of"))
        self.mosaic_choice = QComboBox()
        self.mosaic_choice.currentIndexChanged.connect(self._show_mosaic)
        pick.addWidget(self.mosaic_choice, 1)
        el.addLayout(pick)
        self.mosaic = MosaicView()
        self.mosaic.patchClicked.connect(self.sampleRequested)
        el.addWidget(_scroll(self.mosaic), 1)
        el.addWidget(QLabel("Click a patch to open its image in the browser."))
        self.tabs.addTab(elements, "Elements")
        layout.addWidget(self.tabs, 1)
        self.table_widgets: dict[str, QTableWidget] = {}
        self.plot_labels: dict[str, QLabel] = {}
        self.placeholder = QLabel("No results yet: tick the models, choose the split and run the analysis.")
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setStyleSheet("color:#5f6b7a")
        self.tables_layout.insertWidget(0, self.placeholder)

    # ------------------------------------------------------------------ context
    def attach(self, workspace) -> None:
        """Follow a ``core.workspace.Workspace``: its index and active checkpoints."""
        workspace.follow(self.set_context)

    def set_context(self, index: DatasetIndex | None, checkpoints: dict[str, str | None]) -> None:
        """The data to analyse and the checkpoint of each model (None: not trained yet).
        A model the user unticked stays unticked while the dataset stays the same."""
        unticked = set()
        if index is not self._index:  # another dataset: the old results say nothing about it
            was_running = self.is_running()
            self.cancel()  # answered at once: the old dataset's reply is dropped
            if self.report is not None or was_running:
                self.clear_results()
                self._set_status("Dataset changed: run the analysis again for its results."
                                 if index is not None else "Load a dataset and trained models, then run the analysis.")
        if index is self._index:
            for i in range(self.models.count()):
                item = self.models.item(i)
                if item.checkState() == Qt.CheckState.Unchecked and item.flags() & Qt.ItemFlag.ItemIsUserCheckable:
                    unticked.add(item.data(Qt.ItemDataRole.UserRole))
        self._index = index
        self._checkpoints = dict(checkpoints)
        self.models.blockSignals(True)
        order = [n for n in MODEL_NAMES if n in checkpoints] + [n for n in checkpoints if n not in MODEL_NAMES]
        items = [self.models.item(i) for i in range(self.models.count())]
        if [it.data(Qt.ItemDataRole.UserRole) for it in items] != order:
            # Items are updated in place when the models are the same (the usual case, several
            # times per dataset change): clear() while Qt still paints the list crashed once
            # (SIGSEGV in CI, 2026-12-01).
            while self.models.count():
                self.models.takeItem(0)
            items = []
            for name in order:
                items.append(QListWidgetItem())
                items[-1].setData(Qt.ItemDataRole.UserRole, name)
                self.models.addItem(items[-1])
        for item, name in zip(items, order):
            path = checkpoints[name]
            item.setText(MODEL_LABELS.get(name, name) + ("" if path else " (not trained)"))
            if path:
                item.setFlags(Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled)
                item.setCheckState(Qt.CheckState.Unchecked if name in unticked else Qt.CheckState.Checked)
                item.setToolTip(str(path))
            else:
                item.setFlags(Qt.ItemFlag.NoItemFlags)
                item.setData(Qt.ItemDataRole.CheckStateRole, None)
                item.setToolTip("")
        self.models.blockSignals(False)
        self._update_buttons()

    def selected_checkpoints(self) -> list[str]:
        """Checkpoint paths of the ticked models, in the list's order."""
        out = []
        for i in range(self.models.count()):
            item = self.models.item(i)
            name = item.data(Qt.ItemDataRole.UserRole)
            if item.checkState() == Qt.CheckState.Checked and self._checkpoints.get(name):
                out.append(str(self._checkpoints[name]))
        return out

    def is_running(self) -> bool:
        return self._job.busy()

    def _update_buttons(self) -> None:
        running = self.is_running()
        self.run_button.setEnabled(not running and self._index is not None and bool(self.selected_checkpoints()))
        self.cancel_button.setEnabled(running)
        self.export_button.setEnabled(not running and self.report is not None)
        for w in (self.models, self.split, self.method, self.limit):
            w.setEnabled(not running)
        self._hint()

    def _hint(self) -> None:
        """While the status line gives advice, keep it true to the data and models loaded now."""
        if not self._status_hint or self.is_running():
            return
        ticked = len(self.selected_checkpoints())
        if self._index is None:
            text = "Load a dataset and trained models, then run the analysis."
        elif not any(self._checkpoints.values()):
            text = "No trained model for this dataset yet: train one in the Training tab, then run the analysis."
        elif not ticked:
            text = "Tick at least one trained model to analyse."
        else:
            text = (f"Ready: {ticked} model{'s' if ticked > 1 else ''} ticked; "
                    f"“Run analysis” measures them on the {self.split.currentText()} split.")
        self.status.setText(text)

    # ------------------------------------------------------------------ running
    def start(self) -> bool:
        """Run the analysis with the chosen settings; False when nothing can be run now."""
        if self.is_running() or self._index is None:
            return False
        checkpoints = self.selected_checkpoints()
        if not checkpoints:
            self._set_status("Tick at least one trained model to analyse.")
            return False
        index, split, method = self._index, self.split.currentText(), self.method.currentData()
        limit = self.limit.value() or None
        if not index.split(split):
            self._set_status(f"The {split} split of this data has no images.")
            return False

        self.progress.setRange(0, 0)
        self._set_status(f"Analysing {len(checkpoints)} model(s) on the {split} split…")
        self._job.start("analyze", checkpoints=checkpoints, index=index, split=split, method=method, limit=limit)
        self._update_buttons()
        return True

    def cancel(self) -> None:
        """Stop the running analysis (the compute process stops it at its next batch)."""
        self._job.cancel()

    def shutdown(self, ms: int = 60000) -> bool:
        """Cancel a running analysis (the window calls this on close); nothing to wait for here."""
        self._job.cancel()
        return True

    def _on_progress(self, done: int, total: int, text: str) -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)
        if text:
            self.status.setText(text)

    def _on_finished(self, result) -> None:
        report, files = result
        self.show_report(report, files)
        n = len(report["models"])
        cached = sum(1 for m in report["models"] if m.get("cached"))
        self._set_status(f"Analysed {n} model(s) on {report['data']['images']} images"
                         + (f" ({cached} from the cache)." if cached else "."))
        self.analysisFinished.emit(report)

    def _on_failed(self, message: str) -> None:
        self._set_status(f"Analysis failed: {message}")

    def _on_done(self) -> None:
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if self.report else 0)
        self._update_buttons()

    def _set_status(self, text: str) -> None:
        self._status_hint = False
        self.status.setText(text)
        self.statusMessage.emit(text)

    # ------------------------------------------------------------------ showing
    def show_report(self, report: dict, files: dict) -> None:
        """Fill the tables, plots and mosaics from a report and its written files."""
        from geocam_gui.core.analysis.report import display_name, tables

        self.clear_results()
        self.report, self.files = report, {k: Path(v) for k, v in files.items()}
        self.placeholder.hide()
        for name, t in tables(report).items():
            table = QTableWidget(len(t["rows"]), len(t["columns"]))
            table.setHorizontalHeaderLabels(t["columns"])
            for r, row in enumerate(t["rows"]):
                for c, cell in enumerate(row):
                    item = QTableWidgetItem(str(cell))
                    item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
                    table.setItem(r, c, item)
            table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
            table.verticalHeader().setVisible(False)
            table.setMinimumHeight(min(260, 30 + 26 * max(1, len(t["rows"]))))
            title = QLabel(f"<b>{t['title']}</b>")
            title.setWordWrap(True)
            self.tables_layout.insertWidget(self.tables_layout.count() - 1, title)
            self.tables_layout.insertWidget(self.tables_layout.count() - 1, table)
            self.table_widgets[name] = table
            self.plot_labels[f"_title_{name}"] = title
        from geocam_gui.core.analysis.report import PLOTS

        for name in PLOTS:
            if name in self.files and self.files[name].is_file():
                label = PlotView(QPixmap(str(self.files[name])))
                self.plots_layout.insertWidget(self.plots_layout.count() - 1, label)
                self.plot_labels[name] = label
        self.mosaic_choice.blockSignals(True)
        self.mosaic_choice.clear()
        for m in report["models"]:
            for cls, e in m.get("elements", {}).items():
                text = f"{display_name(m)}: {cls} ({len(e['clusters'])} clusters)"
                self.mosaic_choice.addItem(text, (m["key"], cls))
        self.mosaic_choice.blockSignals(False)
        self._show_mosaic()
        self._update_buttons()
        self._make_room()

    def clear_results(self) -> None:
        """Forget the shown report: tables, plots and mosaics (e.g. when another dataset opens)."""
        for w in list(self.table_widgets.values()) + list(self.plot_labels.values()):
            w.setParent(None)
            w.deleteLater()
        self.table_widgets.clear()
        self.plot_labels.clear()
        self.report, self.files = None, {}
        self.mosaic_choice.blockSignals(True)
        self.mosaic_choice.clear()
        self.mosaic_choice.blockSignals(False)
        self.mosaic.set_mosaic(None, [])
        self.mosaic.setText("")
        self.placeholder.show()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self._update_buttons()

    def _make_room(self) -> None:
        """Results need height: when the panel sits in a dock of a main window and is shorter than
        ``RESULTS_SHARE`` of the window, grow the dock to it (the user can drag it back)."""
        dock, window = self.parentWidget(), None
        while dock is not None and not isinstance(dock, QDockWidget):
            dock = dock.parentWidget()
        if dock is not None and isinstance(dock.parentWidget(), QMainWindow) and not dock.isFloating():
            window = dock.parentWidget()
        if window is None or window.dockWidgetArea(dock) not in (Qt.DockWidgetArea.BottomDockWidgetArea,
                                                                  Qt.DockWidgetArea.TopDockWidgetArea):
            return
        want = int(window.height() * RESULTS_SHARE)
        if dock.height() < want:
            window.resizeDocks([dock], [want], Qt.Orientation.Vertical)

    def _show_mosaic(self, *_):
        data = self.mosaic_choice.currentData()
        if not data or self.report is None:
            self.mosaic.set_mosaic(None, [])
            return
        key, cls = data
        model = next(m for m in self.report["models"] if m["key"] == key)
        e = model["elements"][cls]
        self.mosaic.set_mosaic(e.get("mosaic"), e["clusters"])

    def export_report(self, folder: str | Path) -> dict:
        """Write the shown report (JSON, HTML, plots, mosaics) into ``folder``."""
        from geocam_gui.core.analysis.report import write_report

        if self.report is None:
            raise RuntimeError("There is no report to export yet.")
        files = write_report(self.report, folder)
        self._set_status(f"Report written to {files['html']}.")
        return files

    def _choose_export(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export the analysis report into a folder")
        if folder:
            try:
                self.export_report(folder)
            except OSError as exc:
                self._set_status(f"Could not write the report: {exc}")
