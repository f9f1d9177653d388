"""core/background.py: worker processes below the window on the CPU."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

LINUX_IDLE = pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")


def _child(code: str) -> str:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, check=True).stdout.strip()


@LINUX_IDLE
def test_idle_moves_every_thread_and_threads_started_later_inherit_it():
    out = _child("""
        import os, threading
        from geocam_gui.core.background import run_in_background
        threading.Thread(target=threading.Event().wait, args=(5,), daemon=True).start()
        print(run_in_background(5))
        threading.Thread(target=threading.Event().wait, args=(5,), daemon=True).start()
        tids = [int(t) for t in os.listdir("/proc/self/task")]
        print(len(tids), all(os.sched_getscheduler(t) == os.SCHED_IDLE for t in tids))
    """)
    assert out.splitlines() == ["idle", "3 True"]


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH") or not hasattr(os, "setpriority"), reason="Linux scheduling")
def test_batch_and_nice_renice_every_thread():
    """"batch" (the compute process) keeps a share of a busy CPU at +5 without pre-empting the
    window; "nice" (a GPU feeder) is only reniced. Either way every thread moves, not just the
    caller (on Linux a nice value is a thread's)."""
    out = _child("""
        import os, threading
        from geocam_gui.core.background import run_in_background
        threading.Thread(target=threading.Event().wait, args=(5,), daemon=True).start()
        tids = [int(t) for t in os.listdir("/proc/self/task")]
        start = [os.getpriority(os.PRIO_PROCESS, t) for t in tids]
        def moved(by):
            return [os.getpriority(os.PRIO_PROCESS, t) for t in tids] == [min(19, s + by) for s in start]
        print(run_in_background(5, policy="batch"), all(os.sched_getscheduler(t) == os.SCHED_BATCH for t in tids),
              moved(5))
        print(run_in_background(2, policy="nice"), moved(7))
    """)
    assert out.splitlines() == ["batch True True", "nice True"]


def test_an_unknown_policy_is_refused():
    from geocam_gui.core.background import run_in_background

    with pytest.raises(ValueError, match="policy"):
        run_in_background(5, policy="realtime")


@LINUX_IDLE
def test_the_training_child_trains_below_the_window_on_a_cpu(tmp_path):
    """The real child (core/train/child.py), spawned as ui/workers.py spawns it: all its threads,
    torch's included, at SCHED_IDLE while it trains; its parent untouched."""
    out = _child(f"""
        import multiprocessing as mp, os, time
        import numpy as np
        from PIL import Image
        from geocam_gui.core.data.datasets import index_dataset
        from geocam_gui.core.train import child
        from geocam_gui.core.train.config import config_for
        if __name__ == "__main__":
            root = {str(tmp_path)!r}
            rng = np.random.default_rng(0)
            for c in ("pittsburgh", "tokyo"):
                os.makedirs(f"{{root}}/data/{{c}}")
                for i in range(8):
                    Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(f"{{root}}/data/{{c}}/{{i}}.png")
            cfg = config_for("shallow", "cpu", {{"epochs": 1000, "image_size": 32, "batch_size": 2}})
            ctx = mp.get_context("spawn")
            events, cancel, pause = ctx.Queue(), ctx.Event(), ctx.Event()
            proc = ctx.Process(target=child.run_queue, daemon=True,
                               args=([cfg], index_dataset([f"{{root}}/data"]), f"{{root}}/run", events, cancel, pause))
            proc.start()
            while type(events.get(timeout=120)).__name__ != "ModelEvent":
                pass  # training has started: torch's threads exist
            tids = os.listdir(f"/proc/{{proc.pid}}/task")
            print(len(tids) > 1, all(os.sched_getscheduler(int(t)) == os.SCHED_IDLE for t in tids),
                  os.sched_getscheduler(0) == os.SCHED_OTHER)
            cancel.set()
            proc.join(30)
    """)
    assert out == "True True True"
