"""Shared fixtures. Every test runs with GEOCAM_HOME in a temporary folder: no test touches ~."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("geocam_home")
    monkeypatch.setenv("GEOCAM_HOME", str(home))
    monkeypatch.setenv("GEOCAM_CHECKPOINTS", str(home / "checkpoints"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("HOME", str(home / "home"))
    yield home


@pytest.fixture(scope="session")
def torch_threads():
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    return torch


@pytest.fixture
def qt_settings(tmp_path):
    """QSettings in INI format under tmp_path, so GUI tests never read or write the user's."""
    from PySide6.QtCore import QSettings

    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    for scope in (QSettings.Scope.UserScope, QSettings.Scope.SystemScope):
        QSettings.setPath(QSettings.Format.IniFormat, scope, str(tmp_path / "settings"))
    # Qt reads its configuration folder once per process, so an earlier test's saved layout
    # could still be found: every test starts from empty settings.
    from geocam_gui.ui import window_settings

    window_settings.reset()
    return tmp_path / "settings"


@pytest.fixture
def main_window(qtbot, qt_settings, _isolated_home):
    """The real main window with temp settings/cache/data; fails the test if a QThread leaks."""
    from geocam_gui.ui import workers
    from geocam_gui.ui.main_window import MainWindow

    window = MainWindow(checkpoint_dir=_isolated_home / "checkpoints")
    qtbot.addWidget(window)
    window.resize(1280, 800)
    window.show()
    qtbot.waitExposed(window)
    yield window
    window.close()
    qtbot.waitUntil(lambda: not workers.running_threads(), timeout=20000)
    leaked = workers.running_threads()
    assert not leaked, f"threads outlived the window: {leaked}"


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory):
    """32 px demo set: 16 images per class, split by place into train/val/test."""
    from geocam_gui.core.data.demo import generate_demo

    return generate_demo(tmp_path_factory.mktemp("data") / "tiny", per_class=16, size=32, views_per_place=2, seed=3)


@pytest.fixture(scope="session")
def default_demo(tmp_path_factory):
    """The default demo set exactly as ``geocam demo-data`` and the GUI draw it (``DEFAULTS``:
    2,400 scenes per city at 128 px); generated once (about a minute) for the tests that need it."""
    from geocam_gui.core.data.demo import DEFAULTS, generate_demo

    return generate_demo(tmp_path_factory.mktemp("default") / "demo", **DEFAULTS)


@pytest.fixture
def tiny_index(tiny_demo):
    from geocam_gui.core.data.datasets import open_data

    return open_data(tiny_demo)


@pytest.fixture
def cancel_mid_pass(qtbot):
    """``check(panel, kind, other_lane)``: start the tab's whole-dataset pass (the compute
    process's job ``kind``), cancel it while it reports progress, and show that the process
    stopped it unfinished: another whole-dataset pass (on ``other_lane``), which waits for it,
    answers, and the count of completed ``kind`` jobs has not moved."""

    def check(panel, kind: str, other_lane: str) -> None:
        service = panel._job.bridge.service
        with qtbot.waitSignal(panel._job.progress, timeout=120000):  # running in the compute process
            assert panel.start()
        before = service.request("stats", "stats", timeout=120)  # served between two of its batches
        panel.cancel()
        assert not panel.is_running()  # the tab answers at once
        service.request(other_lane, "sleep", seconds=0.0, timeout=120)
        assert service.request("stats", "stats", timeout=60).get(kind, 0) == before.get(kind, 0)

    return check


def _process_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


@pytest.fixture
def process_alive():
    """``process_alive(pid)``: whether the process runs (Linux /proc; a zombie counts as gone)."""
    return _process_alive
