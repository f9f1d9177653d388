"""File > Manage runs (pytest-qt): a run pruned to its best checkpoints still opens in the viewer;
a deleted run empties its panes; every removal asks first."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("pytestqt")


@pytest.fixture(scope="module")
def demo_set(tmp_path_factory):
    from geocam_gui.core.data.demo import generate_demo

    return generate_demo(tmp_path_factory.mktemp("demo") / "set", per_class=12, size=32, views_per_place=2, seed=3)


def test_prune_to_best_then_the_viewer_still_opens_the_run(main_window, qtbot, demo_set, monkeypatch, tmp_path,
                                                           torch_threads):
    from PySide6.QtWidgets import QMessageBox

    from geocam_gui.core.train.config import TrainConfig
    from geocam_gui.core.train.engine import Trainer
    from geocam_gui.ui.runs_dialog import RunsDialog

    w = main_window
    w.open_dataset([str(demo_set)])
    qtbot.waitUntil(lambda: w.index is not None and w.is_idle(), timeout=60000)
    cfg = TrainConfig(model="shallow", epochs=1, batch_size=8, lr=1e-3, image_size=32, device="cpu", seed=1)
    Trainer(cfg, w.index, w.run_dir).run()

    opened, asked = [], []
    monkeypatch.setattr(RunsDialog, "exec", lambda self: opened.append(self) or 0)
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a[2]) or QMessageBox.StandardButton.No)
    w.runs_action.trigger()
    dlg = opened[0]
    qtbot.addWidget(dlg)
    assert dlg.table.rowCount() == 1 and dlg.selected().path == w.run_dir
    assert dlg.table.item(0, 0).text() == w.run_dir.name
    assert re.fullmatch(r"Shallow CNN \d+\.\d % / \d+\.\d %", dlg.table.item(0, 3).text())  # val / test
    dlg.grab().save(str(tmp_path / "runs_dialog.png"))
    run = w.run_dir / "shallow"
    dlg.keep_best_button.click()  # answered No: nothing happens
    assert len(asked) == 1 and (run / "last.safetensors").is_file()

    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a[2]) or QMessageBox.StandardButton.Yes)
    dlg.keep_best_button.click()
    assert sorted(p.name for p in run.iterdir()) == ["best.json", "best.safetensors", "metrics.jsonl"]
    assert "(best only)" in dlg.table.item(0, 3).text() and not dlg.keep_best_button.isEnabled()

    # the viewer (re)opens the pruned run: the pane shows the image and a prediction
    pane = w.viewer.panes["shallow"]
    assert w.workspace.checkpoints["shallow"] == str(run / "best.json")
    w.browser.select_row(0)
    qtbot.waitUntil(lambda: pane.rgb is not None and not w.viewer.is_busy(), timeout=60000)
    assert pane.stack.currentIndex() == 0 and "Predicts" in pane.prediction.text()

    dlg.delete_button.click()
    assert len(asked) == 3 and not w.run_dir.exists()
    assert dlg.table.rowCount() == 0 and "No training runs" in dlg.summary_label.text()
    assert w.workspace.checkpoints["shallow"] is None  # the pane no longer shows a deleted model
    qtbot.waitUntil(w.is_idle, timeout=60000)
