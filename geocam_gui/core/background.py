"""Put a worker process below the window on the CPU.

On a CPU-only machine the training child and the compute process compete with the GUI thread
(and with Qt's raster helper threads) for the cores. ``nice`` only lowers their share, and a GUI
thread that wakes up may still wait for a child's time slice; ``SCHED_IDLE`` (Linux) lets the
child run only on what the rest of the machine leaves idle, and a waking GUI thread pre-empts it
at once. Measured with ``benchmarks/gui_responsiveness.py --parts train`` on 2 cores, 8 runs each
(benchmarks/RESULTS.md): worst stall median 48.5 ms and 4 of 8 runs over 50 ms at nice +5, median
42 ms and 2 of 8 over at SCHED_IDLE. The price: a child at SCHED_IDLE gets almost nothing while
another program keeps the CPU busy. Elsewhere, where that is refused, or for a process that feeds
a GPU (``idle=False``), it renices instead.

Call it first thing in the child, before torch starts its threads (new threads inherit the
policy); threads that already exist are moved too.
"""

from __future__ import annotations

import os


def run_in_background(nice: int = 5, *, idle: bool = True) -> str:
    """Lower this process's CPU priority; returns what was done: "idle", "nice" or "unchanged"."""
    if idle and hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_IDLE"):
        try:
            tids = [int(t) for t in os.listdir("/proc/self/task")]
        except OSError:
            tids = [0]
        try:
            for tid in tids:
                os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
            return "idle"
        except OSError:
            pass
    if nice:
        try:
            os.nice(nice)
            return "nice"
        except (AttributeError, OSError):
            pass
    return "unchanged"
