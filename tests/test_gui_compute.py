"""The window's model work runs in the compute process (issue 17), driven through the real window."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

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
def test_closing_the_application_leaves_no_compute_process(main_window, qtbot, demo_set, process_alive):
    from geocam_gui.ui import compute

    w = main_window
    _with_checkpoints(w, qtbot, demo_set)
    w.browser.select_row(0)
    qtbot.waitUntil(lambda: w.is_idle() and w.viewer._explanation is not None, timeout=120000)
    pid = w.viewer.bridge.pid
    assert pid is not None and process_alive(pid)
    w.close()
    compute.shutdown_all()  # what QApplication.aboutToQuit runs when the last window closes
    deadline = time.monotonic() + 5
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not process_alive(pid), "the compute process outlived the application"


# ---------------------------------------------------------------- the Analysis and Units tabs (issue 17)
@pytest.fixture(scope="module")
def shallow_ckpt(tmp_path_factory, demo_set):
    import torch

    from geocam_gui.core.checkpoints import base_meta, save_checkpoint
    from geocam_gui.core.models import build_model

    torch.manual_seed(0)
    return str(save_checkpoint(tmp_path_factory.mktemp("ck") / "shallow" / "best", build_model("shallow", 2),
                               base_meta("shallow", ["pittsburgh", "tokyo"], 32)))


def test_a_killed_compute_process_fails_the_analysis_with_a_sentence_and_the_next_run_works(
        qtbot, qt_settings, demo_set, shallow_ckpt):
    from geocam_gui.core.data.datasets import open_data
    from geocam_gui.ui.analysis_panel import AnalysisPanel

    panel = AnalysisPanel()
    qtbot.addWidget(panel)
    panel.set_context(open_data(demo_set), {"shallow": shallow_ckpt})
    panel.method.setCurrentIndex(panel.method.findData("scorecam"))  # long enough to be killed in
    assert panel.start()
    qtbot.waitUntil(lambda: panel.progress.maximum() > 1, timeout=60000)  # the pass reports its batches
    os.kill(panel._job.bridge.pid, signal.SIGKILL)
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=30000)
    assert "Analysis failed" in panel.status.text() and "compute process" in panel.status.text()
    assert panel.run_button.isEnabled()
    panel.method.setCurrentIndex(panel.method.findData("gradcam"))
    panel.limit.setValue(4)
    with qtbot.waitSignal(panel.analysisFinished, timeout=120000) as blocker:  # a fresh process answers
        assert panel.start()
    assert blocker.args[0]["data"]["images"] == 4 and panel.table_widgets


FRESH = "GEOCAM_TEST_FRESH_WINDOW"


def test_the_window_process_builds_no_model_for_the_analysis_and_units_tabs(tmp_path, demo_set, shallow_ckpt):
    """Run through the real window in a fresh interpreter (other tests import torchvision here)."""
    import subprocess

    env = dict(os.environ, **{FRESH: json.dumps({"data": str(demo_set), "ckpt": shallow_ckpt})})
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                           f"{__file__}::test_in_a_fresh_window_process"], env=env, cwd=Path(__file__).parents[1],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.mark.skipif(FRESH not in os.environ, reason="run by the test above in a fresh interpreter")
def test_in_a_fresh_window_process(main_window, qtbot):
    from geocam_gui.core.data.datasets import open_data

    model_code = ("torchvision", "geocam_gui.core.analysis.run", "geocam_gui.core.analysis.units",
                  "geocam_gui.core.analysis.units_run")
    assert not [m for m in model_code if m in sys.modules]
    given = json.loads(os.environ[FRESH])
    w = main_window
    index = open_data(given["data"])
    w.set_index(index)
    w.workspace.set_checkpoint("shallow", given["ckpt"])
    analysis, units = w.analysis, w.units
    analysis.limit.setValue(4)
    with qtbot.waitSignal(analysis.analysisFinished, timeout=120000):
        assert analysis.start()
    assert analysis.table_widgets
    qtbot.waitUntil(lambda: units.layer.currentText() == "features.14", timeout=60000)
    units.top.setValue(2)
    units.limit.setValue(4)
    units.random_check.setChecked(False)
    with qtbot.waitSignal(units.unitsFinished, timeout=120000):
        assert units.start()
    sample = index.split("test")[0]
    w.viewer.set_sample(sample.path, sample.label)
    with qtbot.waitSignal(units.unitMapReady, timeout=60000):
        assert units.show_unit(0)
    # A VGG11 checkpoint: its layer list needs torchvision's model, built in the compute process.
    w.workspace.set_checkpoint("vgg11", str(Path(given["ckpt"]).parent / "vgg11.json"))
    units.model.setCurrentIndex(units.model.findData("vgg11"))
    qtbot.waitUntil(lambda: units.layer.count() > 0 and units.layer.currentText().startswith("features."),
                    timeout=60000)
    assert not [m for m in model_code if m in sys.modules]
    stats = w.viewer.bridge.service.request("stats", "stats", timeout=60)
    assert stats.get("analyze") == 1 and stats.get("units") == 1 and stats.get("unitmap") == 1
    assert stats.get("layers") == 2  # shallow, then vgg11: once per architecture


def test_a_job_replaced_by_another_views_request_on_its_lane_ends_cancelled(qtbot):
    """Two listeners on one lane (two windows sharing the process): the second's request replaces
    the first's, which must end (``cancelled``, not busy) instead of waiting for ever."""
    from geocam_gui.ui.compute import ComputeBridge, LaneJob

    bridge = ComputeBridge("cpu")
    try:
        first, second = LaneJob(bridge, "units"), LaneJob(bridge, "units")
        ends = []
        first.cancelled.connect(lambda: ends.append("first cancelled"))
        first.returned.connect(lambda _r: ends.append("first returned"))
        first.finished.connect(lambda: ends.append("first finished"))
        second.returned.connect(lambda _r: ends.append("second returned"))
        first.start("sleep", seconds=30.0)
        qtbot.wait(200)
        second.start("sleep", seconds=0.1)
        qtbot.waitUntil(lambda: "second returned" in ends and not first.busy(), timeout=60000)
        assert ends.count("first cancelled") == 1 and ends.count("first finished") == 1
        assert "first returned" not in ends and not second.busy()
    finally:
        bridge.shutdown()
