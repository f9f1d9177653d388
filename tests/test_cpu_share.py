"""core/cpu_share.py: the GUI's training child trains on the cores other programs leave free."""

from __future__ import annotations

import pytest

from geocam_gui.core.cpu_share import ThreadGovernor, read_cpu_ticks, read_own_ticks, threads_for

PROC_STAT = """cpu  1000 50 300 8000 100 10 20 0 0 0
cpu0 500 25 150 4000 50 5 10 0 0 0
cpu1 500 25 150 4000 50 5 10 0 0 0
intr 12345
ctxt 999
"""


def test_proc_readers_parse_the_kernels_format_and_refuse_anything_else(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text(PROC_STAT)
    # busy = everything but idle (8000) and iowait (100); the "cpuN" lines count the CPUs
    assert read_cpu_ticks(str(stat)) == (1000 + 50 + 300 + 10 + 20, 9480, 2)
    own = tmp_path / "self_stat"
    own.write_text("4242 (python3 (a) b) S 1 2 3 4 5 6 7 8 9 10 170 30 0 0 20 0 3 0 100 0\n")
    assert read_own_ticks(str(own)) == 200  # utime + stime, after a name holding spaces and brackets
    for bad in ("", "garbage\n", "cpu x y z\n", "intr 1 2 3 4 5 6 7 8\n"):
        stat.write_text(bad)
        assert read_cpu_ticks(str(stat)) is None, bad
    own.write_text("4242 (python3) S 1 2")
    assert read_own_ticks(str(own)) is None
    assert read_cpu_ticks(str(tmp_path / "missing")) is None and read_own_ticks(str(tmp_path / "missing")) is None


def test_threads_follow_the_free_cores():
    assert threads_for(0.0, 2, 2) == 2
    assert threads_for(0.4, 2, 2) == 2  # the window redrawing now and then takes no core away
    assert threads_for(0.6, 2, 2) == 1
    assert threads_for(1.0, 2, 2) == 1
    assert threads_for(5.0, 2, 2) == 1  # never fewer than one
    assert threads_for(-1.0, 2, 2) == 2
    assert threads_for(1.0, 16, 4) == 4  # never more than the run started with
    assert threads_for(3.4, 8, 8) == 5


class _Machine:
    """A fake /proc: ``others`` cores busy besides this process's ``own`` cores, per second."""

    def __init__(self, cpus=2):
        self.cpus, self.t, self.busy, self.own = cpus, 0.0, 0, 0
        self.others, self.own_rate = 0.0, 2.0

    def advance(self, seconds, others, own):
        self.t += seconds
        self.busy += round(100 * seconds * (others + own))
        self.own += round(100 * seconds * own)

    def machine(self):
        return self.busy, round(100 * self.t * self.cpus), self.cpus

    def own_ticks(self):
        return self.own


def test_the_governor_measures_other_programs_and_sets_the_threads():
    m, set_to = _Machine(), []
    gov = ThreadGovernor(2, interval_s=2.0, set_threads=set_to.append, read_machine=m.machine,
                         read_own=m.own_ticks, clock=lambda: m.t)
    m.advance(1.0, others=1.0, own=1.0)
    assert gov.poll() is None and set_to == []  # not due yet
    m.advance(1.5, others=1.0, own=1.0)  # a burst of another program...
    assert gov.poll() is None and set_to == []  # ...is not enough (patience 2)
    m.advance(2.5, others=0.2, own=2.0)
    assert gov.poll() is None
    m.advance(2.5, others=1.0, own=1.0)  # another program keeps one core busy
    assert gov.poll() is None
    m.advance(2.5, others=1.0, own=1.0)
    assert gov.poll() == "Other programs use 1.0 of the 2 cores: training on 1 thread."
    assert set_to == [1] and gov.threads == 1
    m.advance(2.5, others=0.9, own=1.0)
    assert gov.poll() is None and set_to == [1]  # unchanged: nothing said
    m.advance(2.5, others=0.1, own=1.0)  # it ended
    assert gov.poll() == "Other programs use 0.1 of the 2 cores: training on 2 threads."
    assert set_to == [1, 2]
    m.advance(2.5, others=1.2, own=0.05)  # starved threads: their own time does not hide the others'
    assert gov.poll() is None
    m.advance(2.5, others=1.2, own=0.05)
    assert gov.poll().startswith("Other programs use 1.2 of the 2 cores") and gov.threads == 1
    gov.restore()
    assert set_to == [1, 2, 1, 2] and gov.threads == 2
    gov.restore()
    assert set_to == [1, 2, 1, 2]


def test_the_governor_does_nothing_without_readings():
    set_to, clock = [], [0.0]
    gov = ThreadGovernor(2, interval_s=1.0, set_threads=set_to.append, read_machine=lambda: None,
                         read_own=lambda: 7, clock=lambda: clock[0])
    for _ in range(3):
        clock[0] += 5
        assert gov.poll() is None
    assert set_to == []


@pytest.mark.parametrize("deterministic", [False, True])
def test_a_cpu_run_is_governed_unless_it_asks_for_determinism(tiny_index, tmp_path, torch_threads, deterministic):
    """The loop polls the trainer's governor before every batch, logs a change, applies it on the
    computing thread, and gives the run's thread count back at the end; a deterministic run keeps
    its threads (their number changes the order of sums)."""
    from geocam_gui.core.train.config import TrainConfig
    from geocam_gui.core.train.engine import Trainer

    start = torch_threads.get_num_threads()
    if start < 2:
        pytest.skip("needs two threads to take one away")
    seen = []
    ticks = {"t": 0.0, "busy": 0}

    def machine():  # another program keeps one core busy
        ticks["t"] += 1.0
        ticks["busy"] += 100
        return ticks["busy"], round(200 * ticks["t"]), 2

    gov = ThreadGovernor(2, interval_s=0.0, patience=1, set_threads=lambda n: (torch_threads.set_num_threads(n), seen.append(n)),
                         read_machine=machine, read_own=lambda: 0)
    logs, threads_in_batches = [], []

    def callback(event):
        if event.kind == "log":
            logs.append(event.data)
        elif event.kind == "batch":
            threads_in_batches.append(torch_threads.get_num_threads())

    trainer = Trainer(TrainConfig(model="shallow", epochs=1, batch_size=8, image_size=32, device="cpu", seed=1,
                                  deterministic=deterministic), tiny_index, tmp_path, callback)
    trainer.thread_governor = gov
    assert trainer.run().status == "finished"
    assert torch_threads.get_num_threads() == start
    if deterministic:
        assert seen == [] and set(threads_in_batches) == {start}
    else:
        assert seen == [1, 2] and threads_in_batches and set(threads_in_batches) == {1}
        assert any(d.get("message", "").endswith("training on 1 thread.") and d.get("threads") == 1 for d in logs)
