"""The window's model work runs in the compute process (issue 17), driven through the real window."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest

pytest.importorskip("pytestqt")


@pytest.fixture(scope="module")
def demo_set(tmp_path_factory):
    from geocam_gui.core.data.demo import generate_demo

    return generate_demo(tmp_path_factory.mktemp("demo") / "set", per_class=12, size=48, views_per_place=2, seed=5)


def _with_checkpoints(window, qtbot, data):
    """Open ``data`` and give the window an untrained shallow checkpoint (enough to explain)."""
    import torch

    from geocam_gui.core.checkpoints import save_checkpoint
    from geocam_gui.core.models import build_model

    window.open_dataset([str(data)])
    qtbot.waitUntil(lambda: window.index is not None and window.is_idle(), timeout=60000)
    torch.manual_seed(0)
    path = save_checkpoint(window.run_dir / "shallow" / "best", build_model("shallow", 2),
                           {"model": "shallow", "classes": window.index.classes, "image_size": 32})
    window.viewer.set_checkpoint("shallow", str(path))
    return path


def _stats(window) -> dict:
    return window.viewer.bridge.service.request("stats", "stats", timeout=60)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def test_quick_selections_compute_only_the_last_image(main_window, qtbot, demo_set):
    import torch

    w = main_window
    _with_checkpoints(w, qtbot, demo_set)
    w.browser.select_row(0)
    qtbot.waitUntil(lambda: w.is_idle() and w.viewer._explanation is not None, timeout=120000)
    before = _stats(w).get("explain", 0)
    for row in range(1, 7):  # six selections faster than one explanation
        w.browser.select_row(row)
    last = w.viewer.current_sample()[0]
    qtbot.waitUntil(lambda: w.is_idle() and w.viewer._explanation.path == last, timeout=120000)
    computed = _stats(w).get("explain", 0) - before
    assert 1 <= computed <= 2, computed  # the last one, and at most the one already running
    assert w.viewer.panes["shallow"].stack.currentIndex() == 0  # its overlay is on screen
    # The window's process loaded no model and holds no CUDA state: the compute process did it.
    assert not hasattr(w.viewer, "_store") and not torch.cuda.is_initialized()
    assert w.viewer.bridge.pid not in (None, os.getpid())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_killed_compute_process_is_a_sentence_and_the_next_selection_works(main_window, qtbot, demo_set):
    w = main_window
    _with_checkpoints(w, qtbot, demo_set)
    w.browser.select_row(0)
    qtbot.waitUntil(lambda: w.is_idle() and w.viewer._explanation is not None, timeout=120000)
    pid = w.viewer.bridge.pid
    w.viewer.bridge.submit("test-sleep", "sleep", seconds=30)  # keep it busy, then kill it mid-request
    w.browser.select_row(1)
    os.kill(pid, signal.SIGKILL)
    pane = w.viewer.panes["shallow"]
    qtbot.waitUntil(lambda: "compute process" in pane.empty_label.text() and pane.stack.currentIndex() == 1,
                    timeout=30000)
    assert "compute process" in w.viewer.heading.text()
    w.browser.select_row(2)  # a fresh process answers
    path = w.viewer.current_sample()[0]
    qtbot.waitUntil(lambda: w.viewer._explanation is not None and w.viewer._explanation.path == path
                    and pane.stack.currentIndex() == 0, timeout=120000)
    assert w.viewer.bridge.pid not in (None, pid)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_closing_the_application_leaves_no_compute_process(main_window, qtbot, demo_set):
    from geocam_gui.ui import compute

    w = main_window
    _with_checkpoints(w, qtbot, demo_set)
    w.browser.select_row(0)
    qtbot.waitUntil(lambda: w.is_idle() and w.viewer._explanation is not None, timeout=120000)
    pid = w.viewer.bridge.pid
    assert pid is not None and _alive(pid)
    w.close()
    compute.shutdown_all()  # what QApplication.aboutToQuit runs when the last window closes
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid), "the compute process outlived the application"
