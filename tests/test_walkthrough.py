"""A newcomer's first hour (issue 16), as one walk through the real window: the demo's first run
(tiny recipes), what the window says while it trains, the panes after it, the colour bar, the
browser's table, the layout, an analysis, a figure export, a cancel that does not wait for a
slow step, and opening another dataset. Each step's details have their own tests; this one
checks that the path a new user takes holds together, in the order they take it."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from geocam_gui.core.models import MODEL_LABELS, MODEL_NAMES  # noqa: E402
from geocam_gui.core.train.config import TrainConfig  # noqa: E402

TINY = {"shallow": 3, "vgg11": 1, "resnet18": 1}  # epochs of the tiny first-run recipes


def tiny_recipes(models):
    return [TrainConfig(model=m, epochs=TINY[m], batch_size=8, image_size=32, device="cpu",
                        lr=1e-4 if m == "vgg11" else 1e-3, max_batches_per_epoch=3) for m in models]


def test_a_newcomers_first_hour(main_window, qtbot, monkeypatch, tmp_path, tiny_demo, torch_threads):
    from PySide6.QtCore import Qt

    from geocam_gui.cli import main as cli
    from geocam_gui.core.chance import chance_of_checkpoint
    from geocam_gui.core.checkpoints import read_meta
    from geocam_gui.core.export import sidecar_path

    w = main_window
    w.confirm_close = False
    w.auto_train_missing = True  # what `geocam-gui --demo` does: train the models the demo lacks
    monkeypatch.setattr(w, "demo_configs", tiny_recipes)
    panel = w.training

    # 1. The first run: the demo set is generated, indexed, and the three models train one by one.
    w.open_demo(per_class=16, size=32, views_per_place=2, seed=11)
    qtbot.waitUntil(panel.is_running, timeout=120000)
    waiting = [w.viewer.panes[m].empty_label.text() for m in ("resnet18", "vgg11")]  # VGG11 last: core.train.config.DEMO_ORDER
    assert waiting == ["ResNet18 is waiting to train (2nd of 3).", "VGG11 is waiting to train (3rd of 3)."]
    assert not any(w.viewer.panes[m].train_button.isVisible() for m in MODEL_NAMES)  # no "Train" offer mid-run
    assert panel.epochs.value() == TINY["shallow"] and panel.size.value() == 32  # the recipe running
    assert "stopped" not in w.status_label.text().lower()
    with qtbot.waitSignal(panel.runFinished, timeout=600000) as finished:
        pass
    assert finished.args == [True]
    qtbot.waitUntil(lambda: w.is_idle() and all(p.rgb is not None for p in w.viewer.panes.values()), timeout=120000)
    assert w.status_label.text().startswith("Training finished")

    # 2. The panes: an overlay, a prediction and the chance verdict of each model's test accuracy.
    for name, pane in w.viewer.panes.items():
        assert pane.stack.currentIndex() == 0 and "Predicts" in pane.prediction.text(), name
        assert pane.chance_label.isVisible(), f"{name}: no word on whether it beats chance"
        verdict = chance_of_checkpoint(read_meta(w.workspace.checkpoints[name]))  # the run's test metrics
        expected = "above chance" if verdict["above_chance"] else "At chance"
        assert expected in pane.chance_label.text(), (name, pane.chance_label.text())
    # ... and a colour bar with numbers, not "high/low"
    assert w.viewer.colorbar.tick_texts() == ["0", "0.5", "1"]
    w.grab().save(str(tmp_path / "after_first_run.png"))

    # 3. The browser's table names its files; the docks leave the viewer room.
    b = w.browser
    b.view_toggle.setChecked(True)
    assert b.stack.currentWidget() is b.table
    assert b.model.headerData(0, Qt.Orientation.Horizontal) == "File"
    assert b.table.horizontalHeader().sectionSize(0) >= 150
    name0 = b.table.model().index(0, 0).data()
    assert name0 and name0.endswith(".png")
    assert w.training_dock.height() <= 0.45 * w.height() + 1 and w.viewer.height() >= 0.4 * w.height()

    # 4. Analysis of the shallow net: its tables use display names.
    w.bottom_tabs.setCurrentWidget(w.analysis)
    w.analysis.limit.setValue(4)
    with qtbot.waitSignal(w.analysis.analysisFinished, timeout=300000):
        assert w.analysis.start()
    qtbot.waitUntil(lambda: not w.analysis.is_running(), timeout=10000)
    accuracy = w.analysis.table_widgets["accuracy"]
    shown = {accuracy.item(r, 0).text() for r in range(accuracy.rowCount())}
    assert shown <= {MODEL_LABELS[m] for m in MODEL_NAMES} and shown

    # 5. A figure from the README's command: the shell's glob order does not set the columns.
    checkpoints = [str(Path(w.workspace.checkpoints[m]).with_suffix(".json")) for m in MODEL_NAMES]
    random.Random(3).shuffle(checkpoints)
    figure = tmp_path / "fig.svg"
    image = str(w.index.samples[0].path)
    assert cli(["export", "--checkpoint", *checkpoints, "--images", image, "--figure", str(figure)]) == 0
    order = json.loads(sidecar_path(figure).read_text())["params"]["checkpoints"]
    assert [Path(c).parent.name for c in order] == list(MODEL_NAMES)

    # 6. A second run whose steps are slow (the window first asks before replacing the trained
    # shallow net; the user says yes): Cancel does not wait for the step.
    from PySide6.QtWidgets import QMessageBox

    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a[1]) or QMessageBox.StandardButton.Yes)
    monkeypatch.setenv("GEOCAM_TEST_SLOW_STEP", "120@2")
    w.bottom_tabs.setCurrentWidget(panel)
    assert panel.start(configs=[TrainConfig(model="shallow", epochs=2, batch_size=8, image_size=32, device="cpu")])
    assert asked == ["Replace trained models?"]
    qtbot.waitUntil(lambda: "Test hook" in panel.log.toPlainText(), timeout=120000)
    with qtbot.waitSignal(panel.runFinished, timeout=20000) as cancelled:  # the step would take 120 s
        panel.cancel_button.click()
        assert panel.status.text() == "Cancelling…"
    assert cancelled.args == [False]
    assert w.status_label.text().startswith("Training cancelled during epoch 2")
    qtbot.waitUntil(w.is_idle, timeout=60000)
    monkeypatch.delenv("GEOCAM_TEST_SLOW_STEP")

    # 7. Another dataset: the previous curves and analysis results go.
    assert panel.curves.series("shallow", "loss", "train")
    w.open_dataset([str(tiny_demo)])
    qtbot.waitUntil(lambda: w.index is not None and w.index.roots == [str(tiny_demo)] and w.is_idle(),
                    timeout=60000)
    assert not panel.curves.series("shallow", "loss", "train")
    assert panel.total_bar.value() == 0 and panel.results.rowCount() == 0
    # no pane keeps the previous dataset's picture: this one has no trained models yet
    qtbot.waitUntil(lambda: all(p.stack.currentIndex() == 1 for p in w.viewer.panes.values()), timeout=30000)
    assert "no trained model yet" in w.viewer.heading.text()
    assert w.analysis.report is None and not w.analysis.table_widgets
    w.grab().save(str(tmp_path / "another_dataset.png"))
