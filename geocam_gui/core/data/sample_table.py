"""A dataset index as columns: what a browser needs to filter, sort and count 100,000 rows
with array operations instead of one Python call per row.

``SampleTable.build`` walks the samples once (seconds' worth of work is a few hundred ms for
100,000 rows: run it off the GUI thread, see ``table_for``); everything after that - a class or
split mask, a file-name search, the file-name order, per-class and per-split counts, a model's
right/wrong mask - is a numpy expression of a few milliseconds.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from geocam_gui.core.data.split import SPLITS
from geocam_gui.core.errors import Cancelled

CHUNK = 10_000  # rows per step (and between two looks at ``cancelled``)


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
        class_code = {c: i for i, c in enumerate(classes)}
        split_code = {s: i for i, s in enumerate(SPLITS)}
        labels, splits, names, row_of = [], [], [], {}
        name_parts, lower_parts = [], []
        # In chunks: each numpy call holds the GIL for its whole length, and the GUI thread
        # waits for the GIL while this runs in a worker.
        for start in range(0, len(samples), CHUNK):
            if cancelled is not None and cancelled():
                raise Cancelled("The dataset table was not needed any more.")
            part = samples[start:start + CHUNK]
            labels += [class_code.get(s.label, -1) for s in part]
            splits += [split_code.get(s.split, -1) for s in part]
            part_names = [_file_name(s.path) for s in part]
            names += part_names
            name_parts.append(np.array(part_names, dtype=str))
            lower_parts.append(np.array([n.lower() for n in part_names], dtype=str))
            row_of.update((s.path, start + i) for i, s in enumerate(part))
        name_array = np.concatenate(name_parts) if name_parts else np.zeros(0, dtype="<U1")
        return cls(
            classes=list(classes),
            labels=np.array(labels, dtype=np.int32),
            splits=np.array(splits, dtype=np.int8),
            names=names,
            names_lower=np.concatenate(lower_parts) if lower_parts else np.zeros(0, dtype="<U1"),
            name_order=np.argsort(name_array, kind="stable"),
            row_of=row_of,
        )

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
    key = id(index)
    with _lock:
        for k in [k for k, v in _cache.items() if v[0]() is None]:
            del _cache[k]  # tables of indexes that are gone
        while len(_cache) >= 4:
            del _cache[next(iter(_cache))]
        _cache[key] = (weakref.ref(index), id(index.samples), len(index.samples), table)
    return table
