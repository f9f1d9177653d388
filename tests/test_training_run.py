"""Issue 16: the window tells the truth during a training run (panes, settings, status bar) and
Cancel acts within seconds even while one step takes minutes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from geocam_gui.core.train import events as ev
from geocam_gui.core.train.config import TrainConfig
from geocam_gui.core.train.cost import RunCost
from geocam_gui.ui.training_run import RunTracker, ordinal
from geocam_gui.ui.training_views import fmt_about


def test_run_tracker_words_each_state():
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22)] == \
        ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd"]
    run = RunTracker([TrainConfig(model="shallow", epochs=12), TrainConfig(model="vgg11", epochs=6),
                      TrainConfig(model="resnet18", epochs=6)])
    assert run.pane_note("shallow") == "Shallow CNN is training — preparing the data"
    assert run.pane_note("vgg11") == "VGG11 is waiting to train (2nd of 3)."
    assert run.pane_note("resnet18") == "ResNet18 is waiting to train (3rd of 3)."
    run.on_event("shallow", ev.Batch(1, 12, 3, 10, 0.6, 0.5, 10.0, 5.0, 1e-3))
    assert run.pane_note("shallow") == "Shallow CNN is training — epoch 1/12"
    run.on_event("shallow", ev.Epoch("shallow", 1, 12, 0.6, 0.6, 0.5, 0.714, 10.0, 1.0, 1e-3, 16, True, 1, 0.714, 9.0))
    assert run.pane_note("shallow") == "Shallow CNN is training — epoch 2/12, val accuracy 71 %"
    assert run.status_text() == "Training Shallow CNN (1 of 3) — epoch 2/12, val accuracy 71 %"
    run.model_finished("shallow")
    run.model_started("vgg11")
    assert run.pane_note("shallow") is None and run.pane_note("vgg11").startswith("VGG11 is training")
    run.model_failed("vgg11", "Out of memory.")
    assert run.current == "resnet18"
    assert run.end(False, None, "3 s") == "Training failed (VGG11: Out of memory.). Shallow CNN trained."
    assert run.state == "failed" and run.pane_note("resnet18") is None

    done = RunTracker([TrainConfig(model="shallow", epochs=1)])
    done.model_finished("shallow")
    assert done.end(True, None, "42 s") == "Training finished: Shallow CNN trained in 42 s."

    cancelled = RunTracker([TrainConfig(model="vgg11", epochs=6)])
    cancelled.cancelling()
    assert cancelled.status_text() == "Cancelling the training…"
    text = cancelled.end(False, ("vgg11", 3, True), "1 min 02 s")
    assert cancelled.state == "cancelled"
    assert text.startswith("Training cancelled during epoch 3 of VGG11; the last complete epoch's checkpoint is kept")


def test_slow_step_hook_reads_the_environment(monkeypatch):
    from geocam_gui.core.train.loop import slow_step_hook

    monkeypatch.delenv("GEOCAM_TEST_SLOW_STEP", raising=False)
    assert slow_step_hook() == (0.0, 0)
    monkeypatch.setenv("GEOCAM_TEST_SLOW_STEP", "120@2")
    assert slow_step_hook() == (120.0, 2)
    monkeypatch.setenv("GEOCAM_TEST_SLOW_STEP", "2.5")
    assert slow_step_hook() == (2.5, 1)
    monkeypatch.setenv("GEOCAM_TEST_SLOW_STEP", "soon")
    assert slow_step_hook() == (0.0, 0)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc to see the child is gone")
def test_panes_settings_and_status_follow_a_run_and_cancel_stops_a_slow_step(main_window, qtbot, tiny_demo,
                                                                               monkeypatch, tmp_path, process_alive):
    from geocam_gui.core.train.saver import load_resume

    pytest.importorskip("pytestqt")
    # Every step of epoch 2 sleeps two minutes: Cancel must not wait for it.
    monkeypatch.setenv("GEOCAM_TEST_SLOW_STEP", "120@2")
    w = main_window
    w.confirm_close = False  # a failing assertion must not leave a question open on close
    w.open_dataset([str(tiny_demo)])
    qtbot.waitUntil(lambda: w.index is not None and w.is_idle(), timeout=60000)
    panel = w.training
    user = (panel.epochs.value(), panel.size.value(), panel.batch.value(), panel.lr.value())
    configs = [TrainConfig(model="shallow", epochs=3, batch_size=8, lr=2e-3, image_size=32, device="cpu"),
               TrainConfig(model="vgg11", epochs=2, batch_size=4, lr=1e-4, image_size=32, device="cpu")]
    assert panel.start(configs=configs)
    shallow, vgg = w.viewer.panes["shallow"], w.viewer.panes["vgg11"]
    # at once: the panes say who trains and who waits, no Train button; the fields show the recipe
    assert shallow.empty_label.text().startswith("Shallow CNN is training")
    assert vgg.empty_label.text() == "VGG11 is waiting to train (2nd of 2)."
    assert not shallow.train_button.isVisible() and not vgg.train_button.isVisible()
    assert (panel.epochs.value(), panel.size.value(), panel.batch.value(), panel.lr.value()) == (3, 32, 8, 2e-3)
    assert not panel.epochs.isEnabled() and panel.settings.recipe_note.isVisible()
    assert "Training Shallow CNN" in w.status_label.text()

    # epoch 1 ends (its checkpoint shows in the pane), epoch 2's first step sleeps
    qtbot.waitUntil(lambda: "Test hook" in panel.log.toPlainText(), timeout=120000)
    assert "epoch 2/3, val accuracy" in panel.pane_note("shallow")
    qtbot.waitUntil(lambda: bool(w.workspace.checkpoints["shallow"]), timeout=10000)  # announced mid-step
    assert shallow.training_label.isVisible() and "epoch 2/3" in shallow.training_label.text()
    assert w.workspace.checkpoints["shallow"]
    # the run's bar weighs each model by its FLOPs (core.train.cost): VGG11's two epochs outweigh
    # the shallow net's three, so one shallow epoch is a few per cent of the run, not one fifth
    expected = RunCost(configs, {s: len(w.index.split(s)) for s in ("train", "val", "test")}, len(w.index.classes))
    expected.epoch_done("shallow", 1)
    assert panel.total_bar.value() == int(100 * expected.fraction()) < 10
    assert w.training_label.text().startswith("Training Shallow CNN (1 of 2) — epoch 2/3")
    assert " left in the run" in w.training_label.text()  # the status bar says how long, roughly
    assert "stopped" not in w.status_label.text().lower()
    w.grab().save(str(tmp_path / "window_training.png"))
    # while the engine reports itself paused, the clock the time left extrapolates from stands still
    panel._on_event("shallow", ev.Log("Paused.", {"paused": True}))
    assert w.training_label.text().startswith("Training paused") and " left in the run" not in w.training_label.text()
    held = panel._clock.running()
    qtbot.wait(300)
    assert panel._clock.running() == held and panel._clock.wall() > held
    panel._on_event("shallow", ev.Log("Resumed.", {"paused": False}))
    assert not w.training_label.text().startswith("Training paused")
    pid = panel.worker.pid
    assert pid and process_alive(pid)

    with qtbot.waitSignal(panel.runFinished, timeout=20000) as blocker:  # the step would take 120 s
        panel.cancel_button.click()
        assert panel.status.text() == "Cancelling…" and w.training_label.text() == "Cancelling the training…"
        assert vgg.empty_label.text() == "VGG11 is waiting to train (2nd of 2)."
    assert blocker.args == [False]
    assert not process_alive(pid), "the training child outlived the cancel"
    outcome = w.status_label.text()
    assert outcome.startswith("Training cancelled during epoch 2 of Shallow CNN; the last complete epoch's "
                              "checkpoint is kept"), outcome
    assert panel.status.text() == outcome and not w.training_label.isVisible()
    state = load_resume(Path(w.run_dir) / "shallow")  # killed mid-step: epoch 1 stays resumable
    assert state is not None and int(state["epoch"]) == 1
    # the panes return to the truth, the fields to the user's values
    assert not shallow.training_label.isVisible() and panel.pane_note("shallow") is None
    assert "No VGG11 trained yet" in vgg.empty_label.text() and vgg.train_button.isVisible()
    assert (panel.epochs.value(), panel.size.value(), panel.batch.value(), panel.lr.value()) == user
    assert panel.epochs.isEnabled() and not panel.settings.recipe_note.isVisible()
    qtbot.waitUntil(w.is_idle, timeout=60000)
    w.grab().save(str(tmp_path / "window_cancelled.png"))


def test_the_time_left_is_as_rough_as_an_estimate():
    assert [fmt_about(s) for s in (5, 59.9, 60, 89, 91, 567, 90 * 60, 2 * 3600)] == [
        "under a minute", "under a minute", "about 1 min", "about 1 min", "about 2 min", "about 9 min",
        "about 1.5 h", "about 2.0 h"]
