"""Runs side by side: the validation accuracy and loss of each (run, model) overlaid, one colour
each (training dashed), and their settings in columns with the rows that differ highlighted.
The data are ``core.run_compare``'s."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from geocam_gui.core import run_compare as rc
from geocam_gui.ui.training_views import EpochAxis

PALETTE = ("#2f6fde", "#e67e22", "#1c8a6a", "#c0392b", "#8e44ad", "#7f8c8d", "#d4ac0d", "#16a085")
DIFF_BRUSH = QBrush(QColor("#fff0c2"))


def color_of(i: int) -> str:
    return PALETTE[i] if i < len(PALETTE) else pg.intColor(i, hues=max(9, i + 1)).name()


class CompareDialog(QDialog):
    """Compare ``series`` (``core.run_compare.ModelSeries``, two or more)."""

    def __init__(self, series: list[rc.ModelSeries], parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Compare runs")
        self.series = list(series)
        self.differing = set(rc.differing(self.series))

        self.acc = self._plot("Validation accuracy  (dashed: training)")
        self.acc.setYRange(0, 1.0)
        self.loss = self._plot("Validation loss  (dashed: training)")
        self.items: dict[tuple[str, str], pg.PlotDataItem] = {}
        for i, s in enumerate(self.series):
            color = color_of(i)
            for plot, metric in ((self.acc, "acc"), (self.loss, "loss")):
                for part, style in (("val", Qt.PenStyle.SolidLine), ("train", Qt.PenStyle.DashLine)):
                    points = s.curves.get(f"{part}_{metric}") or []
                    if not points:
                        continue
                    xs, ys = (np.asarray(v, dtype=float) for v in zip(*points))
                    item = plot.plot(xs, ys, pen=pg.mkPen(color, width=2, style=style),
                                     name=s.label if part == "val" else None,
                                     symbol="o" if part == "val" else None, symbolSize=5, symbolBrush=color)
                    self.items[(s.label, f"{part}_{metric}")] = item
        plots = QWidget()
        pl = QHBoxLayout(plots)
        pl.setContentsMargins(0, 0, 0, 0)
        pl.addWidget(self.acc, 1)
        pl.addWidget(self.loss, 1)

        self.table = QTableWidget(0, len(self.series))
        self.table.setHorizontalHeaderLabels([s.label for s in self.series])
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        for i in range(len(self.series)):
            self.table.horizontalHeaderItem(i).setForeground(QBrush(QColor(color_of(i))))
        self.only_diff = QCheckBox("Only the settings that differ")
        self.only_diff.toggled.connect(self._fill_table)
        self._fill_table()

        errors = [f"{s.label}: {s.error}" for s in self.series if s.error]
        n_diff = len(self.differing)
        self.summary = QLabel(
            (f"{n_diff} setting(s) differ (highlighted)." if n_diff else "The settings are the same.")
            + ("  Unreadable: " + "; ".join(errors) if errors else ""))
        self.summary.setWordWrap(True)
        close = QPushButton("Close")
        close.clicked.connect(self.accept)

        lower = QWidget()
        ll = QVBoxLayout(lower)
        ll.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(self.summary, 1)
        row.addWidget(self.only_diff)
        ll.addLayout(row)
        ll.addWidget(self.table, 1)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(plots)
        split.addWidget(lower)
        split.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.addWidget(split, 1)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(close)
        layout.addLayout(buttons)
        self.resize(1100, 760)

    @staticmethod
    def _plot(title: str) -> pg.PlotWidget:
        plot = pg.PlotWidget(title=title, axisItems={"bottom": EpochAxis("bottom")})
        plot.setBackground("w")
        plot.showGrid(x=True, y=True, alpha=0.25)
        plot.setLabel("bottom", "epoch")
        plot.addLegend(offset=(-5, 5), labelTextSize="8pt")
        plot.setMenuEnabled(False)
        plot.setMinimumHeight(180)
        return plot

    def _fill_table(self) -> None:
        keys = rc.all_settings(self.series)
        keys = [k for k in keys if k in self.differing] + [k for k in keys if k not in self.differing]
        if self.only_diff.isChecked():
            keys = [k for k in keys if k in self.differing]
        self.table.setRowCount(len(keys))
        self.table.setVerticalHeaderLabels(keys)
        bold = QFont()
        bold.setBold(True)
        for row, key in enumerate(keys):
            diff = key in self.differing
            if diff:
                self.table.verticalHeaderItem(row).setFont(bold)
            for col, s in enumerate(self.series):
                item = QTableWidgetItem(s.settings.get(key, rc.MISSING))
                item.setToolTip(f"{s.label}: {key} = {item.text()}")
                if diff:
                    item.setBackground(DIFF_BRUSH)
                    item.setFont(bold)
                self.table.setItem(row, col, item)

    def row_of(self, key: str) -> int | None:
        for row in range(self.table.rowCount()):
            if self.table.verticalHeaderItem(row).text() == key:
                return row
        return None
