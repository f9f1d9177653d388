"""pytest-qt tests that drive the real main window on a small generated demo set."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from geocam_gui.core.explain.store import GROUND_TRUTH, PREDICTED  # noqa: E402


@pytest.fixture(scope="module")
def demo_set(tmp_path_factory):
    from geocam_gui.core.data.demo import generate_demo

    return generate_demo(tmp_path_factory.mktemp("demo") / "set", per_class=20, size=48, views_per_place=2, seed=3)


def open_demo_set(window, qtbot, path):
    window.open_dataset([str(path)])
    qtbot.waitUntil(lambda: window.index is not None and window.is_idle(), timeout=60000)


def tiny_run(panel, epochs=1):
    panel.select_models(["shallow"])
    panel.epochs.setValue(epochs)
    panel.size.setValue(32)
    panel.batch.setValue(8)


def test_window_shell_has_three_areas_and_empty_states(main_window):
    w = main_window
    assert w.browser_dock.isVisible() and w.training_dock.isVisible()
    assert set(w.viewer.panes) == {"shallow", "vgg11", "resnet18"}
    for pane in w.viewer.panes.values():
        assert "train one in the Training panel" in pane.empty_label.text()
    menus = [a.text().replace("&", "") for a in w.menuBar().actions()]
    assert menus == ["File", "View", "Help"]
    assert not w.training.start_button.isEnabled()  # nothing to train on yet
    img = w.grab()
    assert img.width() >= 1000 and img.height() >= 650


def test_browse_train_and_explain(main_window, qtbot, demo_set, monkeypatch):
    w = main_window
    open_demo_set(w, qtbot, demo_set)
    assert w.browser.proxy.rowCount() == 40
    assert w.index.classes == ["pittsburgh", "tokyo"]
    # filters: one class, one split, file-name search
    w.browser.class_filter.setCurrentIndex(w.browser.class_filter.findData("tokyo"))
    assert w.browser.proxy.rowCount() == 20
    w.browser.split_filter.setCurrentIndex(w.browser.split_filter.findData("test"))
    n_test_tokyo = sum(1 for s in w.index.samples if s.label == "tokyo" and s.split == "test")
    assert w.browser.proxy.rowCount() == n_test_tokyo
    w.browser.class_filter.setCurrentIndex(0)
    w.browser.split_filter.setCurrentIndex(0)

    tiny_run(w.training)
    with qtbot.waitSignal(w.training.runFinished, timeout=180000) as blocker:
        w.training.start_button.click()
    assert blocker.args == [True]
    assert w.training.results.rowCount() == 1
    assert w.training.curves.series("shallow", "loss", "train")

    pane = w.viewer.panes["shallow"]
    w.browser.select_row(0)
    qtbot.waitUntil(lambda: pane.rgb is not None and not w.viewer.is_busy(), timeout=60000)
    assert pane.stack.currentIndex() == 0  # the image, not the empty state
    assert "Predicts" in pane.prediction.text()
    # untrained models still say so
    assert w.viewer.panes["vgg11"].stack.currentIndex() == 1

    w.viewer.opacity.setValue(0)
    plain = pane.rgb.copy()
    exp = w.viewer.current_explanation()
    assert np.array_equal(plain, exp.image)  # opacity 0 shows the photo itself
    w.viewer.opacity.setValue(80)
    heat = pane.rgb.copy()
    assert np.abs(heat.astype(int) - plain.astype(int)).mean() > 5
    w.viewer.set_class_choice("pittsburgh")
    a = pane.rgb.copy()
    w.viewer.set_class_choice("tokyo")
    b = pane.rgb.copy()
    assert not np.array_equal(a, b)  # the two classes' evidence differs
    w.viewer.set_class_choice(GROUND_TRUTH)
    w.viewer.set_class_choice(PREDICTED)
    # predictions reach the browser's table
    qtbot.waitUntil(lambda: "shallow" in w.browser.model.predictions and w.is_idle(), timeout=60000)
    assert w.browser.model.predictions["shallow"].shape == (40, 2)

    # File > Export... opens the dialog on the current image and the visible rows
    from geocam_gui.ui.export_dialog import ExportDialog

    opened = []
    monkeypatch.setattr(ExportDialog, "exec", lambda self: opened.append(self) or 0)
    w.export_action.trigger()
    assert len(opened) == 1
    dlg = opened[0]
    qtbot.addWidget(dlg)
    assert dlg.checkpoints["shallow"] == w.viewer.checkpoints()["shallow"]
    assert [p for p, _ in dlg.images] == [w.viewer.current_sample()[0]]
    # several selected images go to the dialog together (a figure of them)
    from PySide6.QtCore import QItemSelectionModel

    sel = w.browser.grid.selectionModel()
    for row in (1, 2):
        sel.select(w.browser.proxy.index(row, 0), QItemSelectionModel.SelectionFlag.Select)
    w.export_action.trigger()
    assert len(opened[-1].images) == len(w.browser.selected_samples()) >= 2
    qtbot.addWidget(opened[-1])


def test_cancel_a_run(main_window, qtbot, demo_set):
    w = main_window
    open_demo_set(w, qtbot, demo_set)
    tiny_run(w.training, epochs=200)
    w.training.batch.setValue(2)
    w.training.start_button.click()
    qtbot.waitUntil(lambda: w.training.worker is not None and w.training.epoch_bar.value() > 0, timeout=60000)
    with qtbot.waitSignal(w.training.runFinished, timeout=60000) as blocker:
        w.training.cancel_button.click()
    assert blocker.args == [False]
    assert not w.training.is_running()
    assert w.training.start_button.isEnabled()


def test_close_during_a_run_leaves_no_thread(main_window, qtbot, demo_set):
    w = main_window
    open_demo_set(w, qtbot, demo_set)
    tiny_run(w.training, epochs=200)
    w.training.batch.setValue(2)
    w.confirm_close = False
    w.training.start_button.click()
    qtbot.waitUntil(lambda: w.training.epoch_bar.value() > 0, timeout=60000)
    w.close()
    assert not w.training.is_running()
    # the fixture then fails the test if any GeoCAM thread is still running


def test_layout_persists_and_reset_settings_forgets_it(qtbot, qt_settings, tmp_path):
    from geocam_gui.ui.main_window import MainWindow

    def make():
        w = MainWindow(checkpoint_dir=tmp_path / "ckpt")
        qtbot.addWidget(w)
        w.show()
        qtbot.waitExposed(w)
        return w

    w = make()
    w.training_dock.hide()
    w.close()
    again = make()
    assert not again.training_dock.isVisible() and again.restored_geometry
    again.close()
    MainWindow.reset_settings()
    fresh = make()
    assert fresh.training_dock.isVisible() and not fresh.restored_geometry
    fresh.close()


def test_a_checkpoint_that_cannot_be_loaded_says_why_in_its_pane(main_window, qtbot, demo_set):
    import json

    w = main_window
    open_demo_set(w, qtbot, demo_set)
    bad = w.run_dir / "vgg11"
    bad.mkdir(parents=True)
    (bad / "best.safetensors").write_bytes(b"this is not a safetensors file")
    (bad / "best.json").write_text(json.dumps({"model": "vgg11", "classes": w.index.classes, "image_size": 32}))
    w.load_run_checkpoints(w.run_dir)
    w.browser.select_row(0)
    pane = w.viewer.panes["vgg11"]
    qtbot.waitUntil(lambda: "could not be loaded" in pane.empty_label.text(), timeout=60000)
    assert pane.stack.currentIndex() == 1 and pane.train_button.isVisible()


def test_gui_version_flag():
    out = subprocess.run([sys.executable, "-m", "geocam_gui", "--version"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("geocam-gui ")


def test_screenshot_flag_writes_the_real_window(tmp_path, demo_set):
    png = tmp_path / "shot.png"
    out = subprocess.run(
        [sys.executable, "-m", "geocam_gui", "--data", str(demo_set), "--no-train", "--screenshot", str(png),
         "--size", "1280x800"],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    from PIL import Image

    with Image.open(png) as im:
        assert im.size[0] >= 1000 and im.size[1] >= 650
        assert len(np.unique(np.asarray(im.convert("L")))) > 20  # a real picture, not a blank


def test_the_demo_menu_generates_in_worker_processes_and_opens_the_set(main_window, qtbot, monkeypatch):
    """File > Open demo dataset: the generator's worker processes (spawned from the window's task
    thread) draw the set into the cache, which the window then opens; no partial folder is left."""
    from geocam_gui.core.data import demo as synthetic

    monkeypatch.setattr(synthetic, "default_workers", lambda total: 2)  # a small set takes the worker path
    params = dict(per_class=60, size=32, seed=13)
    main_window.open_demo(**params)
    qtbot.waitUntil(lambda: main_window.index is not None and main_window.is_idle(), timeout=120000)
    assert len(main_window.index.samples) == 120
    folder = synthetic.demo_dir(**params)
    assert main_window.index.roots == [str(folder)]
    assert not [p.name for p in folder.parent.iterdir() if p.name.startswith(".")]
