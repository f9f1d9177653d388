"""Decoded-image cache: decode and resize each photo once, then train from a uint8 memmap.

Decoding a 640x480 JPEG costs milliseconds; reading 128x128x3 bytes from a memory-mapped
file costs microseconds. ``decoded_split`` builds ``cache_dir()/decoded/<key>/`` once, where
the key hashes every ``(path, file size, mtime)`` and the resolution, so any change to a file
or to the list makes a new entry, and later calls (later epochs, later runs, the GUI) map the
same arrays without opening an image file.

Layout of an entry: ``images.npy`` (N, size, size, 3) uint8, ``ok.npy`` (N,) bool,
``meta.json`` (paths, errors, size). It is built in a temporary folder and renamed into place,
so a crash or a cancel never leaves a half-written entry that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from geocam_gui.core import paths
from geocam_gui.core.data import images
from geocam_gui.core.errors import Cancelled, ImageError
from geocam_gui.core.files import atomic_write, to_file_object

CACHE_VERSION = 1


@dataclass
class DecodedArrays:
    """A decoded split: images row i is ``paths[i]`` resized to (size, size)."""

    images: np.ndarray  # uint8 memmap (N, size, size, 3), read-only
    labels: np.ndarray  # int64 (N,)
    ok: np.ndarray  # bool (N,); False rows failed to decode and are zero
    paths: list[str]
    errors: list[tuple[str, str]] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    size: int = 0
    folder: Path | None = None

    def __len__(self) -> int:
        return len(self.paths)


def _decoded_root() -> Path:
    return paths.cache_dir() / "decoded"


def cache_key(samples: Sequence, size: int) -> str:
    """Hash of every (path, file size, mtime) and the resolution."""
    h = hashlib.sha256(f"v{CACHE_VERSION}|{int(size)}|{images.MAX_PIXELS}\n".encode())
    for s in samples:
        p = s.path if hasattr(s, "path") else os.fspath(s)
        try:
            st = os.stat(p)
            stamp = f"{st.st_size}|{st.st_mtime_ns}"
        except OSError:
            stamp = "missing"
        h.update(f"{p}|{stamp}\n".encode("utf-8", "surrogatepass"))
    return h.hexdigest()[:32]


def _labels(samples: Sequence, classes: Sequence[str] | None) -> tuple[np.ndarray, list[str]]:
    names = [getattr(s, "label", None) for s in samples]
    if classes is None:
        classes = sorted({n for n in names if n is not None})
    lookup = {c: i for i, c in enumerate(classes)}
    try:
        labels = np.array([lookup[n] if n is not None else -1 for n in names], dtype=np.int64)
    except KeyError as exc:
        raise ValueError(f"label {exc.args[0]!r} is not among the classes {list(classes)}") from None
    return labels, list(classes)


def _open_entry(folder: Path, labels: np.ndarray, classes: list[str], size: int) -> DecodedArrays:
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    imgs = np.load(folder / "images.npy", mmap_mode="r")
    ok = np.load(folder / "ok.npy")
    errors = [(p, r) for p, r in meta.get("errors", [])]
    return DecodedArrays(imgs, labels, ok, list(meta["paths"]), errors, classes, size, folder)


def decoded_split(
    samples: Sequence,
    size: int,
    *,
    classes: Sequence[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | threading.Event | None = None,
    workers: int | None = None,
) -> DecodedArrays:
    """Decoded, resized images of ``samples`` (objects with ``.path``/``.label``, or paths).

    The first call decodes with a thread pool (Pillow releases the GIL) and stores the result;
    later calls with the same files and ``size`` map the stored arrays and decode nothing.
    ``labels`` index ``classes`` (default: the sorted labels of ``samples``). Files that fail
    to decode have ``ok`` False, a zero image, and an entry ``(path, reason)`` in ``errors``.
    ``cancel`` (a callable or an Event) stops the build between images with :class:`Cancelled`.
    """
    size = int(size)
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    labels, class_list = _labels(samples, classes)
    path_list = [s.path if hasattr(s, "path") else os.fspath(s) for s in samples]
    key = cache_key(samples, size)
    folder = _decoded_root() / f"{size}px-{key}"
    if (folder / "meta.json").is_file():
        try:
            return _open_entry(folder, labels, class_list, size)
        except (OSError, ValueError, KeyError):
            shutil.rmtree(folder, ignore_errors=True)  # damaged entry: rebuild it
    return _build(folder, path_list, labels, class_list, size, progress, cancel, workers)


def _is_cancelled(cancel) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())


def _decode_into(target: Path, path_list: list[str], size: int, progress, cancel,
                 workers: int | None) -> tuple[np.ndarray, list[tuple[int, str, str]]]:
    """Decode ``path_list`` into a new ``.npy`` memmap at ``target`` with a thread pool; returns
    ``(ok, errors)``. The memmap is flushed and released when this returns."""
    n = len(path_list)
    out = np.lib.format.open_memmap(target, mode="w+", dtype=np.uint8, shape=(n, size, size, 3))
    ok = np.zeros(n, dtype=bool)
    errors: list[tuple[int, str, str]] = []
    nworkers = workers or max(1, min(16, os.cpu_count() or 1))

    def work(i: int) -> None:
        try:
            out[i] = images.load_resized(path_list[i], size)
            ok[i] = True
        except ImageError as exc:
            errors.append((i, path_list[i], exc.reason))

    done = 0
    with ThreadPoolExecutor(nworkers) as pool:
        pending = set()
        it = iter(range(n))
        for i in it:  # keep a bounded window in flight so cancel acts quickly
            pending.add(pool.submit(work, i))
            if len(pending) >= nworkers * 4:
                break
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                fut.result()
                done += 1
            if _is_cancelled(cancel):
                for fut in pending:
                    fut.cancel()
                raise Cancelled("Decoding the images was cancelled.")
            for i in it:
                pending.add(pool.submit(work, i))
                if len(pending) >= nworkers * 4:
                    break
            if progress and (done % 32 == 0 or done == n):
                progress(done, n)
    out.flush()
    return ok, errors


def _build(folder: Path, path_list: list[str], labels: np.ndarray, classes: list[str], size: int,
           progress, cancel, workers: int | None) -> DecodedArrays:
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        ok, errors = _decode_into(tmp / "images.npy", path_list, size, progress, cancel, workers)
        atomic_write(tmp / "ok.npy", to_file_object(np.save, ok, allow_pickle=False), fsync=False)
        errors.sort()
        meta = {"version": CACHE_VERSION, "size": size, "count": len(path_list), "paths": path_list,
                "errors": [[p, r] for _, p, r in errors]}
        # ASCII JSON: a non-UTF-8 file name (a lone surrogate) round-trips as a \\udcXX escape
        atomic_write(tmp / "meta.json", json.dumps(meta, allow_nan=False), fsync=False)
        try:
            os.rename(tmp, folder)
        except OSError:
            if not (folder / "meta.json").is_file():  # not a concurrent twin: a real failure
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _open_entry(folder, labels, classes, size)


def clear_decoded_cache() -> int:
    """Delete every decoded-cache entry; returns the bytes freed."""
    root = _decoded_root()
    freed = 0
    if root.is_dir():
        for entry in root.iterdir():
            for f in entry.rglob("*") if entry.is_dir() else [entry]:
                try:
                    freed += f.stat().st_size if f.is_file() else 0
                except OSError:
                    pass
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
    return freed
