"""Dataset index: which photo is which class, in which group and split.

``index_dataset`` reads one or more roots (see :mod:`geocam_gui.core.data.layouts`), checks files
(a sample or all of them, see ``verify``), splits them train/val/test by *group* (panorama,
place) so that near-duplicate views never straddle two splits, balances the training split if
asked, and audits the result (:mod:`geocam_gui.core.data.audit`). ``DatasetIndex.save`` writes
``index.csv`` + ``audit.json``; every trained model can thus record exactly which files it saw.

``progress`` callbacks everywhere here are called as ``progress(done, total)`` (``total`` 0
while it is not known yet).
"""

from __future__ import annotations

import csv
import functools
import gc
import hashlib
import io
import json
import logging
import math
import operator
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from geocam_gui.core.data import audit as _audit, dedupe, layouts
from geocam_gui.core import validate
from geocam_gui.core.errors import BadArgument, BadData, DataError
from geocam_gui.core.files import atomic_write, json_default
from geocam_gui.core.data.layouts import Found
from geocam_gui.core.data.split import SPLITS, grouped_split, parse_split  # noqa: F401 - re-exported
from geocam_gui.core.data.split import balance as _balance

log = logging.getLogger(__name__)

BALANCE_MODES = ("none", "undersample", "weighted")
VERIFY_MODES = ("none", "sample", "all")
INDEX_FORMAT = "geocam-index/1"
Progress = Callable[[int, int], None] | None


@dataclass
class Sample:
    """One photo: absolute path, class label, group (panorama/place) and split."""

    path: str
    label: str
    group: str
    split: str
    extra: dict = field(default_factory=dict)


@dataclass
class DatasetIndex:
    """An indexed, split and audited dataset."""

    samples: list[Sample]
    classes: list[str]
    roots: list[str]
    layout: str
    bad_files: list[tuple[str, str]] = field(default_factory=list)
    audit: dict = field(default_factory=dict)

    def split(self, name: str) -> list[Sample]:
        """The samples of split ``name`` (``train``, ``val`` or ``test``) in index order."""
        if name not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {name!r}")
        return [s for s in self.samples if s.split == name]

    @property
    def class_to_idx(self) -> dict[str, int]:
        """Class name -> integer label (classes sorted by name)."""
        return {c: i for i, c in enumerate(self.classes)}

    def sample_weights(self, split: str = "train") -> np.ndarray:
        """Per-sample weights of ``split`` for a WeightedRandomSampler (1.0 where none is stored)."""
        return np.array([float(s.extra.get("weight") or 1.0) for s in self.split(split)], dtype=np.float64)

    def counts(self) -> dict[str, dict[str, int]]:
        """``{split: {class: n}}``."""
        out: dict[str, dict[str, int]] = {s: {c: 0 for c in self.classes} for s in SPLITS}
        for s in self.samples:
            out.setdefault(s.split, {}).setdefault(s.label, 0)
            out[s.split][s.label] += 1
        return out

    def fingerprint(self) -> str:
        """Stable hash of paths, labels, splits, file sizes and modification times.

        Paths count relative to the root they lie in (its position in ``roots``, then the path
        below it), so a data folder moved or renamed as a whole (``mv`` keeps sizes and times)
        keeps its fingerprint, and with it its run folder and resumable runs. A path outside
        every root counts whole.
        """
        roots = sorted(((r.rstrip(os.sep) + os.sep, i) for i, r in enumerate(self.roots)), key=lambda t: -len(t[0]))

        def key(path: str) -> str:
            for prefix, i in roots:
                if path.startswith(prefix):
                    return f"{i}:{path[len(prefix):]}"
            return path

        return self._digest(key)

    def legacy_fingerprint(self) -> str:
        """The fingerprint of GeoCAM before 2026-12-02, over absolute paths: run folders and
        training states written then carry it (``runs.run_dir_for`` and resuming accept it)."""
        return self._digest(lambda path: path)

    def _digest(self, key) -> str:
        h = hashlib.sha256()
        for s in self.samples:
            try:
                st = os.stat(s.path)
                size, mtime = st.st_size, st.st_mtime_ns
            except OSError:
                size, mtime = -1, -1
            h.update(f"{key(s.path)}\t{s.label}\t{s.split}\t{size}\t{mtime}\n".encode("utf-8", "surrogatepass"))
        return h.hexdigest()[:32]

    def extra_columns(self) -> list[str]:
        cols: dict[str, None] = {}
        for s in self.samples:
            for k in s.extra:
                cols.setdefault(k, None)
        return sorted(cols)

    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``folder/index.csv`` and ``folder/audit.json`` (each atomically); returns folder."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        extras = self.extra_columns()
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["path", "label", "group", "split", *extras])
        for s in self.samples:
            writer.writerow([s.path, s.label, s.group, s.split, *(_cell(s.extra.get(k, "")) for k in extras)])
        atomic_write(folder / "index.csv", buf.getvalue().encode("utf-8", "surrogateescape"))  # names as on disk
        meta = {
            "format": INDEX_FORMAT,
            "roots": self.roots,
            "layout": self.layout,
            "classes": self.classes,
            "fingerprint": self.fingerprint(),
            "counts": self.counts(),
            "bad_files": [{"path": p, "reason": r} for p, r in self.bad_files],
            "audit": self.audit,
        }
        text = json.dumps(meta, indent=1, ensure_ascii=False, allow_nan=False, default=json_default)
        atomic_write(folder / "audit.json", _escape_surrogates(text))
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> DatasetIndex:
        """Read an index written by :meth:`save` (``audit.json`` is optional)."""
        folder = Path(folder)
        index_csv = folder / "index.csv"
        if not index_csv.is_file():
            raise DataError(f"{folder} holds no index.csv; run geocam index first.")
        samples = []
        # surrogateescape: a file name that is not UTF-8 comes back as the same (escaped) str
        with open(index_csv, newline="", encoding="utf-8", errors="surrogateescape") as fh:
            reader = csv.DictReader(fh)
            need = {"path", "label", "group", "split"}
            if not need.issubset(reader.fieldnames or []):
                raise DataError(f"{index_csv} needs the columns path, label, group and split.")
            extras = [c for c in reader.fieldnames or [] if c not in need]
            for line, row in enumerate(reader, start=2):
                if any(not isinstance(row.get(k), str) or not row[k] or "\x00" in row[k] for k in need) \
                        or row["split"] not in SPLITS:
                    raise DataError(f"{index_csv} line {line} needs a path, label, group and a split "
                                    f"({', '.join(SPLITS)}).")
                extra = {k: row[k] for k in extras if isinstance(row.get(k), str) and row[k] != ""}
                if "weight" in extra:
                    try:
                        extra["weight"] = float(extra["weight"])
                    except ValueError:
                        extra["weight"] = float("nan")
                    if not (math.isfinite(extra["weight"]) and extra["weight"] >= 0):
                        raise DataError(f"{index_csv} line {line}: the weight must be a finite number >= 0.")
                path = row["path"] if os.path.isabs(row["path"]) else str((folder / row["path"]).resolve())
                samples.append(Sample(path, row["label"], row["group"], row["split"], extra))
        meta: dict = {}
        audit_json = folder / "audit.json"
        if audit_json.is_file():
            try:
                meta = validate.loads(audit_json.read_text(encoding="utf-8"))
                if not isinstance(meta, dict):
                    raise ValueError("not a JSON object")
            except (OSError, ValueError) as exc:
                log.warning("Ignoring unreadable %s: %s", audit_json, exc)
                meta = {}
        listed = meta.get("classes") if isinstance(meta.get("classes"), list) else []
        classes = sorted({s.label for s in samples} | {c for c in listed if isinstance(c, str) and c})
        bad = [(b["path"], b["reason"]) for b in meta.get("bad_files", []) if isinstance(b, dict)
               and isinstance(b.get("path"), str) and isinstance(b.get("reason"), str)] \
            if isinstance(meta.get("bad_files"), list) else []
        roots = meta.get("roots")
        roots = [r for r in roots if isinstance(r, str)] if isinstance(roots, list) else [str(folder)]
        layout = meta.get("layout") if isinstance(meta.get("layout"), str) else "csv"
        audit = meta.get("audit") if isinstance(meta.get("audit"), dict) else {}
        return cls(samples, classes, roots, layout, bad, audit)


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _escape_surrogates(text: str) -> str:
    """JSON text with lone surrogates (non-UTF-8 file names) as ``\\udcXX`` escapes: valid UTF-8
    JSON that ``json.loads`` turns back into the same str."""
    return _SURROGATE.sub(lambda m: "\\u%04x" % ord(m.group()), text)


_SURROGATE = re.compile("[\ud800-\udfff]")


# ---------------------------------------------------------------- indexing


def _without_gc(fn):
    """Run ``fn`` with the cyclic garbage collector paused.

    An index builds hundreds of thousands of small records; the collector would rescan them
    over and over while they are created (roughly doubling the time), and none form cycles.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        enabled = gc.isenabled()
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            if enabled:
                gc.enable()

    return wrapper


@_without_gc
def index_dataset(
    roots: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    layout: str = "auto",
    labels: Sequence[str | None] | None = None,
    split: Sequence[float] | str = (6, 2, 2),
    seed: int = 0,
    balance: str = "none",
    progress: Progress = None,
    verify: str = "sample",
    audit_per_class: int = 200,
) -> DatasetIndex:
    """Index ``roots`` into a grouped, stratified train/val/test split with an audit.

    ``labels`` gives one class name per root (that root is then one class, whatever its layout;
    ``None`` entries keep the layout's own labels: class folders, the CSV column, or
    ``pittsburgh``/``tokyo`` for the NetVLAD collections). ``verify`` decodes ``"sample"``
    (``audit_per_class`` files per class, default), ``"all"`` or ``"none"`` of the files: bad
    ones are dropped and listed in ``bad_files`` with a reason; ``"none"`` reads no file
    contents and does not even stat them (no decoding, no duplicate search, zero-byte files
    found only when decoded): the fastest index. Files whose split a manifest
    gives keep it. Raises DataError for a missing or empty root, one class, or a class with too
    few groups, and BadArgument for inconsistent arguments.
    """
    root_list = [roots] if isinstance(roots, (str, os.PathLike)) else list(roots)
    if not root_list:
        raise BadArgument("Give at least one dataset root.")
    root_list = [os.path.abspath(os.fspath(r)) for r in root_list]
    if labels is not None:
        labels = list(labels)
        if len(labels) != len(root_list):
            raise BadArgument(f"Give one label per root: {len(root_list)} root(s) but {len(labels)} label(s).")
    if layout != "auto" and layout not in layouts.LAYOUTS:
        raise BadArgument(f"Unknown layout {layout!r}; use auto or one of {', '.join(layouts.LAYOUTS)}.")
    if balance not in BALANCE_MODES:
        raise BadArgument(f"Unknown balance {balance!r}; use one of {', '.join(BALANCE_MODES)}.")
    if verify not in VERIFY_MODES:
        raise BadArgument(f"Unknown verify mode {verify!r}; use one of {', '.join(VERIFY_MODES)}.")
    ratios = parse_split(split)
    for r in root_list:
        if not os.path.exists(r):
            raise BadData(f"The dataset root {r} does not exist.")

    scans = []
    for i, r in enumerate(root_list):
        scan = layouts.scan_root(r, layout, labels[i] if labels else None, stat=verify != "none")
        if not scan.files and scan.layout == "folders" and layouts.has_loose_images(r):
            raise BadData(f"The dataset root {r} holds images but no class subfolders: put each class in its "
                            "own folder, or give every root a label (--label, once per root).")
        if not scan.files:
            extra = f" ({len(scan.bad)} unreadable or empty files)" if scan.bad else ""
            ignored = f", {scan.ignored} other files" if scan.ignored else ""
            raise BadData(f"The dataset root {r} holds no images ({layouts.LAYOUT_TITLES[scan.layout]} layout{ignored}){extra}.")
        scan.note = scan.describe()  # computed once: reused for the log and the audit
        log.info("%s", scan.note)
        scans.append(scan)
        if progress:
            progress(i + 1, len(root_list))

    found: list[Found] = []
    bad: list[tuple[str, str]] = []
    seen: set[str] = set()
    duplicates_paths = 0
    for scan in scans:
        bad.extend(scan.bad)
        for f in scan.files:
            if f.path in seen:
                duplicates_paths += 1
                continue
            seen.add(f.path)
            found.append(f)
    found.sort(key=operator.attrgetter("path"))

    classes = sorted({f.label for f in found})
    if len(classes) < 2:
        per = ", ".join(f"{s.root}: {len(s.files)} images" for s in scans)
        raise BadData(
            f"Only one class ({classes[0]!r}) was found ({per}); a classifier needs at least two. "
            "Use class folders, or give several roots with one --label each."
        )

    inspected, newly_bad = _audit.inspect_files(found, verify, seed=seed, per_class=audit_per_class, progress=progress)
    if newly_bad:
        bad_set = {p for p, _ in newly_bad}
        found = [f for f in found if f.path not in bad_set]
        bad.extend(newly_bad)
    for label in classes:
        if not any(f.label == label for f in found):
            raise BadData(f"Every file of class {label!r} failed to decode; see the bad files list.")

    near = dedupe.merge_near_duplicates(found, inspected, verify)
    grouped_split(found, ratios, seed)
    if near.get("checked"):
        near["across_splits"] = near.pop("_found").across_splits()
    balance_info = _balance(found, balance, seed)

    samples = [Sample(f.path, f.label, f.group, f.split or "train", f.extra) for f in found]
    layout_name = "+".join(dict.fromkeys(s.layout for s in scans))
    detected = [{"root": s.root, "layout": s.layout, "images": len(s.files), "ignored_files": s.ignored,
                 "description": s.note} for s in scans]
    settings = {"split": list(ratios), "seed": seed, "balance": balance, "verify": verify,
                "labels": labels, "layout": layout}
    report = _audit.build_audit(found, classes, inspected, bad, detected=detected, settings=settings,
                                balance=balance_info, check_duplicates=verify != "none",
                                progress=progress, near_duplicates=near)
    if duplicates_paths:
        report["repeated_paths"] = duplicates_paths
    warnings = [w for scan in scans for w in scan.warnings]
    if warnings:
        report["warnings"] = warnings
    return DatasetIndex(samples, classes, root_list, layout_name, bad, report)


def open_data(spec: str | os.PathLike | Sequence[str | os.PathLike], **kwargs) -> DatasetIndex:
    """Open whatever the user pointed at.

    ``spec`` is a folder written by ``geocam index`` (``index.csv`` + ``audit.json``), a demo set
    or any folder with a ``manifest.csv`` (its splits are kept), a CSV manifest, or any root (or
    list of roots) :func:`index_dataset` accepts; ``kwargs`` go to :func:`index_dataset`.
    """
    if not isinstance(spec, (str, os.PathLike)):
        return index_dataset(list(spec), **kwargs)
    path = Path(spec)
    if not path.exists():
        raise BadData(f"{path} does not exist.")
    if path.is_dir() and (path / "index.csv").is_file() and (path / "audit.json").is_file():
        return DatasetIndex.load(path)
    if path.is_dir() and (path / "manifest.csv").is_file():
        return index_dataset([path], layout="csv", **kwargs)
    return index_dataset([path], **kwargs)
