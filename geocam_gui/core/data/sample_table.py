"""A dataset index as columns: what a browser needs to filter, sort and count 100,000 rows
with array operations instead of one Python call per row.

``SampleTable.build`` walks the samples once (about 150 ms for 100,000 rows: a worker does it,
``table_for``, or a GUI thread in slices of a few ms, ``TableBuilder``); everything after
that - a class or split mask, a file-name search, the file-name order, per-class and
per-split counts - is a numpy expression of a few milliseconds.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from geocam_gui.core.data.split import SPLITS
from geocam_gui.core.errors import Cancelled

CHUNK = 5_000  # rows per step: a few ms (and between two looks at ``cancelled``)


@dataclass(frozen=True)
class SampleTable:
    """Columns of ``samples`` (in index order): integer codes, names and a name order."""

    classes: list[str]
    labels: np.ndarray  # int32 index into ``classes`` (-1: a label not in ``classes``)
    splits: np.ndarray  # int8 index into SPLITS (-1: none of them)
    names: list[str]  # file names (the last path component), for display
    names_lower: np.ndarray  # lower-cased file names, for the search
    name_order: np.ndarray  # rows sorted by file name (ties in index order)
    row_of: dict[str, int]  # path -> row

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def build(cls, samples: Sequence, classes: Sequence[str],
              cancelled: Callable[[], bool] | None = None) -> SampleTable:
        """Columns of ``samples`` (objects with ``path``, ``label`` and ``split``)."""
        builder = TableBuilder(samples, classes)
        while not builder.step():
            if cancelled is not None and cancelled():
                raise Cancelled("The dataset table was not needed any more.")
        return builder.table()

    def mask(self, label: str | None = None, split: str | None = None, text: str = "") -> np.ndarray:
        """Rows of class ``label``, split ``split`` whose file name contains ``text`` (any case);
        None / "" match every row."""
        keep = np.ones(len(self), dtype=bool)
        if label is not None:
            keep &= self.labels == (self.classes.index(label) if label in self.classes else -2)
        if split is not None:
            keep &= self.splits == (SPLITS.index(split) if split in SPLITS else -2)
        text = text.lower().strip()
        if text and len(self):
            keep &= np.char.find(self.names_lower, text) >= 0
        return keep

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels[self.labels >= 0], minlength=len(self.classes))
        return {c: int(n) for c, n in zip(self.classes, counts)}

    def split_counts(self) -> dict[str, int]:
        counts = np.bincount(self.splits[self.splits >= 0], minlength=len(SPLITS))
        return {s: int(n) for s, n in zip(SPLITS, counts)}

    def split_code(self, split: str) -> int:
        return SPLITS.index(split) if split in SPLITS else -2


class TableBuilder:
    """Builds a ``SampleTable`` a slice of rows at a time, so that a GUI thread can build one
    between two events (``step`` of ``CHUNK`` rows: a few ms) instead of sharing the GIL with a
    worker thread that builds it (every call from Qt into Python then waits its turn)."""

    def __init__(self, samples: Sequence, classes: Sequence[str]):
        self.samples = samples
        self.classes = list(classes)
        self.done = 0
        self._class_code = {c: i for i, c in enumerate(self.classes)}
        self._split_code = {s: i for i, s in enumerate(SPLITS)}
        self._labels: list[int] = []
        self._splits: list[int] = []
        self._names: list[str] = []
        self._name_parts: list[np.ndarray] = []
        self._lower_parts: list[np.ndarray] = []
        self._row_of: dict[str, int] = {}

    def step(self, rows: int = CHUNK) -> bool:
        """Read the next ``rows`` samples; True once every sample is read."""
        start = self.done
        part = self.samples[start:start + rows]
        if part:
            self._labels += [self._class_code.get(s.label, -1) for s in part]
            self._splits += [self._split_code.get(s.split, -1) for s in part]
            names = [_file_name(s.path) for s in part]
            self._names += names
            self._name_parts.append(np.array(names, dtype=str))
            self._lower_parts.append(np.array([n.lower() for n in names], dtype=str))
            self._row_of.update((s.path, start + i) for i, s in enumerate(part))
            self.done += len(part)
        return self.done >= len(self.samples)

    def table(self) -> SampleTable:
        """The table (every sample must be read: ``step`` returned True)."""
        def joined(parts):
            return np.concatenate(parts) if parts else np.zeros(0, dtype="<U1")

        return SampleTable(
            classes=self.classes,
            labels=np.array(self._labels, dtype=np.int32),
            splits=np.array(self._splits, dtype=np.int8),
            names=self._names,
            names_lower=joined(self._lower_parts),
            name_order=np.argsort(joined(self._name_parts), kind="stable"),
            row_of=self._row_of,
        )


def _file_name(path: str) -> str:
    return path.rstrip("/\\").replace("\\", "/").rpartition("/")[2]


# The table of an index is built once (by the indexing worker or the browser's loader) and
# looked up by the GUI thread; an index is identified by the object and its samples list.
_cache: dict[int, tuple[weakref.ref, int, int, SampleTable]] = {}
_lock = threading.Lock()


def cached_table(index) -> SampleTable | None:
    """The table already built for ``index`` (a DatasetIndex), or None."""
    with _lock:
        hit = _cache.get(id(index))
    if hit is None:
        return None
    ref, samples_id, n, table = hit
    if ref() is not index or samples_id != id(index.samples) or n != len(index.samples):
        return None
    return table


def table_for(index, cancelled: Callable[[], bool] | None = None) -> SampleTable:
    """The table of ``index``, built now unless it was built before (safe in any thread)."""
    table = cached_table(index)
    if table is not None:
        return table
    table = SampleTable.build(index.samples, index.classes, cancelled)
    remember(index, table)
    return table


def remember(index, table: SampleTable) -> None:
    """Keep ``table`` as the table of ``index`` (for ``cached_table``)."""
    key = id(index)
    with _lock:
        for k in [k for k, v in _cache.items() if v[0]() is None]:
            del _cache[k]  # tables of indexes that are gone
        while len(_cache) >= 4:
            del _cache[next(iter(_cache))]
        _cache[key] = (weakref.ref(index), id(index.samples), len(index.samples), table)
