"""The progress line of the long commands (analyze, units): on a terminal only, twice a second."""

from __future__ import annotations

import sys
import time
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
