"""What the long commands share: their inputs' checks, the paper's model order and a progress bar
(plain lines when stderr is not a terminal)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable


def progress_printer(stream=None, *, steps: int = 10, transient: bool = False,
                     heartbeat_s: float = 30.0) -> Callable[..., None]:
    """``progress(done, total, text="")`` for a long command, on stderr.

    On a terminal: a bar redrawn in place (at most twice a second), ended by a new line at
    ``done == total`` (erased instead when ``transient``, e.g. within a training epoch).
    Otherwise (a log file, a pipe, a batch job): a plain line ``[done/total] text`` at the first
    call, at every ``1/steps`` of the work, at the end, and at least every ``heartbeat_s``
    seconds while it advances, so a long run is never silent. A smaller ``done`` or another
    ``total`` starts a new stage (a new bar, new lines)."""
    out = stream if stream is not None else sys.stderr
    tty = bool(getattr(out, "isatty", lambda: False)())
    state = {"drawn": 0.0, "said": 0.0, "bucket": -1, "done": -1, "total": None, "open": False}

    def progress(done: int, total: int, text: str = "") -> None:
        done, total = int(done), int(total)
        now = time.monotonic()
        new_stage = total != state["total"] or done < state["done"]
        if new_stage:
            state.update(bucket=-1, total=total)
        state["done"] = done
        end = total > 0 and done >= total
        if tty:
            if not (new_stage or end or now - state["drawn"] >= 0.5):
                return
            state["drawn"] = now
            print("\r" + _bar(done, total, text), end="", file=out, flush=True)
            state["open"] = True
            if end:
                print("\r" + " " * 100 + "\r" if transient else "", file=out, end="" if transient else "\n",
                      flush=True)
                state["open"] = False
            return
        bucket = done * steps // total if total > 0 else 0
        if bucket > state["bucket"] or end or now - state["said"] >= heartbeat_s:
            state["bucket"] = bucket
            state["said"] = now
            print(_line(done, total, text), file=out, flush=True)

    return progress


def _line(done: int, total: int, text: str) -> str:
    pct = f" {100 * done // total:3d} %" if total > 0 else ""
    return f"[{done}/{total if total > 0 else '?'}]{pct} {text}".rstrip()


def _bar(done: int, total: int, text: str, width: int = 24) -> str:
    """``[#########---------]  12/40  text`` (at most 100 characters)."""
    filled = width * min(done, total) // total if total > 0 else 0
    head = f"[{'#' * filled}{'-' * (width - filled)}] {done}/{total if total > 0 else '?'} "
    return (head + text)[:100].ljust(100)


def _model_name(path: Path) -> str:
    """The model a checkpoint holds (its metadata), else its run folder's name."""
    from geocam_gui.core.checkpoints import read_meta
    from geocam_gui.core.errors import GeoCamError

    try:
        name = read_meta(path).get("model")
    except (GeoCamError, OSError, ValueError, AttributeError):
        name = None
    return name if isinstance(name, str) else path.parent.name


def paper_order(paths: list[Path]) -> list[Path]:
    """Checkpoints in the paper's order (Shallow CNN, VGG11, ResNet18; others after), each
    model's checkpoints in the order given: a shell glob such as ``runs/*/best.json`` comes
    sorted by folder name (resnet18, shallow, vgg11), which is not an order anybody chose."""
    from geocam_gui.core.models import MODEL_NAMES

    def rank(p: Path) -> int:
        name = _model_name(p)
        return MODEL_NAMES.index(name) if name in MODEL_NAMES else len(MODEL_NAMES)

    return sorted(paths, key=rank)  # stable: a model's own checkpoints keep their order


def expand_checkpoints(items: list[str], *, keep_order: bool = False) -> list[Path]:
    """The checkpoint files of ``items`` (files, or run folders: every best.json below them), in
    the paper's order unless ``keep_order``."""
    from geocam_gui.core.checkpoints import find_checkpoints
    from geocam_gui.core.errors import BadArgument

    out: list[Path] = []
    for item in items:
        p = Path(item).expanduser()
        if p.is_dir():
            found = find_checkpoints(p)
            if not found:
                raise BadArgument(f"{p} is a folder without any trained checkpoint (best.json) in it.")
            out.extend(paper_order(sorted(found, key=str)))
        else:
            out.append(p)
    return out if keep_order else paper_order(out)


def checked_inputs(args: argparse.Namespace) -> tuple[list[Path], object, Path]:
    """(checkpoints, index, output folder) of ``--checkpoint``, ``--data``, ``--split`` and
    ``--out``, checked before minutes of work: a bad one is ``BadArgument``/``BadData`` (exit 2),
    an output folder that cannot be written a sentence (exit 1)."""
    from geocam_gui.core.data.datasets import open_data
    from geocam_gui.core.errors import BadArgument, BadData
    from geocam_gui.core.paths import check_writable_folder

    if args.limit is not None and args.limit < 1:
        raise BadArgument(f"--limit must be at least 1, got {args.limit}.")
    checkpoints = expand_checkpoints(args.checkpoint)
    data = Path(args.data).expanduser()
    if not data.exists():
        raise BadArgument(f"The data folder {data} does not exist.")
    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        raise BadArgument(f"--out {out} exists and is not a folder.")
    index = open_data(data)
    check_writable_folder(out)
    if not index.split(args.split):
        raise BadData(f"The {args.split!r} split of {data} has no images.")
    return checkpoints, index, out
