"""The dataset browser: a virtualised thumbnail grid and a table over one item model.

Thumbnails are made off the GUI thread (newest requests first) and cached on disk; the
filters, the sorting and the counts work on the in-memory index and the models' predictions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import (
    QModelIndex,
    QObject,
    QRect,
    QSize,
    Qt,
    Signal,
)
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPen
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListView,
    QStackedWidget,
    QStyle,
    QStyledItemDelegate,
    QTableView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from geocam_gui.core.data.datasets import DatasetIndex
from geocam_gui.core.data.demo import is_demo_dir
from geocam_gui.core.models import MODEL_LABELS, MODEL_NAMES
from geocam_gui.ui.dataset_model import (
    CLASS_COLORS,
    SAMPLE_ROLE,
    SPLIT_COLORS,
    THUMB,
    SampleFilter,
    SampleModel,
    ThumbnailLoader,
)


def dataset_title(index: DatasetIndex) -> str:
    """A short name for a dataset: the demo says so, other sets show their folder names."""
    names = []
    for r in index.roots:
        p = Path(r)
        names.append("Demo: Pittsburgh vs Tokyo" if is_demo_dir(p) else (p.name or str(p)))
    return ", ".join(names)


class ThumbDelegate(QStyledItemDelegate):
    """Paints a thumbnail with its file name, a class badge and a split badge."""

    def __init__(self, model: SampleModel, parent: QObject | None = None):
        super().__init__(parent)
        self._model = model

    def sizeHint(self, option, index) -> QSize:  # noqa: N802
        return QSize(THUMB + 12, THUMB + 30)

    def paint(self, painter: QPainter, option, index) -> None:
        painter.save()
        r = option.rect.adjusted(3, 3, -3, -3)
        if option.state & QStyle.StateFlag.State_Selected:
            painter.fillRect(option.rect, option.palette.highlight())
        img = index.data(Qt.ItemDataRole.DecorationRole)
        box = QRect(r.x() + (r.width() - THUMB) // 2, r.y(), THUMB, THUMB)
        if isinstance(img, QImage) and not img.isNull():
            scaled = img.scaled(THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
            painter.drawImage(box.x() + (THUMB - scaled.width()) // 2, box.y() + (THUMB - scaled.height()) // 2, scaled)
        else:
            painter.fillRect(box, QColor("#e3e6ea"))
        s = index.data(SAMPLE_ROLE)
        if s is not None:
            classes = self._model.classes
            color = CLASS_COLORS[classes.index(s.label) % len(CLASS_COLORS)] if s.label in classes else "#7f8c8d"
            f = QFont(option.font)
            f.setPointSizeF(max(6.5, f.pointSizeF() * 0.8))
            painter.setFont(f)
            self._badge(painter, box.x() + 2, box.y() + 2, s.label, QColor(color))
            if s.split:
                self._badge(painter, box.x() + 2, box.bottom() - 15, s.split, QColor(SPLIT_COLORS.get(s.split, "#5f6b7a")))
            wrong = [n for n in MODEL_NAMES if (p := self._model.prediction(index.row(), n)) is not None
                     and classes[p[0]] != s.label]
            if wrong:
                self._badge(painter, box.right() - 16, box.y() + 2, "✗", QColor("#c0392b"))
            painter.setPen(option.palette.color(option.palette.ColorRole.Text)
                           if not option.state & QStyle.StateFlag.State_Selected
                           else option.palette.color(option.palette.ColorRole.HighlightedText))
            text_rect = QRect(r.x(), box.bottom() + 3, r.width(), 18)
            name = painter.fontMetrics().elidedText(Path(s.path).name, Qt.TextElideMode.ElideMiddle, r.width())
            painter.drawText(text_rect, Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop, name)
        painter.restore()

    @staticmethod
    def _badge(painter: QPainter, x: int, y: int, text: str, color: QColor) -> None:
        fm = painter.fontMetrics()
        w = fm.horizontalAdvance(text) + 8
        rect = QRect(x, y, w, fm.height() + 1)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(color)
        painter.drawRoundedRect(rect, 4, 4)
        painter.setPen(QPen(QColor("white")))
        painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, text)


class DatasetBrowser(QWidget):
    """Thumbnails or a table of the open dataset, filters, counts and the audit banner."""

    sampleSelected = Signal(object)  # Sample or None
    openRequested = Signal()
    auditRequested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.index = None
        self.thumbs = ThumbnailLoader(parent=self)
        self.model = SampleModel(self.thumbs, self)
        self.proxy = SampleFilter(self)
        self.proxy.setSourceModel(self.model)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(4)
        self.title = QLabel("No dataset open")
        self.title.setObjectName("browserTitle")
        self.title.setWordWrap(True)
        layout.addWidget(self.title)

        self.audit_banner = QLabel()
        self.audit_banner.setObjectName("auditBanner")
        self.audit_banner.setWordWrap(True)
        self.audit_banner.setVisible(False)
        self.audit_banner.setTextInteractionFlags(Qt.TextInteractionFlag.LinksAccessibleByMouse)
        self.audit_banner.linkActivated.connect(lambda _l: self.auditRequested.emit())
        layout.addWidget(self.audit_banner)

        self.search = QLineEdit()
        self.search.setPlaceholderText("Search file names…")
        self.search.setClearButtonEnabled(True)
        layout.addWidget(self.search)

        row = QHBoxLayout()
        self.class_filter = QComboBox()
        self.class_filter.setToolTip("Show one class")
        self.class_filter.addItem("All classes", None)
        self.split_filter = QComboBox()
        self.split_filter.setToolTip("Show one split")
        for label, data in (("All splits", None), ("train", "train"), ("val", "val"), ("test", "test")):
            self.split_filter.addItem(label, data)
        row.addWidget(self.class_filter, 1)
        row.addWidget(self.split_filter, 1)
        layout.addLayout(row)

        row2 = QHBoxLayout()
        self.verdict_filter = QComboBox()
        self.verdict_filter.setToolTip("Filter by the models' verdicts")
        self.verdict_filter.addItem("All verdicts", "all")
        for n in MODEL_NAMES:
            self.verdict_filter.addItem(f"{MODEL_LABELS[n]} right", f"correct:{n}")
            self.verdict_filter.addItem(f"{MODEL_LABELS[n]} wrong", f"wrong:{n}")
        self.verdict_filter.addItem("Models disagree", "disagree")
        self.order = QComboBox()
        self.order.setToolTip("Sort order")
        self.order.addItem("Sort: file name", "name")
        for n in MODEL_NAMES:
            self.order.addItem(f"Sort: {MODEL_LABELS[n]} confidence", f"conf:{n}")
            self.order.addItem(f"Sort: {MODEL_LABELS[n]} confidently wrong", f"wrong:{n}")
        row2.addWidget(self.verdict_filter, 1)
        row2.addWidget(self.order, 1)
        layout.addLayout(row2)

        self.stack = QStackedWidget()
        self.grid = QListView()
        self.grid.setViewMode(QListView.ViewMode.IconMode)
        self.grid.setResizeMode(QListView.ResizeMode.Adjust)
        self.grid.setMovement(QListView.Movement.Static)
        self.grid.setUniformItemSizes(True)
        self.grid.setLayoutMode(QListView.LayoutMode.Batched)
        self.grid.setBatchSize(200)
        self.grid.setSpacing(2)
        self.grid.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.grid.setModel(self.proxy)
        self.grid.setItemDelegate(ThumbDelegate(self.model, self.grid))
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.setSortingEnabled(False)
        self.table.setWordWrap(False)
        self.stack.addWidget(self.grid)
        self.stack.addWidget(self.table)
        self.empty = QLabel("Open a dataset (File ▸ Open dataset…), drop a folder here,\n"
                            "or start with the demo (File ▸ Open demo dataset).")
        self.empty.setObjectName("emptyState")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setWordWrap(True)
        self.stack.addWidget(self.empty)
        self.stack.setCurrentWidget(self.empty)
        layout.addWidget(self.stack, 1)

        bottom = QHBoxLayout()
        self.counts = QLabel(" ")
        self.counts.setObjectName("counts")
        self.counts.setWordWrap(True)
        bottom.addWidget(self.counts, 1)
        self.view_toggle = QToolButton()
        self.view_toggle.setText("Table")
        self.view_toggle.setCheckable(True)
        self.view_toggle.setToolTip("Switch between thumbnails and a table with per-model predictions")
        self.view_toggle.toggled.connect(self._toggle_view)
        bottom.addWidget(self.view_toggle)
        layout.addLayout(bottom)

        for combo in (self.class_filter, self.split_filter, self.verdict_filter, self.order):
            # Long entries ("Sort: ResNet18 confidently wrong") must not widen the dock.
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(8)
        self.search.textChanged.connect(self._apply_filters)
        for combo in (self.class_filter, self.split_filter, self.verdict_filter):
            combo.currentIndexChanged.connect(self._apply_filters)
        self.order.currentIndexChanged.connect(lambda _i: self.proxy.set_order(self.order.currentData()))
        for view in (self.grid, self.table):
            view.selectionModel().currentChanged.connect(self._on_current)
        self.setAcceptDrops(True)

    # -- data ------------------------------------------------------------------------------
    def attach(self, workspace) -> None:
        """Show the dataset a ``core.workspace.Workspace`` opens."""
        workspace.events.index.connect(lambda index, _run_dir: index is not None and self.set_index(index))

    def set_index(self, index: DatasetIndex) -> None:
        self.index = index
        self._summarise_index()
        self.model.set_samples(index.samples, index.classes)
        self.class_filter.blockSignals(True)
        self.class_filter.clear()
        self.class_filter.addItem("All classes", None)
        for c in index.classes:
            self.class_filter.addItem(c, c)
        self.class_filter.blockSignals(False)
        self.title.setText(f"<b>{dataset_title(index)}</b> <span style='color:#5f6b7a'>({index.layout} layout)</span>")
        self.title.setToolTip("\n".join(index.roots))
        self._show_audit(index)
        self.stack.setCurrentWidget(self.table if self.view_toggle.isChecked() else self.grid)
        self._apply_filters()

    def _show_audit(self, index: DatasetIndex) -> None:
        audit = index.audit or {}
        flags = audit.get("flags") or audit.get("confounds") or []
        bad = len(index.bad_files)
        parts = []
        for flag in flags[:3]:
            parts.append("⚠ " + (flag.get("message") or flag.get("sentence") or str(flag)
                                 if isinstance(flag, dict) else str(flag)))
        if bad:
            parts.append(f"⚠ {bad} file(s) could not be read and were skipped.")
        if parts:
            self.audit_banner.setText("<br>".join(parts) + " <a href='audit'>Details…</a>")
        self.audit_banner.setVisible(bool(parts))

    def set_predictions(self, model: str, probs) -> None:
        self.model.set_predictions(model, probs)
        if self.proxy.verdict != "all" or self.proxy.order != "name":
            self._apply_filters()
        self._update_counts()

    def _apply_filters(self) -> None:
        self.proxy.set_filters(
            label=self.class_filter.currentData(),
            split=self.split_filter.currentData(),
            verdict=self.verdict_filter.currentData() or "all",
            text=self.search.text(),
        )
        if self.proxy.order != "name":
            self.proxy.sort(0, Qt.SortOrder.AscendingOrder)
        self._update_counts()

    def _summarise_index(self) -> None:
        """Counts, labels and the test mask of the open index, computed once per dataset
        (``_update_counts`` runs on every filter change, on the GUI thread)."""
        per_class: dict[str, int] = {}
        per_split: dict[str, int] = {}
        for s in self.index.samples:
            per_class[s.label] = per_class.get(s.label, 0) + 1
            per_split[s.split] = per_split.get(s.split, 0) + 1
        cls = " · ".join(f"{c} {per_class.get(c, 0)}" for c in self.index.classes)
        spl = " · ".join(f"{k} {per_split[k]}" for k in ("train", "val", "test") if k in per_split)
        self._counts_text = f"{cls}<br>{spl}"
        self._labels = np.array([self.index.class_to_idx.get(s.label, -1) for s in self.index.samples])
        self._is_test = np.array([s.split == "test" for s in self.index.samples], dtype=bool)

    def _update_counts(self) -> None:
        if self.index is None:
            self.counts.setText(" ")
            return
        acc = []
        for name in MODEL_NAMES:
            probs = self.model.predictions.get(name)
            if probs is None:
                continue
            test = self._is_test & ~np.isnan(probs).any(axis=1)
            if test.any():
                a = float((probs[test].argmax(1) == self._labels[test]).mean())
                acc.append(f"{MODEL_LABELS[name]} {a * 100:.1f} %")
        text = f"{self._counts_text} — showing {self.proxy.rowCount()}"
        if acc:
            text += "<br>test accuracy: " + " · ".join(acc)
        self.counts.setText(text)

    # -- selection -------------------------------------------------------------------------
    def _toggle_view(self, table: bool) -> None:
        self.view_toggle.setText("Thumbnails" if table else "Table")
        if self.index is None:
            return
        current = self.current_view().currentIndex()
        self.stack.setCurrentWidget(self.table if table else self.grid)
        if current.isValid():
            self.current_view().setCurrentIndex(current)

    def current_view(self) -> QAbstractItemView:
        return self.table if self.view_toggle.isChecked() else self.grid

    def _on_current(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if self.sender() is not self.current_view().selectionModel():
            return
        self.sampleSelected.emit(current.data(SAMPLE_ROLE) if current.isValid() else None)

    def select_row(self, row: int) -> None:
        """Select the proxy row ``row`` (keyboard-like navigation for the app and tests)."""
        view = self.current_view()
        idx = self.proxy.index(row, 0)
        if idx.isValid():
            view.setCurrentIndex(idx)
            view.scrollTo(idx)

    def select_path(self, path: str) -> bool:
        row = self.model._row_of.get(path)
        if row is None:
            return False
        idx = self.proxy.mapFromSource(self.model.index(row, 0))
        if not idx.isValid():
            self.search.clear()
            self.class_filter.setCurrentIndex(0)
            self.split_filter.setCurrentIndex(0)
            self.verdict_filter.setCurrentIndex(0)
            idx = self.proxy.mapFromSource(self.model.index(row, 0))
        self.current_view().setCurrentIndex(idx)
        self.current_view().scrollTo(idx)
        return idx.isValid()

    def selected_samples(self) -> list:
        """The selected samples (Ctrl/Shift-click selects several, e.g. for a figure)."""
        rows = sorted({i.row() for i in self.current_view().selectionModel().selectedIndexes()})
        return [self.proxy.index(r, 0).data(SAMPLE_ROLE) for r in rows]

    def visible_samples(self) -> list:
        """The samples the browser shows now, after its filters, in its order."""
        return [self.proxy.index(r, 0).data(SAMPLE_ROLE) for r in range(self.proxy.rowCount())]

    def first_row_of_split(self, split: str) -> int | None:
        for r in range(self.proxy.rowCount()):
            s = self.proxy.index(r, 0).data(SAMPLE_ROLE)
            if s is not None and s.split == split:
                return r
        return None

    # -- drag and drop ---------------------------------------------------------------------
    dropped = Signal(list)

    def dragEnterEvent(self, event) -> None:  # noqa: N802
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802
        folders = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if folders:
            self.dropped.emit(folders)

    def shutdown(self) -> None:
        self.thumbs.stop()
