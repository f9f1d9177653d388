"""Train on the cores other programs leave free (Linux; elsewhere nothing changes).

PyTorch's CPU kernels split each operation evenly over its OpenMP threads and wait for the
slowest. The GUI's training child runs at ``SCHED_IDLE`` (``core.background``), so a thread that
shares its core with any busy program gets almost no time, and every operation waits for it:
with one other program keeping one of two cores busy, two training threads ran ResNet18 steps at
5-12 images/s where one thread on the free core ran 150 (benchmarks/RESULTS.md, "Training beside
a busy program"). :class:`ThreadGovernor` therefore measures, every few seconds, how many cores
the *other* processes use (``/proc/stat`` minus this process's own ``/proc/self/stat``) and
trains on the remaining ones.

The thread count changes the order of floating-point sums, so a governed run is not bit-identical
to another; runs that ask for determinism are not governed.
"""

from __future__ import annotations

import time
from typing import Callable

STAT = "/proc/stat"
SELF_STAT = "/proc/self/stat"


def read_cpu_ticks(path: str = STAT) -> tuple[int, int, int] | None:
    """(busy ticks, total ticks, number of CPUs) of the whole machine since boot, or None."""
    try:
        with open(path, encoding="ascii") as f:
            lines = f.read(1 << 16).splitlines()
        fields = [int(v) for v in lines[0].split()[1:9]]  # user nice system idle iowait irq softirq steal
        cpus = sum(1 for line in lines[1:] if line.startswith("cpu") and line[3:4].isdigit())
    except (OSError, ValueError, IndexError):
        return None
    if len(fields) < 5 or cpus < 1 or lines[0].split()[0] != "cpu":
        return None
    total = sum(fields)
    return total - fields[3] - fields[4], total, cpus


def read_own_ticks(path: str = SELF_STAT) -> int | None:
    """User + system ticks of this process (all its threads) since it started, or None."""
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            text = f.read(4096)
        after = text[text.rindex(")") + 2:].split()  # the name in brackets may hold spaces
        return int(after[11]) + int(after[12])  # fields 14 and 15 of proc(5)
    except (OSError, ValueError, IndexError):
        return None


def threads_for(others: float, cpus: int, most: int) -> int:
    """Threads to train on when other processes use ``others`` cores of ``cpus``: the free
    cores, a core counting as taken from half a core's use on, at least 1, at most ``most``."""
    free = cpus - max(0.0, others)
    return max(1, min(most, int(free + 0.5)))


class ThreadGovernor:
    """Call :meth:`poll` before every batch on the thread that computes; it returns a sentence
    when it changed the number of threads (for the log), else None.

    Threads are taken away only after ``patience`` readings in a row (every ``interval_s``) found
    the cores taken, so that a short burst of the window's own work leaves a run's thread count,
    and so its numbers, as they were; they come back at the first reading that finds cores free.

    ``most``: the thread count to start from and never exceed (the process's count by default).
    ``set_threads`` and the two readers are parameters for the tests."""

    def __init__(self, most: int | None = None, *, interval_s: float = 2.0, patience: int = 2,
                 set_threads: Callable[[int], None] | None = None,
                 read_machine: Callable[[], tuple[int, int, int] | None] = read_cpu_ticks,
                 read_own: Callable[[], int | None] = read_own_ticks,
                 clock: Callable[[], float] = time.monotonic):
        import torch

        self.most = max(1, most or torch.get_num_threads())
        self.threads = self.most
        self.interval_s = interval_s
        self.patience = max(1, patience)
        self._short = 0  # readings in a row that asked for fewer threads
        self._set = set_threads or torch.set_num_threads
        self._read_machine, self._read_own, self._clock = read_machine, read_own, clock
        self._last = self._sample()
        self._due = clock() + interval_s

    @classmethod
    def available(cls) -> bool:
        return read_cpu_ticks() is not None and read_own_ticks() is not None

    def _sample(self):
        machine, own = self._read_machine(), self._read_own()
        return None if machine is None or own is None else (*machine, own)

    def poll(self) -> str | None:
        now = self._clock()
        if now < self._due:
            return None
        self._due = now + self.interval_s
        sample, last = self._sample(), self._last
        self._last = sample
        if sample is None or last is None:
            return None
        busy, total, cpus, own = sample[0] - last[0], sample[1] - last[1], sample[2], sample[3] - last[3]
        if total <= 0:
            return None
        others = max(0.0, (busy - own) / total * cpus)
        want = threads_for(others, cpus, self.most)
        if want >= self.threads:
            self._short = 0
        else:  # fewer only when it lasts: the window's own bursts (a pane's maps) pass by
            self._short += 1
            if self._short < self.patience:
                return None
        if want == self.threads:
            return None
        self._set(want)
        self.threads = want
        return (f"Other programs use {others:.1f} of the {cpus} cores: training on {want} "
                f"thread{'s' if want > 1 else ''}.")

    def restore(self) -> None:
        """Back to ``most`` threads (at the end of a run)."""
        if self.threads != self.most:
            self._set(self.most)
            self.threads = self.most
