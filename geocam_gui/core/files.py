"""The one way core writes a file: to a temporary name beside it, then renamed over it.

``atomic_write(path, data)`` writes ``bytes``, ``str`` (UTF-8, newlines as given) or whatever a
``writer(tmp_path)`` callback puts at the temporary path (PIL, numpy, torch, safetensors and
matplotlib all write to a path). The temporary file lives in the destination folder (same file
system, so the rename is atomic), is created with the mode a plain ``open`` gives (0666 masked
by the umask, e.g. 0644 - not ``mkstemp``'s 0600), flushed and fsync'ed, renamed over ``path``
with ``os.replace``, and the folder is fsync'ed so the rename itself survives a power cut.
On any failure the temporary file is removed and ``path`` is left exactly as it was.

``fsync=False`` skips both fsyncs, for files that can be re-created at will (caches, a batch of
thousands of exported overlays); the write is still all-or-nothing.

``atomic_write_group`` writes several files as temporaries first and only then renames them in
order (a checkpoint's weights, then its metadata). ``atomic_write_json`` writes strict JSON
(``allow_nan=False``: a NaN is an error here, not a file other tools cannot read).

An ``OSError`` becomes :class:`WriteError`, a sentence naming the file and the reason (no space
left on the device, read-only file system, permission denied...).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Any, Callable, Sequence, Union

from geocam_gui.core.errors import WriteError, os_error_reason

Data = Union[bytes, str, Callable[[Path], None]]
TMP_SUFFIX = ".tmp"

def write_error(path: str | os.PathLike, exc: OSError) -> WriteError:
    """The sentence for an ``OSError`` met while writing ``path``."""
    return WriteError(path, os_error_reason(exc))


def atomic_write(path: str | os.PathLike, data: Data, *, fsync: bool = True) -> Path:
    """Write ``data`` to ``path`` all-or-nothing; returns ``path`` as a ``Path``."""
    return atomic_write_group([(path, data)], fsync=fsync)[0]


def atomic_write_json(path: str | os.PathLike, obj: Any, *, fsync: bool = True, indent: int | None = 2,
                      sort_keys: bool = False, ensure_ascii: bool = False,
                      default: Callable[[Any], Any] | None = None) -> Path:
    """Write ``obj`` as strict JSON (non-finite numbers as ``null``) followed by a newline."""
    return atomic_write(path, json_text(obj, indent=indent, sort_keys=sort_keys, ensure_ascii=ensure_ascii,
                                        default=default), fsync=fsync)


def json_text(obj: Any, *, indent: int | None = 2, sort_keys: bool = False, ensure_ascii: bool = False,
              default: Callable[[Any], Any] | None = None) -> str:
    """``obj`` as strict JSON text ending in a newline: JSON has no NaN or Infinity, so a
    non-finite number is written as ``null`` (``validate.dumps``)."""
    from geocam_gui.core.validate import dumps

    return dumps(obj, indent=indent, sort_keys=sort_keys, ensure_ascii=ensure_ascii, default=default) + "\n"


def json_default(obj: Any) -> Any:
    """``default=`` for the JSON writers: what metadata holds beyond JSON's types - a path as
    text, a set as a sorted list (the same bytes in every process, whatever its hash seed; json
    writes tuples itself), a numpy or torch scalar as a number, an array as nested lists."""
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=repr)
    if getattr(obj, "ndim", None) == 0 and hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def atomic_write_group(items: Sequence[tuple[str | os.PathLike, Data]], *, fsync: bool = True) -> list[Path]:
    """Write every ``(path, data)`` to a temporary file, then rename them all in order.

    Nothing is renamed until every file is written (and fsync'ed). If a rename fails, the files
    renamed before it stay replaced and the rest keep their old content; no temporary is left.
    """
    targets = [Path(p) for p, _ in items]
    temps: list[Path] = []
    current = targets[0] if targets else Path(".")
    try:
        for target, (_, data) in zip(targets, items):
            current = target
            _write_temp(target, data, fsync, temps)
        for tmp, target in zip(temps, targets):
            current = target
            os.replace(tmp, target)
        temps.clear()
        if fsync:
            for folder in dict.fromkeys(t.parent for t in targets):
                _fsync_dir(folder)
    except OSError as exc:
        raise write_error(current, exc) from exc
    finally:
        for tmp in temps:
            with contextlib.suppress(OSError):
                tmp.unlink()
    return targets


def _write_temp(target: Path, data: Data, fsync: bool, temps: list[Path]) -> None:
    """Write ``data`` to a new temporary beside ``target``, appended to ``temps`` once it exists."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}{TMP_SUFFIX}")
    # O_EXCL: never follow or reuse a file someone else put there; mode 0o666 goes through the umask.
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_BINARY", 0), 0o666)
    temps.append(tmp)
    if callable(data):
        os.close(fd)
        data(tmp)
        if fsync:
            fsync_file(tmp)
    else:
        raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())


def to_file_object(save: Callable[..., None], *args: Any, **kwargs: Any) -> Callable[[Path], None]:
    """A writer calling ``save(file_object, *args, **kwargs)``, for savers that would change a
    path's name (``np.save`` adds ".npy", ``np.savez_compressed`` ".npz" to a temporary's)."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            save(fh, *args, **kwargs)

    return write


def temp_beside(path: str | os.PathLike) -> Path:
    """A new, empty temporary file in ``path``'s folder (mode 0o666 through the umask), for a
    writer that streams into it before ``commit_file`` renames it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{TMP_SUFFIX}")
    try:
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_BINARY", 0), 0o666))
    except OSError as exc:
        raise write_error(path, exc) from exc
    return tmp


def commit_file(tmp: Path, path: str | os.PathLike) -> None:
    """Rename a complete, fsync'ed temporary file over ``path`` and make the rename durable."""
    try:
        os.replace(tmp, path)
    except OSError as exc:
        raise write_error(path, exc) from exc
    _fsync_dir(Path(path).parent)


def link_or_copy(src: Path, dst: str | os.PathLike) -> int:
    """Make ``dst`` hold ``src``'s bytes, atomically: a hard link where the file system allows it
    (no bytes written), else a copy; returns the bytes written (0 for a link)."""
    import shutil

    tmp = temp_beside(dst)
    written = 0
    try:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
            fsync_file(tmp)
            written = tmp.stat().st_size
        commit_file(tmp, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return written


def publish_folder(tmp: Path, dest: str | os.PathLike) -> Path:
    """Put the complete working folder ``tmp`` in place as ``dest`` (an old ``dest`` is removed
    first): readers see the old entry, none, or the new one whole - never a half-written one."""
    import shutil

    dest = Path(dest)
    shutil.rmtree(dest, ignore_errors=True)
    try:
        os.replace(tmp, dest)
    except OSError as exc:
        raise write_error(dest, exc) from exc
    return dest


def fsync_file(path: Path) -> None:
    """Flush a written file to the disk."""
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (skipped where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
