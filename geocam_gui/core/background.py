"""Put a worker process below the window on the CPU, and end it when its parent dies.

On a CPU-only machine the training child and the compute process compete with the GUI thread
(and with Qt's raster helper threads) for the cores. ``nice`` only lowers their share, and a GUI
thread that wakes up may still wait for a child's time slice. Three policies (Linux; elsewhere
each falls back to a plain renice, or to nothing where that is refused):

* ``"idle"`` (the training child on a CPU): ``SCHED_IDLE``, it runs only on what the rest of the
  machine leaves idle and a waking GUI thread pre-empts it at once. Measured with
  ``benchmarks/gui_responsiveness.py --parts train`` on 2 cores, 8 runs each (benchmarks/RESULTS.md):
  worst stall median 48.5 ms and 4 of 8 runs over 50 ms at nice +5, 42 ms and 2 of 8 at
  SCHED_IDLE. The price: a thread on a core another program keeps busy gets almost nothing, and
  its siblings wait for it at every operation, so the child trains only on the free cores
  (``core.cpu_share.ThreadGovernor``).
* ``"batch"`` (the compute process on a CPU): ``SCHED_BATCH`` at +``nice``: it never pre-empts the
  window when it wakes, yet keeps its share of a busy CPU, because a click's explanation must
  arrive even while something else computes.
* ``"nice"`` (a process feeding a GPU): +``nice`` only, so that other programs cannot starve it.

Call it first thing in the child, before torch starts its threads (new threads inherit the
policy and the nice value); threads that already exist are moved too.

``watch_parent(on_death)``: the training child and the demo generator's workers call it so that
a killed window leaves none of them behind.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Callable

POLICIES = ("idle", "batch", "nice")


def run_in_background(nice: int = 5, *, policy: str = "idle") -> str:
    """Lower this process's CPU priority (every thread); returns what was done: "idle", "batch",
    "nice" or "unchanged"."""
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    tids = _threads()
    sched = getattr(os, {"idle": "SCHED_IDLE", "batch": "SCHED_BATCH"}.get(policy, ""), None)
    moved = sched is not None and hasattr(os, "sched_setscheduler") and _each(
        tids, lambda tid: os.sched_setscheduler(tid, sched, os.sched_param(0)))
    if moved and policy == "idle":
        return "idle"  # the nice value means nothing under SCHED_IDLE
    if nice and _renice(tids, nice):
        return "batch" if moved else "nice"
    return "batch" if moved else "unchanged"


def _threads() -> list[int]:
    """This process's thread ids (Linux), or [0]: the calling thread / the process elsewhere."""
    try:
        return [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


def _each(tids: list[int], apply) -> bool:
    """``apply`` to every thread; False when the system refuses (a thread that ended meanwhile
    is skipped)."""
    done = False
    for tid in tids:
        try:
            apply(tid)
            done = True
        except ProcessLookupError:
            continue
        except OSError:
            return False
    return done


def _renice(tids: list[int], nice: int) -> bool:
    # On Linux a nice value belongs to a thread: os.nice() would change only the calling one.
    if hasattr(os, "setpriority"):
        return _each(tids, lambda tid: os.setpriority(
            os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice)))
    try:
        os.nice(nice)
        return True
    except (AttributeError, OSError):
        return False


def watch_parent(on_death: Callable[[], None], stop: threading.Event | None = None,
                 poll_s: float = 0.25) -> threading.Thread:
    """Call ``on_death()`` once, from a daemon thread, when the process that started this one dies
    (until ``stop`` is set).

    A child started by ``multiprocessing`` holds a pipe from its parent (its sentinel) whose end
    of file is the parent's death, whatever killed it; without one (started some other way) the
    parent pid is polled (an orphan is re-parented, so the pid changes). Either is seen within
    ``poll_s`` seconds.
    """
    import multiprocessing

    stop = stop or threading.Event()
    parent = multiprocessing.parent_process()
    ppid = os.getppid()

    def alive() -> bool:
        if parent is not None:
            parent.join(poll_s)  # returns at once at the pipe's end of file
            return parent.is_alive()
        time.sleep(poll_s)
        return os.getppid() == ppid

    def watch() -> None:
        while not stop.is_set():
            if not alive():
                if not stop.is_set():
                    on_death()
                return

    thread = threading.Thread(target=watch, name="geocam-parent-watch", daemon=True)
    thread.start()
    return thread
