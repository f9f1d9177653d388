"""The dataset browser's item models: the samples table (``SampleModel``), its filter and sort
proxy (``SampleFilter``) and the thumbnail maker they draw from (``ThumbnailLoader``)."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path

import numpy as np
from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QSortFilterProxyModel, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QImage

from geocam_gui.core import paths
from geocam_gui.core.models import MODEL_LABELS, MODEL_NAMES
from geocam_gui.ui.workers import LatestWorker

THUMB = 96
SAMPLE_ROLE = Qt.ItemDataRole.UserRole + 1
SORT_ROLE = Qt.ItemDataRole.UserRole + 2
CLASS_COLORS = ["#2f6fde", "#d9482b", "#2e9e5b", "#9b59b6", "#e0a100", "#16a2b8", "#7f8c8d", "#c0392b"]
SPLIT_COLORS = {"train": "#5f6b7a", "val": "#8e6fbf", "test": "#1c8a6a"}



class ThumbnailLoader(QObject):
    """Makes thumbnails on the shared latest-request-wins worker, newest requests first, cached
    on disk as PNG.

    ``request(path)`` (GUI thread) adds a path to the wanted list; once per event-loop pass the
    list goes to the worker, newest first, as one request. A newer request makes the running one
    stop at its next image; what it did not make is still wanted and goes with the newer one.
    """

    ready = Signal(str, QImage)
    MAX_WANTED = 2000

    def __init__(self, size: int = THUMB, parent: QObject | None = None):
        super().__init__(parent)
        self.size = size
        self._wanted: OrderedDict[str, None] = OrderedDict()  # GUI thread only
        self._flush_scheduled = False
        self.cache_dir = paths.cache_dir() / "thumbs"
        self.ready.connect(self._on_ready)
        self._worker = LatestWorker("thumbnails", self._make_all, self)
        self.thread = self._worker.thread

    def request(self, path: str) -> None:
        self._wanted.pop(path, None)
        self._wanted[path] = None  # newest at the end, served first
        while len(self._wanted) > self.MAX_WANTED:
            self._wanted.popitem(last=False)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            QTimer.singleShot(0, self._flush)

    def clear(self) -> None:
        self._wanted.clear()
        self._worker.submit("thumbs", [])  # the running request stops at its next image

    def stop(self) -> None:
        self._wanted.clear()
        self._worker.stop(10000)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._wanted:
            self._worker.submit("thumbs", list(reversed(self._wanted)))

    def _on_ready(self, path: str, _image: QImage) -> None:
        self._wanted.pop(path, None)

    def _make_all(self, paths_newest_first: list[str]) -> None:  # worker thread
        for path in paths_newest_first:
            if self._worker.pending():
                return
            self.ready.emit(path, self._make(path))

    def _cache_path(self, path: str) -> Path:
        try:
            st = Path(path).stat()
            stamp = f"{st.st_size}-{st.st_mtime_ns}"
        except OSError:
            stamp = "missing"
        key = hashlib.sha1(f"{path}|{stamp}|{self.size}".encode("utf-8", "surrogatepass")).hexdigest()
        return self.cache_dir / key[:2] / f"{key}.png"

    def _make(self, path: str) -> QImage:
        cached = self._cache_path(path)
        if cached.exists():
            img = QImage(str(cached))
            if not img.isNull():
                return img
        try:
            from geocam_gui.core.data.images import load_rgb

            pil = load_rgb(path)
            pil.thumbnail((self.size, self.size))
            arr = np.ascontiguousarray(np.asarray(pil, dtype=np.uint8))
            h, w, _ = arr.shape
            img = QImage(arr.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
        except Exception:  # noqa: BLE001 - a broken file gets a grey tile, the audit says why
            img = QImage(self.size, self.size, QImage.Format.Format_RGB888)
            img.fill(QColor("#c8ccd2"))
            return img
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(".tmp.png")
            if img.save(str(tmp), "PNG"):
                tmp.replace(cached)
        except OSError:
            pass
        return img


class SampleModel(QAbstractTableModel):
    """Rows are samples; columns file, class, split, size, then one per model's prediction."""

    BASE_COLUMNS = ["File", "Class", "Split", "Size"]

    def __init__(self, thumbs: ThumbnailLoader, parent: QObject | None = None):
        super().__init__(parent)
        self.samples: list = []
        self.classes: list[str] = []
        self.predictions: dict[str, np.ndarray] = {}  # model -> (N, C) probabilities
        self._thumbs = thumbs
        self._images: dict[str, QImage] = {}
        self._row_of: dict[str, int] = {}
        self._sizes: dict[int, int] = {}
        thumbs.ready.connect(self._on_thumb)

    def set_samples(self, samples: list, classes: list[str]) -> None:
        self.beginResetModel()
        self.samples = list(samples)
        self.classes = list(classes)
        self.predictions = {}
        self._images.clear()
        self._sizes.clear()
        self._row_of = {s.path: i for i, s in enumerate(self.samples)}
        self._thumbs.clear()
        self.endResetModel()

    def set_predictions(self, model: str, probs: np.ndarray | None) -> None:
        if probs is None:
            self.predictions.pop(model, None)
        else:
            self.predictions[model] = probs
        col = len(self.BASE_COLUMNS) + MODEL_NAMES.index(model)
        if self.samples:
            self.dataChanged.emit(self.index(0, 0), self.index(len(self.samples) - 1, col))

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802 - Qt API
        return 0 if parent.isValid() else len(self.samples)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: N802
        return len(self.BASE_COLUMNS) + len(MODEL_NAMES)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            if section < len(self.BASE_COLUMNS):
                return self.BASE_COLUMNS[section]
            return MODEL_LABELS[MODEL_NAMES[section - len(self.BASE_COLUMNS)]]
        return None

    def prediction(self, row: int, model: str) -> tuple[int, float] | None:
        probs = self.predictions.get(model)
        if probs is None or row >= len(probs) or np.isnan(probs[row]).any():
            return None
        k = int(np.argmax(probs[row]))
        return k, float(probs[row][k])

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        row, col = index.row(), index.column()
        s = self.samples[row]
        if role == SAMPLE_ROLE:
            return s
        if role == Qt.ItemDataRole.DecorationRole and col == 0:
            img = self._images.get(s.path)
            if img is None:
                self._thumbs.request(s.path)
            return img
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{s.path}\nclass: {s.label} · split: {s.split} · group: {s.group}"
        if role in (Qt.ItemDataRole.DisplayRole, SORT_ROLE):
            if col == 0:
                return Path(s.path).name
            if col == 1:
                return s.label
            if col == 2:
                return s.split
            if col == 3:
                size = self._file_size(row)
                return size if role == SORT_ROLE else f"{size / 1024:.0f} KB"
            model = MODEL_NAMES[col - len(self.BASE_COLUMNS)]
            pred = self.prediction(row, model)
            if pred is None:
                return -1.0 if role == SORT_ROLE else ""
            k, conf = pred
            if role == SORT_ROLE:
                return conf
            return f"{self.classes[k]} {conf * 100:.0f} %"
        if role == Qt.ItemDataRole.ForegroundRole and col >= len(self.BASE_COLUMNS):
            pred = self.prediction(row, MODEL_NAMES[col - len(self.BASE_COLUMNS)])
            if pred is not None and self.classes[pred[0]] != s.label:
                return QColor("#c0392b")
        return None

    def _file_size(self, row: int) -> int:
        if row not in self._sizes:
            try:
                self._sizes[row] = Path(self.samples[row].path).stat().st_size
            except OSError:
                self._sizes[row] = 0
        return self._sizes[row]

    def _on_thumb(self, path: str, image: QImage) -> None:
        row = self._row_of.get(path)
        if row is None:
            return
        self._images[path] = image
        idx = self.index(row, 0)
        self.dataChanged.emit(idx, idx, [Qt.ItemDataRole.DecorationRole])


class SampleFilter(QSortFilterProxyModel):
    """Class, split, correctness/disagreement and file-name filters; special sort orders."""

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.label: str | None = None
        self.split: str | None = None
        self.verdict: str = "all"  # all | correct:<model> | wrong:<model> | disagree
        self.text = ""
        self.order = "name"  # name | conf:<model> | wrong:<model>
        self.setSortRole(SORT_ROLE)
        self.setDynamicSortFilter(False)

    def set_filters(self, *, label=None, split=None, verdict="all", text="") -> None:
        if hasattr(self, "beginFilterChange"):  # Qt >= 6.9: invalidateFilter is deprecated
            self.beginFilterChange()
        self.label, self.split, self.verdict, self.text = label, split, verdict, text.lower().strip()
        if hasattr(self, "endFilterChange"):
            self.endFilterChange()
        else:
            self.invalidateFilter()

    def set_order(self, order: str) -> None:
        self.order = order
        self.invalidate()
        self.sort(0, Qt.SortOrder.AscendingOrder)

    def setSourceModel(self, model) -> None:  # noqa: N802 - Qt API
        self._model = model  # a Python reference: filterAcceptsRow runs once per row
        super().setSourceModel(model)

    def _src(self) -> SampleModel:
        return self._model

    def filterAcceptsRow(self, row: int, parent: QModelIndex) -> bool:  # noqa: N802
        m = self._src()
        s = m.samples[row]
        if self.label and s.label != self.label:
            return False
        if self.split and s.split != self.split:
            return False
        if self.text and self.text not in Path(s.path).name.lower():
            return False
        if self.verdict == "all":
            return True
        if self.verdict == "disagree":
            preds = {p[0] for name in MODEL_NAMES if (p := m.prediction(row, name)) is not None}
            return len(preds) > 1
        kind, model = self.verdict.split(":", 1)
        pred = m.prediction(row, model)
        if pred is None:
            return False
        correct = m.classes[pred[0]] == s.label
        return correct if kind == "correct" else not correct

    def _key(self, row: int):
        m = self._src()
        if self.order == "name":
            return Path(m.samples[row].path).name
        kind, model = self.order.split(":", 1)
        pred = m.prediction(row, model)
        if pred is None:
            return float("inf")
        k, conf = pred
        if kind == "conf":
            return -conf  # most confident first
        wrong = m.classes[k] != m.samples[row].label
        return -conf if wrong else 2.0 + conf  # confidently wrong first, then least-sure right

    def lessThan(self, left: QModelIndex, right: QModelIndex) -> bool:  # noqa: N802
        if self.order == "name" and left.column() != 0:
            return super().lessThan(left, right)
        return self._key(left.row()) < self._key(right.row())
