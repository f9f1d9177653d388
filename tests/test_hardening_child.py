"""Issue 15: the training child never outlives the GUI (kill -9 the parent, the child stops)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

PARENT = textwrap.dedent("""
    import multiprocessing as mp
    import sys

    from geocam_gui.core.data.datasets import open_data
    from geocam_gui.core.train.child import run_queue
    from geocam_gui.core.train.config import default_config

    if __name__ == "__main__":
        data, out = sys.argv[1], sys.argv[2]
        cfg = default_config("shallow", "cpu")
        cfg.epochs, cfg.image_size, cfg.batch_size, cfg.workers = 1000, 32, 2, 0
        ctx = mp.get_context("spawn")  # as ui/workers.py starts it
        events, cancel, pause = ctx.Queue(), ctx.Event(), ctx.Event()
        child = ctx.Process(target=run_queue, args=([cfg.validate()], open_data(data), out, events, cancel, pause),
                            daemon=True)
        child.start()
        print(child.pid, flush=True)
        while True:
            events.get()
""")


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")  # a zombie has exited
    except (FileNotFoundError, ProcessLookupError):
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and sends SIGKILL")
def test_the_training_child_stops_when_its_parent_is_killed(tmp_path, torch_threads):
    from geocam_gui.core.train.config import resume_config
    from geocam_gui.core.train.saver import load_resume

    rng = np.random.default_rng(0)
    for c in ("pittsburgh", "tokyo"):
        (tmp_path / "data" / c).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(tmp_path / "data" / c / f"{i}.png")
    (tmp_path / "parent.py").write_text(PARENT, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    parent = subprocess.Popen([sys.executable, str(tmp_path / "parent.py"), str(tmp_path / "data"),
                               str(tmp_path / "run")], stdout=subprocess.PIPE, env=env, cwd=tmp_path)
    child = None
    try:
        child = int(parent.stdout.readline())
        state = tmp_path / "run" / "shallow" / "last.safetensors"
        deadline = time.monotonic() + 240
        while not state.is_file():  # a complete epoch is on disk: the child is mid-run now
            assert time.monotonic() < deadline, "the child never finished an epoch"
            assert parent.poll() is None and not _gone(child)
            time.sleep(0.2)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        killed = time.monotonic()
        while not _gone(child) and time.monotonic() - killed < 5:
            time.sleep(0.05)
        assert _gone(child), "the orphaned training child still runs 5 s after its parent died"
    finally:
        if parent.poll() is None:
            parent.kill()
        if child is not None and not _gone(child):
            os.kill(child, signal.SIGKILL)
    st = load_resume(tmp_path / "run" / "shallow")  # the last complete epoch stays resumable
    assert st is not None and st["epoch"] >= 1
    assert resume_config(tmp_path / "run", "shallow") is not None
