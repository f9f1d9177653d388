"""Issue 16 point 6: docks dragged over the viewer come back leaving it room on the next launch; the curves of
the previous dataset go when another one is opened."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")


def _window(qtbot, tmp_path):
    from geocam_gui.ui.main_window import MainWindow

    w = MainWindow(checkpoint_dir=tmp_path / "ckpt")
    qtbot.addWidget(w)
    w.resize(1280, 800)
    w.show()
    qtbot.waitExposed(w)
    return w


def test_docks_dragged_over_the_viewer_come_back_leaving_it_room(qtbot, qt_settings, tmp_path):
    from PySide6.QtCore import Qt

    from geocam_gui.ui.window_settings import MAX_BOTTOM, MAX_SIDE, MIN_DOCK

    w = _window(qtbot, tmp_path)
    w.resizeDocks([w.training_dock], [760], Qt.Orientation.Vertical)  # the viewer squeezed to its minimum
    w.resizeDocks([w.browser_dock], [1100], Qt.Orientation.Horizontal)
    qtbot.waitUntil(lambda: w.training_dock.height() > MAX_BOTTOM * w.height(), timeout=5000)
    qtbot.waitUntil(lambda: w.browser_dock.width() > MAX_SIDE * w.width(), timeout=5000)
    squeezed = w.viewer.height()
    w.close()
    again = _window(qtbot, tmp_path)
    assert again.restored_geometry
    qtbot.waitUntil(lambda: MIN_DOCK <= again.training_dock.height() <= MAX_BOTTOM * again.height() + 1
                    and MIN_DOCK <= again.browser_dock.width() <= MAX_SIDE * again.width() + 1, timeout=5000)
    assert again.viewer.height() > squeezed
    again.grab().save(str(tmp_path / "restored.png"))
    again.close()


def test_a_settings_file_with_junk_restores_nothing(qtbot, qt_settings, tmp_path):
    from geocam_gui.ui import window_settings

    s = window_settings.settings()
    s.setValue("settingsVersion", window_settings.SETTINGS_VERSION)
    s.setValue("geometry", "not a geometry")
    s.setValue("windowState", 12)
    s.sync()
    w = _window(qtbot, tmp_path)
    assert not w.restored_geometry and w.training_dock.isVisible()
    w.close()


def test_opening_another_dataset_clears_the_curves(main_window, qtbot, tiny_demo, tmp_path):
    from geocam_gui.core.data.demo import generate_demo

    other = generate_demo(tmp_path / "other", per_class=10, size=32, views_per_place=2, seed=5)
    w = main_window
    w.open_dataset([str(tiny_demo)])
    qtbot.waitUntil(lambda: w.index is not None and w.is_idle(), timeout=60000)
    curves = w.training.curves
    curves.add("shallow", "acc", "val", 1.0, 0.6)
    w.training.results.add_row("shallow", {"accuracy": 0.6}, "x/best.json", ["a", "b"])
    first = w.index
    w.open_dataset([str(other)])
    qtbot.waitUntil(lambda: w.index is not first and w.is_idle(), timeout=60000)
    assert curves.series("shallow", "acc", "val") == [] and w.training.results.rowCount() == 0
