"""What the long model commands (analyze, units) share: their inputs' checks and a progress line."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable


def progress_printer() -> Callable[..., None]:
    """``progress(done, total, text="")`` printing ``[done/total] text`` over itself on stderr."""
    show = sys.stderr.isatty()
    last = [0.0]

    def progress(done: int, total: int, text: str = "") -> None:
        now = time.monotonic()
        if show and (now - last[0] > 0.5 or done == total):
            last[0] = now
            print(f"\r[{done}/{total}] {text[:70]:<70}", end="\n" if done == total else "", file=sys.stderr, flush=True)

    return progress


def _model_order(path: Path) -> tuple:
    """Checkpoints of a run folder in the paper's order (shallow, vgg11, resnet18), then by path."""
    from geocam_gui.core.models import MODEL_NAMES

    name = path.parent.name
    return (MODEL_NAMES.index(name) if name in MODEL_NAMES else len(MODEL_NAMES), str(path))


def expand_checkpoints(items: list[str]) -> list[Path]:
    from geocam_gui.core.checkpoints import find_checkpoints
    from geocam_gui.core.errors import BadArgument

    out: list[Path] = []
    for item in items:
        p = Path(item).expanduser()
        if p.is_dir():
            found = find_checkpoints(p)
            if not found:
                raise BadArgument(f"{p} is a folder without any trained checkpoint (best.json) in it.")
            out.extend(sorted(found, key=_model_order))
        else:
            out.append(p)
    return out


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
