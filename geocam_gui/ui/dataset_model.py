"""The dataset browser's item model (``SampleModel``: the rows the filters keep, in the chosen
order) and the thumbnail maker it draws from (``ThumbnailLoader``).

The model never asks a question per row in Python: it holds the index as columns
(``core.data.sample_table.SampleTable``, built off the GUI thread for large sets) and the
shown rows as one integer array; filtering, sorting and counting are numpy expressions, so a
100,000-image index is taken and re-filtered in a few milliseconds.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path

import numpy as np
from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QImage

from geocam_gui.core import paths
from geocam_gui.core.data.sample_table import SampleTable
from geocam_gui.core.models import MODEL_LABELS, MODEL_NAMES
from geocam_gui.ui.workers import LatestWorker

THUMB = 96
SAMPLE_ROLE = Qt.ItemDataRole.UserRole + 1
THUMB_ROLE = Qt.ItemDataRole.UserRole + 2  # the thumbnail (the grid draws it; the table does not)
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
    """The shown samples: one row per sample the filters keep, in the chosen order; columns
    file, class, split, size, then one per model's prediction.

    ``rows`` holds the index rows shown (``rows[r]`` is the index row of model row ``r``);
    ``set_filters`` and ``set_order`` recompute it with numpy and reset the model.
    """

    BASE_COLUMNS = ["File", "Class", "Split", "Size"]
    MAX_IMAGES = 3000  # thumbnails kept in memory (the disk cache keeps the rest)

    def __init__(self, thumbs: ThumbnailLoader, parent: QObject | None = None):
        super().__init__(parent)
        self.samples: list = []
        self.classes: list[str] = []
        self.table: SampleTable | None = None
        self.predictions: dict[str, np.ndarray] = {}  # model -> (N, C) probabilities
        self._verdicts: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # model -> (class or -1, confidence)
        self.rows = np.zeros(0, dtype=np.int64)
        self._position = np.zeros(0, dtype=np.int64)  # index row -> model row (-1: filtered out)
        self.label: str | None = None
        self.split: str | None = None
        self.verdict: str = "all"  # all | correct:<model> | wrong:<model> | disagree
        self.text = ""
        self.order = "name"  # name | conf:<model> | wrong:<model>
        self._thumbs = thumbs
        self._images: OrderedDict[str, QImage] = OrderedDict()
        self._sizes: dict[int, int] = {}
        thumbs.ready.connect(self._on_thumb)

    # -- data in ----------------------------------------------------------------------------
    def set_table(self, samples: list, table: SampleTable) -> None:
        """Show ``samples`` (whose columns ``table`` holds), filtered as set before."""
        self.beginResetModel()
        self.samples = samples
        self.table = table
        self.classes = list(table.classes)
        self.predictions = {}
        self._verdicts = {}
        self._images.clear()
        self._sizes.clear()
        self._thumbs.clear()
        self.rows, self._position = self._compute_rows()
        self.endResetModel()

    def clear(self) -> None:
        self.beginResetModel()
        self.samples, self.table, self.classes = [], None, []
        self.predictions, self._verdicts = {}, {}
        self._images.clear()
        self._sizes.clear()
        self.rows, self._position = self._compute_rows()
        self.endResetModel()

    def set_predictions(self, model: str, probs: np.ndarray | None) -> None:
        if probs is None:
            self.predictions.pop(model, None)
            self._verdicts.pop(model, None)
        else:
            self.predictions[model] = probs
            self._verdicts[model] = _verdicts(probs, len(self.samples))
        if len(self.rows):
            self.dataChanged.emit(self.index(0, 0), self.index(len(self.rows) - 1, self.columnCount() - 1))

    def set_filters(self, *, label=None, split=None, verdict="all", text="") -> None:
        self.label, self.split, self.verdict, self.text = label, split, verdict or "all", text.lower().strip()
        self._refilter()

    def set_order(self, order: str) -> None:
        self.order = order or "name"
        self._refilter()

    def configure(self, *, label=None, split=None, verdict="all", text="", order="name") -> None:
        """Set the filters and the order without recomputing the rows (``set_table`` will)."""
        self.label, self.split, self.verdict, self.text = label, split, verdict or "all", text.lower().strip()
        self.order = order or "name"

    def _refilter(self) -> None:
        """New rows as a layout change: the current and selected samples stay current and
        selected where the filters keep them."""
        rows, position = self._compute_rows()
        if np.array_equal(rows, self.rows):
            return
        self.layoutAboutToBeChanged.emit()
        old = self.persistentIndexList()
        moved = []
        for idx in old:
            r = idx.row()
            moved.append(int(position[self.rows[r]]) if 0 <= r < len(self.rows) else -1)
        self.rows, self._position = rows, position
        self.changePersistentIndexList(old, [self.index(r, idx.column()) if r >= 0 else QModelIndex()
                                             for r, idx in zip(moved, old)])
        self.layoutChanged.emit()

    def _compute_rows(self) -> tuple[np.ndarray, np.ndarray]:
        t = self.table
        if t is None or not len(t):
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        keep = t.mask(self.label, self.split, self.text)
        if self.verdict != "all":
            keep &= self._verdict_mask()
        rows = t.name_order[keep[t.name_order]]  # file-name order, then the chosen key
        if self.order != "name":
            kind, model = self.order.split(":", 1)
            rows = rows[np.argsort(self._order_key(kind, model)[rows], kind="stable")]
        position = np.full(len(t), -1, dtype=np.int64)
        position[rows] = np.arange(len(rows))
        return rows.astype(np.int64), position

    def _verdict_mask(self) -> np.ndarray:
        labels = self.table.labels
        if self.verdict == "disagree":
            preds = [self._verdicts[m][0] for m in MODEL_NAMES if m in self._verdicts]
            out = np.zeros(len(labels), dtype=bool)
            for i, a in enumerate(preds):
                for b in preds[i + 1:]:
                    out |= (a >= 0) & (b >= 0) & (a != b)
            return out
        kind, model = self.verdict.split(":", 1)
        if model not in self._verdicts:
            return np.zeros(len(labels), dtype=bool)
        pred = self._verdicts[model][0]
        return (pred >= 0) & ((pred == labels) if kind == "correct" else (pred != labels))

    def _order_key(self, kind: str, model: str) -> np.ndarray:
        n = len(self.table)
        if model not in self._verdicts:
            return np.zeros(n)
        pred, conf = self._verdicts[model]
        if kind == "conf":
            key = -conf  # most confident first
        else:  # confidently wrong first, then least-sure right
            key = np.where(pred != self.table.labels, -conf, 2.0 + conf)
        return np.where(pred >= 0, key, np.inf)

    # -- rows -------------------------------------------------------------------------------
    def source_row(self, row: int) -> int:
        """The index row of model row ``row``."""
        return int(self.rows[row])

    def row_of_path(self, path: str) -> int | None:
        """The index row of ``path`` (None: not in the index)."""
        return self.table.row_of.get(path) if self.table is not None else None

    def model_row(self, source_row: int) -> int:
        """The model row showing index row ``source_row`` (-1: filtered out)."""
        return int(self._position[source_row]) if 0 <= source_row < len(self._position) else -1

    def first_row_of_split(self, split: str) -> int | None:
        if self.table is None:
            return None
        hits = np.flatnonzero(self.table.splits[self.rows] == self.table.split_code(split))
        return int(hits[0]) if len(hits) else None

    # -- Qt API -----------------------------------------------------------------------------
    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802 - Qt API
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: N802
        return len(self.BASE_COLUMNS) + len(MODEL_NAMES)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            if section < len(self.BASE_COLUMNS):
                return self.BASE_COLUMNS[section]
            return MODEL_LABELS[MODEL_NAMES[section - len(self.BASE_COLUMNS)]]
        return None

    def prediction(self, source_row: int, model: str) -> tuple[int, float] | None:
        """(class, confidence) of ``model`` for index row ``source_row``, None if unknown."""
        v = self._verdicts.get(model)
        if v is None or not 0 <= source_row < len(v[0]) or v[0][source_row] < 0:
            return None
        return int(v[0][source_row]), float(v[1][source_row])

    def wrong_models(self, source_row: int) -> list[str]:
        """The models whose prediction for index row ``source_row`` is not its class."""
        label = self.table.labels[source_row] if self.table is not None else -1
        return [m for m in MODEL_NAMES if (p := self.prediction(source_row, m)) is not None and p[0] != label]

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or index.row() >= len(self.rows):
            return None
        row, col = int(self.rows[index.row()]), index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(row, col)
        if role == SAMPLE_ROLE:
            return self.samples[row]
        if role == THUMB_ROLE:
            return self.thumbnail(row)
        if role == Qt.ItemDataRole.ToolTipRole:
            s = self.samples[row]
            return f"{s.path}\nclass: {s.label} · split: {s.split} · group: {s.group}"
        if role == Qt.ItemDataRole.ForegroundRole and col >= len(self.BASE_COLUMNS):
            pred = self.prediction(row, MODEL_NAMES[col - len(self.BASE_COLUMNS)])
            if pred is not None and pred[0] != self.table.labels[row]:
                return QColor("#c0392b")
        return None

    def thumbnail(self, source_row: int) -> QImage | None:
        """The thumbnail of index row ``source_row``; None (and asked for) while not made yet."""
        path = self.samples[source_row].path
        img = self._images.get(path)
        if img is None:
            self._thumbs.request(path)
        else:
            self._images.move_to_end(path)  # on screen: kept longest
        return img

    def _display(self, row: int, col: int) -> str:
        if col == 0:
            return self.table.names[row]
        if col == 1:
            return self.samples[row].label
        if col == 2:
            return self.samples[row].split
        if col == 3:
            return f"{self._file_size(row) / 1024:.0f} KB"
        pred = self.prediction(row, MODEL_NAMES[col - len(self.BASE_COLUMNS)])
        if pred is None:
            return ""
        k, conf = pred
        return f"{self.classes[k]} {conf * 100:.0f} %"

    def _file_size(self, row: int) -> int:
        if row not in self._sizes:  # only rows on screen are asked: a stat each, once
            try:
                self._sizes[row] = Path(self.samples[row].path).stat().st_size
            except OSError:
                self._sizes[row] = 0
        return self._sizes[row]

    def _on_thumb(self, path: str, image: QImage) -> None:
        row = self.row_of_path(path)
        if row is None:
            return
        self._images[path] = image
        while len(self._images) > self.MAX_IMAGES:
            self._images.popitem(last=False)
        shown = self.model_row(row)
        if shown >= 0:
            idx = self.index(shown, 0)
            self.dataChanged.emit(idx, idx, [THUMB_ROLE])


def _verdicts(probs: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(class or -1, confidence) per index row from (N, C) probabilities (rows past N, or with
    a NaN, are unknown)."""
    pred = np.full(n, -1, dtype=np.int64)
    conf = np.zeros(n, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or not probs.shape[1]:
        return pred, conf
    m = min(n, len(probs))
    ok = ~np.isnan(probs[:m]).any(axis=1)
    k = probs[:m].argmax(axis=1) if m else np.zeros(0, dtype=np.int64)
    pred[:m] = np.where(ok, k, -1)
    conf[:m] = np.where(ok, probs[:m].max(axis=1, initial=-np.inf), 0.0)
    return pred, conf
