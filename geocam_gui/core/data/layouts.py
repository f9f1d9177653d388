"""Folder layouts of city photo collections, scanned with ``os.scandir`` and no decoding.

Each root is read by one layout into :class:`Found` records (path, label, group, size, mtime):

- ``folders``: ``ROOT/<class>/**/<image>`` (2 or more classes), or, with a label, every image
  below ``ROOT`` as that one class.
- ``csv``: a manifest ``path,label[,group][,split][,...]`` (a ``.csv`` file, or a folder holding
  ``manifest.csv`` / ``index.csv``); paths relative to the manifest's folder or absolute.
- ``pitts250k``: the Pittsburgh 250k/30k database ``ROOT/000..010/<pano>_pitch<p>_yaw<y>.jpg``.
- ``tokyo247``: the Tokyo 24/7 database ``ROOT/03814..03829/<pano>_<pitch>_<yaw>.png``.
- ``tokyotm``: Tokyo Time Machine ``ROOT/images/<place>/<time>/...`` (or ``ROOT`` = ``images``).

Groups are what must never straddle two splits: the panorama for the NetVLAD collections (its
12-24 views overlap), the place for Tokyo Time Machine (several visits of one spot).

Long because: the five collection layouts share one scan, one grouping rule and one
manifest reader; apart they would each import the others' helpers.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from geocam_gui.core.errors import DataError
from geocam_gui.core.data.images import is_image_name

log = logging.getLogger(__name__)

LAYOUTS = ("folders", "csv", "pitts250k", "tokyo247", "tokyotm")
DEFAULT_LABELS = {"pitts250k": "pittsburgh", "tokyo247": "tokyo", "tokyotm": "tokyo"}
LAYOUT_TITLES = {
    "folders": "class-per-folder",
    "csv": "CSV manifest",
    "pitts250k": "Pittsburgh 250k/30k database",
    "tokyo247": "Tokyo 24/7 database",
    "tokyotm": "Tokyo Time Machine",
}
MANIFEST_NAMES = ("manifest.csv", "index.csv")
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val",
                 "validation": "val", "test": "test", "testing": "test"}

_PITTS_DIR = re.compile(r"^\d{3}$")
_PITTS_NAME = re.compile(r"^(?P<pano>\d+)_pitch(?P<pitch>\d+)_yaw(?P<yaw>\d+)$")
_VIEW_NAME = re.compile(r"^(?P<pano>.+)_pitch\d+_yaw\d+$")  # any panorama id, for other layouts
_TOKYO_DIR = re.compile(r"^\d{5}$")
_TOKYO_NAME = re.compile(r"^(?P<pano>.+)_(?P<pitch>\d{3})_(?P<yaw>\d{3})$")
#: A class-per-folder class groups by subfolder when it has at least this many of them.
MIN_SUBFOLDER_GROUPS = 10


@dataclass(slots=True)
class Found:
    """One image file found by a layout (not yet split)."""

    path: str
    label: str
    group: str
    size: int  # -1 when the scan did not stat files
    mtime_ns: int  # -1 likewise
    split: str | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class RootScan:
    """What one root held."""

    root: str
    layout: str
    files: list[Found]
    bad: list[tuple[str, str]]
    ignored: int = 0
    note: str = ""
    warnings: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """One sentence: what was found where."""
        labels: dict[str, int] = {}
        groups: set[tuple[str, str]] = set()
        for f in self.files:
            labels[f.label] = labels.get(f.label, 0) + 1
            groups.add((f.label, f.group))
        per = ", ".join(f"{k}: {v}" for k, v in sorted(labels.items()))
        text = (f"{self.root}: {LAYOUT_TITLES.get(self.layout, self.layout)} layout, "
                f"{len(self.files)} images in {len(groups)} groups ({per})")
        if self.note:
            text += f"; {self.note}"
        return text + "."


# ---------------------------------------------------------------- scanning


def _skip_dir(name: str) -> bool:
    return name.startswith((".", "_"))


def walk_images(top: str, bad: list[tuple[str, str]], counter: list[int] | None = None,
                visited: set | None = None, stat: bool = True) -> Iterator[tuple[os.DirEntry, int, int]]:
    """Yield ``(entry, size, mtime_ns)`` for every image file below ``top``, depth first.

    With ``stat`` False files are not stat'ed (size and mtime are -1, zero-byte files are not
    detected here but when decoded): a folder listing then costs no system call per file.

    Symbolic links to folders are followed once: a folder already visited (same device and
    inode) is skipped, so link loops end. Zero-byte and unreadable files go to ``bad``; files
    whose name is not an image are counted in ``counter[0]``. Hidden files, and folders starting
    with ``.`` or ``_`` (``.git``, ``__MACOSX``, ``_masks``) are skipped.
    """
    if visited is None:
        visited = set()
    try:
        st = os.stat(top)
    except OSError as exc:
        bad.append((top, f"unreadable folder ({exc.strerror or exc})"))
        return
    key = (st.st_dev, st.st_ino)
    if key in visited:
        return
    visited.add(key)
    stack = [top]
    while stack:
        folder = stack.pop()
        try:
            it = os.scandir(folder)
        except OSError as exc:
            bad.append((folder, f"unreadable folder ({exc.strerror or exc})"))
            continue
        subdirs = []
        with it:
            for entry in it:
                name = entry.name
                try:
                    if entry.is_dir():
                        if _skip_dir(name):
                            continue
                        dst = entry.stat()
                        dkey = (dst.st_dev, dst.st_ino)
                        if dkey not in visited:
                            visited.add(dkey)
                            subdirs.append(entry.path)
                        continue
                except OSError as exc:  # dangling link, permission
                    bad.append((entry.path, f"unreadable ({exc.strerror or exc})"))
                    continue
                if name.startswith("."):
                    continue
                if not is_image_name(name):
                    if counter is not None:
                        counter[0] += 1
                    continue
                if not stat:
                    yield entry, -1, -1
                    continue
                try:
                    fst = entry.stat()
                except OSError as exc:
                    reason = "broken link" if entry.is_symlink() else f"unreadable ({exc.strerror or exc})"
                    bad.append((entry.path, reason))
                    continue
                if fst.st_size == 0:
                    bad.append((entry.path, "empty file (0 bytes)"))
                    continue
                yield entry, fst.st_size, fst.st_mtime_ns
        stack.extend(sorted(subdirs, reverse=True))


def _subdirs(path: str) -> list[str]:
    try:
        with os.scandir(path) as it:
            return sorted(e.name for e in it if not _skip_dir(e.name) and _is_dir(e))
    except OSError:
        return []


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _image_names(path: str, limit: int = 50) -> list[str]:
    out = []
    try:
        with os.scandir(path) as it:
            for e in it:
                if not e.name.startswith(".") and is_image_name(e.name):
                    out.append(os.path.splitext(e.name)[0])
                    if len(out) >= limit:
                        break
    except OSError:
        pass
    return out


def has_loose_images(path: str) -> bool:
    """True when ``path`` itself (not a subfolder) holds image files."""
    return bool(_image_names(path, 1))


# ---------------------------------------------------------------- detection


def manifest_in(root: str) -> str | None:
    """The manifest CSV that ``root`` is or holds, else None."""
    if os.path.isfile(root) and root.lower().endswith(".csv"):
        return root
    for name in MANIFEST_NAMES:
        candidate = os.path.join(root, name)
        if os.path.isfile(candidate):
            return candidate
    return None


def _tokyotm_images(root: str) -> str | None:
    sub = os.path.join(root, "images")
    if os.path.isdir(sub):
        places = _subdirs(sub)
        if places and any(_subdirs(os.path.join(sub, p)) for p in places[:20]):
            return sub
    if os.path.basename(os.path.normpath(root)) == "images":
        places = _subdirs(root)
        if places and any(_subdirs(os.path.join(root, p)) for p in places[:20]):
            return root
    return None


def detect_layout(root: str) -> str:
    """Guess the layout of ``root`` from its top folders and a few file names (no decoding)."""
    if manifest_in(root):
        return "csv"
    subs = _subdirs(root)
    pitts = [d for d in subs if _PITTS_DIR.match(d)]
    if pitts:
        names = _image_names(os.path.join(root, pitts[0]))
        if names and sum(bool(_PITTS_NAME.match(n)) for n in names) >= len(names) / 2:
            return "pitts250k"
    tokyo = [d for d in subs if _TOKYO_DIR.match(d)]
    if tokyo:
        names = _image_names(os.path.join(root, tokyo[0]))
        if names and sum(bool(_TOKYO_NAME.match(n)) for n in names) >= len(names) / 2:
            return "tokyo247"
    if _tokyotm_images(root):
        return "tokyotm"
    return "folders"


# ---------------------------------------------------------------- layouts


def _stem(rel: str) -> str:
    """``rel`` with ``/`` separators and without its extension (the extension always exists here)."""
    if os.sep != "/":
        rel = rel.replace(os.sep, "/")
    dot = rel.rfind(".")
    return rel[:dot] if dot > rel.rfind("/") + 1 else rel


def _group_by_name(stem: str) -> str | None:
    name = stem.rsplit("/", 1)[-1]
    m = _VIEW_NAME.match(name)
    if m:
        return m.group("pano")
    m = _TOKYO_NAME.match(name)
    if m and len(m.group("pano")) >= 8:
        return m.group("pano")
    return None


def _assign_folder_groups(files: list[tuple[str, str, int, int]], label: str) -> tuple[list[Found], str]:
    """Groups for one class of a class-per-folder tree: panorama ids, else subfolders, else stems."""
    stems = [_stem(rel) for _, rel, _, _ in files]
    by_name = [_group_by_name(s) for s in stems]
    how = "file name"
    if files and sum(g is not None for g in by_name) >= 0.9 * len(files):
        groups = [g if g is not None else s for g, s in zip(by_name, stems)]
        how = "panorama id"
    else:
        subfolders = [s.split("/", 1)[0] if "/" in s else None for s in stems]
        distinct = {s for s in subfolders if s is not None}
        if len(distinct) >= MIN_SUBFOLDER_GROUPS and sum(s is not None for s in subfolders) >= 0.9 * len(files):
            groups = [sub if sub is not None else s for sub, s in zip(subfolders, stems)]
            how = "subfolder"
        else:
            groups = stems
    found = [Found(p, label, g, size, mt) for (p, _, size, mt), g in zip(files, groups)]
    return found, how


def _collect(top: str, bad: list, counter: list[int], visited: set, stat: bool = True) -> list[tuple[str, str, int, int]]:
    top_abs = os.path.abspath(top)
    n = len(top_abs) + 1
    out = []
    for entry, size, mt in walk_images(top_abs, bad, counter, visited, stat):
        path = entry.path
        out.append((path, path[n:], size, mt))
    return out


def scan_folders(root: str, label: str | None = None, *, stat: bool = True) -> RootScan:
    """Class-per-folder (``label`` None) or a single-class folder (``label`` given)."""
    root = os.path.abspath(root)
    bad: list[tuple[str, str]] = []
    counter = [0]
    visited: set = set()
    files: list[Found] = []
    notes = []
    if label is not None:
        found, how = _assign_folder_groups(_collect(root, bad, counter, visited, stat), label)
        files.extend(found)
        notes.append(f"grouped by {how}")
    else:
        loose = has_loose_images(root)
        for cls in _subdirs(root):
            found, how = _assign_folder_groups(_collect(os.path.join(root, cls), bad, counter, visited, stat), cls)
            if found:
                files.extend(found)
                notes.append(f"{cls} grouped by {how}")
        if loose:
            notes.append("images directly in the root were ignored (they belong to no class folder)")
    note = "; ".join(notes)
    return RootScan(root, "folders", files, bad, counter[0], note)


def scan_pitts250k(root: str, label: str | None = None, *, stat: bool = True) -> RootScan:
    """Pittsburgh 250k/30k database: folders ``000``..``010``; group = panorama."""
    return _scan_panorama_db(root, label or DEFAULT_LABELS["pitts250k"], "pitts250k", _PITTS_DIR, _PITTS_NAME, stat)


def scan_tokyo247(root: str, label: str | None = None, *, stat: bool = True) -> RootScan:
    """Tokyo 24/7 database: folders ``03814``..``03829``; group = panorama."""
    return _scan_panorama_db(root, label or DEFAULT_LABELS["tokyo247"], "tokyo247", _TOKYO_DIR, _TOKYO_NAME, stat)


def _scan_panorama_db(root: str, label: str, layout: str, dir_re: re.Pattern, name_re: re.Pattern,
                      stat: bool) -> RootScan:
    root = os.path.abspath(root)
    bad: list[tuple[str, str]] = []
    counter = [0]
    visited: set = set()
    files: list[Found] = []
    append = files.append
    match = name_re.match
    odd = 0
    folders = [d for d in _subdirs(root) if dir_re.match(d)]
    for d in folders:
        top = os.path.join(root, d)
        n = len(top) + 1
        for entry, size, mt in walk_images(top, bad, counter, visited, stat):  # hot loop: 250k files
            name = entry.name
            m = match(name[:name.rfind(".")])
            if m:
                pano, pitch, yaw = m.group("pano", "pitch", "yaw")
                append(Found(entry.path, label, pano, size, mt, None, {"pitch": pitch, "yaw": yaw}))
            else:
                odd += 1
                path = entry.path
                append(Found(path, label, f"{d}/{_stem(path[n:])}", size, mt))
    note = f"{len(folders)} database folders ({', '.join(folders[:3])}{'...' if len(folders) > 3 else ''})"
    if odd:
        note += f"; {odd} file names did not match the panorama pattern and form groups of their own"
    return RootScan(root, layout, files, bad, counter[0], note)


def scan_tokyotm(root: str, label: str | None = None, *, stat: bool = True) -> RootScan:
    """Tokyo Time Machine: ``images/<place>/<time>/...``; group = place, ``time`` kept as extra."""
    root = os.path.abspath(root)
    label = label or DEFAULT_LABELS["tokyotm"]
    images = _tokyotm_images(root) or (os.path.join(root, "images") if os.path.isdir(os.path.join(root, "images")) else root)
    bad: list[tuple[str, str]] = []
    counter = [0]
    visited: set = set()
    files: list[Found] = []
    places = _subdirs(images)
    for place in places:
        for path, rel, size, mt in _collect(os.path.join(images, place), bad, counter, visited, stat):
            parts = rel.replace(os.sep, "/").split("/")
            when = parts[0] if len(parts) > 1 else ""
            files.append(Found(path, label, place, size, mt, extra={"time": when}))
    return RootScan(root, "tokyotm", files, bad, counter[0], f"{len(places)} places under {images}")


def scan_csv(root: str) -> RootScan:
    """A manifest CSV with columns ``path,label`` and optionally ``group``, ``split`` and more."""
    manifest = manifest_in(root)
    if manifest is None:
        raise DataError(f"{root} is not a CSV file and holds no manifest.csv or index.csv.")
    manifest = os.path.abspath(manifest)
    base = os.path.dirname(manifest)
    bad: list[tuple[str, str]] = []
    files: list[Found] = []
    try:
        with open(manifest, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            if "path" not in columns or "label" not in columns:
                raise DataError(f"{manifest} needs the columns path and label; it has {', '.join(columns) or 'none'}.")
            reader.fieldnames = columns
            extras = [c for c in columns if c not in ("path", "label", "group", "split")]
            rows = list(reader)
    except UnicodeDecodeError:
        raise DataError(f"{manifest} is not a UTF-8 text file.") from None
    except csv.Error as exc:
        raise DataError(f"{manifest} is not a valid CSV file ({exc}).") from None
    has_split = "split" in columns
    labels_of: dict[str, list[str]] = {}
    for line, row in enumerate(rows, start=2):
        rel = (row.get("path") or "").strip()
        label = (row.get("label") or "").strip()
        if not rel or not label:
            bad.append((f"{manifest}:{line}", "row without path or label"))
            continue
        path = os.path.normpath(rel if os.path.isabs(rel) else os.path.join(base, rel))
        labels_of.setdefault(path, []).append(label)  # the first row of a path counts (index_dataset)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            bad.append((path, "missing file"))
            continue
        except OSError as exc:
            bad.append((path, f"unreadable ({exc.strerror or exc})"))
            continue
        if st.st_size == 0:
            bad.append((path, "empty file (0 bytes)"))
            continue
        group = (row.get("group") or "").strip()
        if not group:
            stem = _stem(rel)
            group = _group_by_name(stem) or stem
        split = None
        if has_split:
            raw = (row.get("split") or "").strip().lower()
            split = SPLIT_ALIASES.get(raw)
            if split is None:
                raise DataError(f"{manifest} line {line}: split must be train, val or test, not {raw!r}.")
        extra = {c: row[c].strip() for c in extras if c is not None and (row.get(c) or "").strip()}
        if "weight" in extra:
            try:
                extra["weight"] = float(extra["weight"])
            except ValueError:
                extra.pop("weight")
        files.append(Found(path, label, group, st.st_size, st.st_mtime_ns, split, extra))
    warnings = [f"{path} is listed {len(labels)} times in {manifest} with the conflicting labels "
                f"{', '.join(sorted(set(labels)))}; the first ({labels[0]}) is used."
                for path, labels in labels_of.items() if len(set(labels)) > 1]
    for w in warnings:
        log.warning("%s", w)
    note = f"{len(rows)} rows in {os.path.basename(manifest)}"
    if has_split:
        note += ", splits kept from the manifest"
    return RootScan(os.path.abspath(root), "csv", files, bad, 0, note, warnings)


def scan_root(root: str, layout: str = "auto", label: str | None = None, *, stat: bool = True) -> RootScan:
    """Read one root with ``layout`` (``auto`` detects it); ``stat`` False skips per-file stats
    (CSV manifests are always checked file by file)."""
    if layout == "auto":
        layout = detect_layout(root)
    if layout == "csv":
        scan = scan_csv(root)
        if label is not None:
            for f in scan.files:
                f.label = label
        return scan
    if layout == "folders":
        return scan_folders(root, label, stat=stat)
    if layout == "pitts250k":
        return scan_pitts250k(root, label, stat=stat)
    if layout == "tokyo247":
        return scan_tokyo247(root, label, stat=stat)
    if layout == "tokyotm":
        return scan_tokyotm(root, label, stat=stat)
    raise ValueError(f"unknown layout {layout!r}; expected auto or one of {', '.join(LAYOUTS)}")
