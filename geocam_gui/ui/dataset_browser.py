"""The dataset browser: a virtualised thumbnail grid and a table over one item model.

Thumbnails are made off the GUI thread (newest requests first) and cached on disk; the
filters, the sorting and the counts are numpy expressions over the index's columns
(``core.data.sample_table``). The indexing worker builds them; for an index that comes
without them the browser builds them itself between events, a few ms at a time, and says
"Loading…" meanwhile: taking a 100,000-image index never blocks the GUI thread.
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QModelIndex, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListView,
    QStackedWidget,
    QTableView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from geocam_gui.core.data.datasets import DatasetIndex
from geocam_gui.core.data.demo import is_demo_dir
from geocam_gui.core.data.sample_table import SampleTable, TableBuilder, cached_table, remember, table_for
from geocam_gui.core.models import MODEL_LABELS, MODEL_NAMES
from geocam_gui.ui.dataset_model import (
    SAMPLE_ROLE,
    SampleModel,
    ThumbnailLoader,
)
from geocam_gui.ui.thumb_delegate import ThumbDelegate

#: Up to this many images the browser builds the index's columns at once (a few ms); above,
#: in slices between events while it says "Loading…".
SYNC_ROWS = 5000
SLICE_S = 0.005  # the longest the GUI thread builds columns before it serves events again


def dataset_title(index: DatasetIndex) -> str:
    """A short name for a dataset: the demo says so, other sets show their folder names."""
    names = []
    for r in index.roots:
        p = Path(r)
        names.append("Demo: Pittsburgh vs Tokyo" if is_demo_dir(p) else (p.name or str(p)))
    return ", ".join(names)


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
        self.proxy = self.model  # the rows shown: the model filters and sorts itself
        self._builder: TableBuilder | None = None  # the columns of the index being loaded
        self._loading: DatasetIndex | None = None
        self._select_split: str | None = None  # select its first row once loaded

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
        self.grid.setModel(self.model)
        self.grid.setItemDelegate(ThumbDelegate(self.model, self.grid))
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.table.verticalHeader().setDefaultSectionSize(22)
        # Fixed widths the user may drag: a stretched File column got squeezed to nothing by
        # the seven others in a narrow dock, and sizing to contents would read every row.
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(False)
        header.setDefaultSectionSize(84)
        self.table.setColumnWidth(0, 210)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
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
        self.order.currentIndexChanged.connect(lambda _i: self.model.set_order(self.order.currentData()))
        for view in (self.grid, self.table):
            view.selectionModel().currentChanged.connect(self._on_current)
        self.setAcceptDrops(True)

    # -- data ------------------------------------------------------------------------------
    def attach(self, workspace) -> None:
        """Show the dataset a ``core.workspace.Workspace`` opens."""
        workspace.events.index.connect(lambda index, _run_dir: index is not None and self.set_index(index))

    def set_index(self, index: DatasetIndex) -> None:
        """Show ``index``: at once when its columns are built (by the indexing worker) or it is
        small, else once a worker has built them (the browser says "Loading…" meanwhile)."""
        self.index = index
        self.class_filter.blockSignals(True)
        self.class_filter.clear()
        self.class_filter.addItem("All classes", None)
        for c in index.classes:
            self.class_filter.addItem(c, c)
        self.class_filter.blockSignals(False)
        self.title.setText(f"<b>{dataset_title(index)}</b> <span style='color:#5f6b7a'>({index.layout} layout)</span>")
        self.title.setToolTip("\n".join(index.roots))
        self._show_audit(index)
        self._builder = self._loading = None  # an older index's columns: not needed any more
        table = cached_table(index)
        if table is None and len(index.samples) <= SYNC_ROWS:
            table = table_for(index)
        if table is not None:
            self._take(index, table)
            return
        self._loading = index
        self.model.clear()
        self.empty.setText(f"Loading {len(index.samples):,} images…")
        self.stack.setCurrentWidget(self.empty)
        self.counts.setText("Loading…")
        self._builder = TableBuilder(index.samples, index.classes)
        QTimer.singleShot(0, lambda: self._build_slice(index))

    def _build_slice(self, index: DatasetIndex) -> None:
        """Build the columns of ``index`` for at most SLICE_S, then let events through."""
        builder = self._builder
        if index is not self._loading or builder is None:
            return  # another index was opened meanwhile
        end = time.perf_counter() + SLICE_S
        try:
            if builder.done >= len(builder.samples):  # all read: the arrays, then (next) the views
                table = builder.table()
                remember(index, table)
                QTimer.singleShot(0, lambda: self._take(index, table))
                return
            while time.perf_counter() < end and not builder.step(1000):
                pass
        except Exception as exc:  # noqa: BLE001 - e.g. a sample without a path: say so, no traceback
            self._load_failed(index, f"{type(exc).__name__}: {exc}")
            return
        QTimer.singleShot(0, lambda: self._build_slice(index))

    def is_loading(self) -> bool:
        """A worker is still building the open index's columns."""
        return self._loading is not None

    def _take(self, index: DatasetIndex, table: SampleTable) -> None:
        if index is not self.index:
            return  # another index was opened meanwhile
        self._loading = self._builder = None
        self.model.configure(**self._filter_values(), order=self.order.currentData())
        self.model.set_table(index.samples, table)
        self.stack.setCurrentWidget(self.table if self.view_toggle.isChecked() else self.grid)
        self._update_counts()
        if self._select_split is not None:
            split, self._select_split = self._select_split, None
            self.select_first_of_split(split)

    def _load_failed(self, index: DatasetIndex, message: str) -> None:
        if index is self.index:
            self._loading = self._builder = None
            self.empty.setText(f"The dataset could not be shown: {message}")
            self.counts.setText(" ")

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
        if self.model.verdict != "all" or self.model.order != "name":
            self.model.set_filters(**self._filter_values())
        self._update_counts()

    def _filter_values(self) -> dict:
        return {"label": self.class_filter.currentData(), "split": self.split_filter.currentData(),
                "verdict": self.verdict_filter.currentData() or "all", "text": self.search.text().replace("\0", "")}

    def _apply_filters(self) -> None:
        self.model.set_filters(**self._filter_values())
        self._update_counts()

    def _update_counts(self) -> None:
        table = self.model.table
        if self.index is None or table is None:
            self.counts.setText("Loading…" if self.is_loading() else " ")
            return
        per_class, per_split = table.class_counts(), table.split_counts()
        cls = " · ".join(f"{c} {per_class.get(c, 0)}" for c in table.classes)
        spl = " · ".join(f"{k} {n}" for k, n in per_split.items() if n)
        test = table.splits == table.split_code("test")
        acc = []
        for name in MODEL_NAMES:
            if name not in self.model.predictions:
                continue
            pred, _conf = self.model._verdicts[name]
            known = test & (pred >= 0)
            if known.any():
                a = float((pred[known] == table.labels[known]).mean())
                # one model's figure never breaks across lines ("VGG11 50.1 / %")
                acc.append(f"{MODEL_LABELS[name]} {a * 100:.1f} %".replace(" ", "&nbsp;"))
        text = f"{cls}<br>{spl} — showing {self.model.rowCount()}"
        if acc:
            text += "<br>test accuracy: " + " · ".join(acc)
        self.counts.setText(text)

    # -- selection -------------------------------------------------------------------------
    def _toggle_view(self, table: bool) -> None:
        self.view_toggle.setText("Thumbnails" if table else "Table")
        if self.index is None:
            return
        current = (self.grid if table else self.table).currentIndex()  # the view left behind
        if self.is_loading():
            return
        self.stack.setCurrentWidget(self.table if table else self.grid)
        if current.isValid():
            self.current_view().setCurrentIndex(current)
            self.current_view().scrollTo(current)

    def current_view(self) -> QAbstractItemView:
        return self.table if self.view_toggle.isChecked() else self.grid

    def _on_current(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if self.sender() is not self.current_view().selectionModel():
            return
        self.sampleSelected.emit(current.data(SAMPLE_ROLE) if current.isValid() else None)

    def select_row(self, row: int) -> None:
        """Select the shown row ``row`` (keyboard-like navigation for the app and tests)."""
        view = self.current_view()
        idx = self.model.index(row, 0)
        if idx.isValid():
            view.setCurrentIndex(idx)
            view.scrollTo(idx)

    def select_first_of_split(self, split: str) -> None:
        """Select the first shown image of ``split`` (else the first one), now or once loaded."""
        if self.is_loading():
            self._select_split = split
            return
        row = self.model.first_row_of_split(split)
        self.select_row(row if row is not None else 0)

    def select_path(self, path: str) -> bool:
        source = self.model.row_of_path(path)
        if source is None:
            return False
        row = self.model.model_row(source)
        if row < 0:
            self.search.clear()
            self.class_filter.setCurrentIndex(0)
            self.split_filter.setCurrentIndex(0)
            self.verdict_filter.setCurrentIndex(0)
            row = self.model.model_row(source)
        idx = self.model.index(row, 0)
        self.current_view().setCurrentIndex(idx)
        self.current_view().scrollTo(idx)
        return idx.isValid()

    def selected_samples(self) -> list:
        """The selected samples (Ctrl/Shift-click selects several, e.g. for a figure)."""
        rows = sorted({i.row() for i in self.current_view().selectionModel().selectedIndexes()})
        return [self.model.samples[self.model.source_row(r)] for r in rows]

    def visible_samples(self) -> list:
        """The samples the browser shows now, after its filters, in its order."""
        samples = self.model.samples
        return [samples[i] for i in self.model.rows.tolist()]

    def first_row_of_split(self, split: str) -> int | None:
        return self.model.first_row_of_split(split)

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
        self._builder = self._loading = None
        self.thumbs.stop()
