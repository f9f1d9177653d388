"""File > Manage runs: the runs on disk per dataset (size, date, models, best accuracy), pruned to
their best checkpoints or deleted after a question, or compared: select two runs (or one with
several models) and Compare overlays their curves and sets their settings side by side
(``ui.run_compare``). The work is ``core.run_storage``'s and ``core.run_compare``'s."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from geocam_gui.core import run_compare as rc
from geocam_gui.core import run_storage as rs
from geocam_gui.core.errors import GeoCamError

COLUMNS = ("Run (dataset)", "Size", "Date", "Models: best val / test accuracy")


class RunsDialog(QDialog):
    """Lists the run folders below ``root``; ``busy(path)`` says a run is in use (not touched then)."""

    runsChanged = Signal()

    def __init__(self, root: str | Path, parent=None, *, busy: Callable[[Path], bool] | None = None):
        super().__init__(parent)
        self.setWindowTitle("Manage runs")
        self.root = Path(root)
        self.busy = busy or (lambda path: False)
        self.summaries: list[rs.RunSummary] = []
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.summary_label = QLabel()
        self.keep_best_button = QPushButton("Keep &best only")
        self.keep_best_button.setToolTip("Remove the resume state (last checkpoint and optimiser moments); "
                                         "the viewer still opens best, the run can no longer be resumed")
        self.delete_button = QPushButton("&Delete…")
        self.compare_button = QPushButton("&Compare")
        self.compare_button.setToolTip("The selected runs' curves overlaid and their settings side by side "
                                       "(Ctrl+click to select several runs)")
        self.compare_button.clicked.connect(self.compare)
        refresh = QPushButton("&Refresh")
        close = QPushButton("Close")
        self.keep_best_button.clicked.connect(self.keep_best)
        self.delete_button.clicked.connect(self.delete)
        refresh.clicked.connect(self.refresh)
        close.clicked.connect(self.accept)
        buttons = QHBoxLayout()
        for b in (self.compare_button, self.keep_best_button, self.delete_button, refresh):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(close)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"Training runs in {self.root}:"))
        layout.addWidget(self.table, 1)
        layout.addWidget(self.summary_label)
        layout.addLayout(buttons)
        self.resize(860, 360)
        self.refresh()

    # ---------------------------------------------------------------- listing
    def refresh(self) -> None:
        self.summaries = rs.list_runs(self.root)
        self.table.setRowCount(len(self.summaries))
        for row, s in enumerate(self.summaries):
            values = (s.path.name, rs.human_size(s.size), s.date, rs.models_text(s))
            for col, text in enumerate(values):
                item = QTableWidgetItem(text)
                if col == 1:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                item.setToolTip(str(s.path))
                self.table.setItem(row, col, item)
        total = sum(s.size for s in self.summaries)
        self.summary_label.setText(f"{len(self.summaries)} run(s), {rs.human_size(total)} in all." if self.summaries
                                   else "No training runs yet.")
        if self.summaries:
            self.table.selectRow(0)
        self._update_buttons()

    def selected(self) -> rs.RunSummary | None:
        """The selected run when exactly one is (what Keep best and Delete act on)."""
        rows = self.selected_all()
        return rows[0] if len(rows) == 1 else None

    def selected_all(self) -> list[rs.RunSummary]:
        rows = sorted(i.row() for i in self.table.selectionModel().selectedRows())
        return [self.summaries[r] for r in rows]

    def select_run(self, path: str | Path, *, add: bool = False) -> bool:
        """Select the run at ``path`` (``add``: besides those selected)."""
        from PySide6.QtCore import QItemSelectionModel

        for row, s in enumerate(self.summaries):
            if s.path == Path(path):
                if add:
                    flags = QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
                    self.table.selectionModel().select(self.table.model().index(row, 0), flags)
                else:
                    self.table.selectRow(row)
                return True
        return False

    def _update_buttons(self) -> None:
        s = self.selected()
        chosen = self.selected_all()
        self.compare_button.setEnabled(len(chosen) > 1 or sum(len(r.models) for r in chosen) > 1)
        self.delete_button.setEnabled(s is not None)
        self.keep_best_button.setEnabled(s is not None and any(m.resumable for m in s.models))

    # ---------------------------------------------------------------- actions
    def compare(self) -> None:
        """Open the comparison of every model of the selected runs."""
        from geocam_gui.ui.run_compare import CompareDialog

        series = [m for run in self.selected_all() for m in rc.series_of_run(run.path)]
        if len(series) < 2:
            QMessageBox.information(self, "Compare runs", "Select two runs (Ctrl+click), or a run with "
                                    "several models, to compare them.")
            return
        self.compare_dialog = CompareDialog(series, self)
        self.compare_dialog.exec()

    def _refuse_if_busy(self, s: rs.RunSummary) -> bool:
        if self.busy(s.path):
            QMessageBox.information(self, "Manage runs", f"{s.path.name} is being trained; cancel the run first.")
            return True
        return False

    def keep_best(self) -> None:
        s = self.selected()
        if s is None or self._refuse_if_busy(s):
            return
        files = rs.prunable_files(s.path)
        size = sum(f.stat().st_size for f in files)
        answer = QMessageBox.question(
            self, "Keep best only",
            f"Remove the resume state of {s.path.name} ({len(files)} files, up to {rs.human_size(size)})?\n\n"
            "Each model keeps its best checkpoint and its training curves; the run can no longer be resumed.")
        if answer != QMessageBox.StandardButton.Yes:
            return
        try:
            freed = rs.prune_run(s.path, keep="best")
        except (GeoCamError, OSError) as exc:
            QMessageBox.warning(self, "Keep best only", f"Could not prune {s.path.name}: {exc}")
            return self.refresh()
        self._changed(s.path, f"Freed {rs.human_size(freed)} in {s.path.name}.")

    def delete(self) -> None:
        s = self.selected()
        if s is None or self._refuse_if_busy(s):
            return
        answer = QMessageBox.question(
            self, "Delete run",
            f"Delete {s.path.name} and all its checkpoints ({rs.human_size(s.size)}: {rs.models_text(s)})?\n\n"
            "This cannot be undone.")
        if answer != QMessageBox.StandardButton.Yes:
            return
        try:
            freed = rs.delete_run(s.path)
        except (GeoCamError, OSError) as exc:
            QMessageBox.warning(self, "Delete run", f"Could not delete {s.path.name}: {exc}")
            return self.refresh()
        self._changed(s.path, f"Deleted {s.path.name}; freed {rs.human_size(freed)}.")

    def _changed(self, path: Path, message: str) -> None:
        self.refresh()
        self.select_run(path)
        self.summary_label.setText(message + "  " + self.summary_label.text())
        self.runsChanged.emit()


def manage_runs(window) -> None:
    """Open the dialog for ``window``'s checkpoint folder (a ``MainWindow``): its current run is
    selected and, while it trains, refused; after a change the panes show what is left."""

    def busy(path: Path) -> bool:
        run_dir = window.run_dir
        return window.training.is_running() and run_dir is not None and (
            Path(path) == run_dir or Path(path) in run_dir.parents)

    def changed() -> None:
        if window.index is None or window.run_dir is None:
            return
        found = window.load_run_checkpoints(window.run_dir)
        for name, path in window.workspace.checkpoints.items():
            if name not in found and path and not Path(path).is_file():  # deleted: the pane says so
                window.workspace.set_checkpoint(name, None)

    dialog = RunsDialog(window.checkpoint_dir, window, busy=busy)
    if window.run_dir is not None:
        dialog.select_run(window.run_dir)
    dialog.runsChanged.connect(changed)
    dialog.exec()
