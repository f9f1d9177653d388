"""What the training panel shows of runs: live loss/accuracy curves and the test results table."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QMargins, Qt
from PySide6.QtWidgets import QHBoxLayout, QHeaderView, QTableWidget, QTableWidgetItem, QWidget

from geocam_gui.core.models import MODEL_LABELS
from geocam_gui.ui.confusion_view import ConfusionMatrix

MODEL_COLORS = {"shallow": "#e67e22", "vgg11": "#2f6fde", "resnet18": "#1c8a6a"}



def fmt_duration(seconds: float | None) -> str:
    """A duration or ETA for people: "42 s", "3 min 07 s", "1 h 05 min"; a dash when unknown."""
    if seconds is None or not np.isfinite(seconds):
        return "–"
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds} s"


def fmt_about(seconds: float) -> str:
    """A rough time left for the status bar, as precise as an estimate deserves: "under a
    minute", "about 9 min", "about 1.5 h"."""
    if seconds < 60:
        return "under a minute"
    if seconds < 90 * 60:
        return f"about {max(1, round(seconds / 60))} min"
    return f"about {seconds / 3600:.1f} h"


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
        self.loss = pg.PlotWidget(axisItems={"bottom": EpochAxis("bottom")})
        self.acc = pg.PlotWidget(axisItems={"bottom": EpochAxis("bottom")})
        self.acc.setYRange(0, 100)  # percent, as the panes and the results table show accuracy
        for plot, title in ((self.loss, "Loss"), (self.acc, "Accuracy (%)")):
            plot.setBackground("w")
            # dark text: pyqtgraph's default foreground is a light grey meant for a black background
            plot.setTitle(f"{title}  (solid: validation, dashed: training)", color="#33383f")
            plot.showGrid(x=True, y=True, alpha=0.25)
            # Two levels of grid lines, not pyqtgraph's three: the faint third level cost ~5 ms of
            # every repaint of each plot (measured), on the GUI thread at each epoch's end.
            plot.getAxis("left").setStyle(maxTickLevel=1)
            plot.getAxis("left").setWidth(40)  # fixed: new tick labels do not re-lay the plot out
            plot.setLabel("bottom", "epoch")
            # Top right for the loss (it falls), bottom right for the accuracy (it rises), where
            # the curves seldom are.
            plot.addLegend(offset=(-5, 5) if plot is self.loss else (-5, -5), labelTextSize="8pt",
                           labelTextColor="#33383f")
            plot.setMenuEnabled(False)
            plot.setMinimumHeight(90)
            layout.addWidget(plot, 1)
        self._data: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
        self._items: dict[tuple[str, str, str], pg.PlotDataItem] = {}
        # Every model's curves (and its legend entry: the models' colour key) exist from the
        # start, empty: created at the first epoch instead, they cost that epoch end ~30 ms of
        # layout and first paint on the GUI thread while training loads the CPU.
        for model in MODEL_LABELS:
            for metric in ("loss", "acc"):
                for part in ("val", "train"):
                    self._item((model, metric, part))

    def clear(self) -> None:
        for key in list(self._data):
            self._items[key].setData([], [])
        self._data.clear()

    def _item(self, key: tuple[str, str, str]) -> pg.PlotDataItem:
        item = self._items.get(key)
        if item is None:
            model, metric, part = key
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
        return item

    def add(self, model: str, metric: str, part: str, x: float, y: float) -> None:
        if y is None or not np.isfinite(y):
            return
        key = (model, metric, part)
        self._data.setdefault(key, []).append((x, y))
        xs, ys = zip(*self._data[key])
        self._item(key).setData(np.asarray(xs), np.asarray(ys) * (100.0 if metric == "acc" else 1.0))

    def remove_model(self, model: str) -> None:
        """Forget (and stop drawing) every curve of ``model``."""
        for key in [k for k in self._data if k[0] == model]:
            self._data.pop(key)
            self._items[key].setData([], [])

    def series(self, model: str, metric: str, part: str) -> list[tuple[float, float]]:
        return list(self._data.get((model, metric, part), []))


class ResultsTable(QTableWidget):
    """One row per model: test accuracy, per-class precision/recall, confusion, checkpoint."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(0, 5, parent)
        self.setHorizontalHeaderLabels(["Model", "Test accuracy", "Per class (precision / recall)",
                                        "Confusion (rows = true)", "Checkpoint"])
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.horizontalHeader().setStretchLastSection(True)
        self.verticalHeader().setVisible(False)
        self.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)

    def remove_model(self, name: str) -> None:
        """Drop ``name``'s row, if any."""
        for r in range(self.rowCount()):
            if self.item(r, 0).text() == MODEL_LABELS[name]:
                self.removeRow(r)
                break

    def add_row(self, name: str, metrics: dict, checkpoint, classes: list[str]) -> None:
        """A row from test metrics (``metrics["classes"]`` wins over ``classes``), placed in the
        panes' order (Shallow CNN, VGG11, ResNet18) whatever order the models finish or reload in."""
        rank = {label: i for i, label in enumerate(MODEL_LABELS.values())}
        mine = rank.get(MODEL_LABELS.get(name, name), len(rank))
        row = sum(1 for r in range(self.rowCount()) if rank.get(self.item(r, 0).text(), len(rank)) <= mine)
        self.insertRow(row)
        acc = metrics.get("accuracy")
        classes = metrics.get("classes") or classes
        per = metrics.get("per_class") or {}
        per_text = "  ".join(
            f"{c}: {_pct(v.get('precision'))} / {_pct(v.get('recall'))}" for c, v in per.items()
        ) if isinstance(per, dict) else str(per)
        conf = metrics.get("confusion")
        matrix = None
        if isinstance(conf, list) and conf and all(isinstance(r, list) and len(r) == len(conf) for r in conf):
            try:
                matrix = ConfusionMatrix(conf, list(classes or []))
            except (TypeError, ValueError):
                matrix = None
        cells = [MODEL_LABELS[name], f"{acc * 100:.1f} %" if acc is not None else "–", per_text,
                 "" if matrix is not None else ("–" if not conf else str(conf)), str(checkpoint or "")]
        for col, text in enumerate(cells):
            item = QTableWidgetItem(text)
            item.setToolTip(text)
            self.setItem(row, col, item)
        if matrix is not None:  # drawn as a small matrix, not "[a, b] 7 0 | 7 0"
            hint = matrix.sizeHint()
            self.item(row, 3).setToolTip(matrix.toolTip())
            self.item(row, 3).setSizeHint(hint.grownBy(QMargins(4, 2, 4, 2)))  # the column fits it
            self.setCellWidget(row, 3, matrix)
            self.setRowHeight(row, max(self.rowHeight(row), hint.height() + 4))
