"""The Analysis tab (pytest-qt): runs the core analysis in a worker, shows tables, plots and
clickable mosaics, cancels, and leaves no thread behind."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

from geocam_gui.ui import workers  # noqa: E402


@pytest.fixture(scope="module")
def context(tmp_path_factory):
    """A tiny demo set and an untrained shallow checkpoint (the panel only shows what core computes)."""
    from geocam_gui.core.data import datasets
    from geocam_gui.core.data import demo as synthetic
    from geocam_gui.core.checkpoints import save_checkpoint
    from geocam_gui.core.models import build_model

    root = tmp_path_factory.mktemp("panel")
    data = synthetic.generate_demo(root / "demo", per_class=24, size=40, sky_bias=0.5, seed=1, views_per_place=2)
    import torch

    torch.manual_seed(0)
    ck = save_checkpoint(root / "ck" / "shallow" / "best", build_model("shallow", 2),
                         {"model": "shallow", "classes": ["pittsburgh", "tokyo"], "image_size": 40})
    return datasets.open_data(data), str(ck)


@pytest.fixture
def panel(qtbot, qt_settings, torch_threads):
    from geocam_gui.ui.analysis_panel import AnalysisPanel

    p = AnalysisPanel()
    qtbot.addWidget(p)
    p.resize(1000, 700)
    p.show()
    yield p
    assert p.shutdown(30000)
    qtbot.waitUntil(lambda: not workers.running_threads(), timeout=20000)
    assert not workers.running_threads()


def test_context_lists_models_and_enables_run(panel, context):
    index, ck = context
    assert not panel.run_button.isEnabled()
    assert panel.status.text().startswith("Load a dataset")
    panel.set_context(index, {"shallow": None})
    assert panel.status.text().startswith("No trained model for this dataset yet")
    panel.set_context(index, {"shallow": ck, "vgg11": None, "resnet18": None})
    assert panel.models.count() == 3
    assert panel.selected_checkpoints() == [ck]
    assert panel.run_button.isEnabled() and not panel.cancel_button.isEnabled()
    assert panel.status.text().startswith("Ready: 1 model ticked") and "test split" in panel.status.text()
    panel.models.item(0).setCheckState(Qt.CheckState.Unchecked)
    assert not panel.run_button.isEnabled()
    assert panel.status.text() == "Tick at least one trained model to analyse."


def test_run_shows_tables_plots_and_clickable_mosaics(panel, context, qtbot):
    index, ck = context
    panel.set_context(index, {"shallow": ck})
    panel.limit.setValue(6)
    with qtbot.waitSignal(panel.analysisFinished, timeout=240000) as blocker:
        assert panel.start()
        assert panel.is_running() and panel.cancel_button.isEnabled()
    report = blocker.args[0]
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=10000)
    assert report["data"]["images"] == 6
    acc = panel.table_widgets["accuracy"]
    assert acc.rowCount() == 1 and acc.item(0, 0).text() == "Shallow CNN"
    assert acc.item(0, 1).text() == "6"
    assert {"localisation", "faithfulness", "sanity"} <= set(panel.table_widgets)
    assert not panel.plot_labels["faithfulness"].pixmap().isNull()
    assert panel.export_button.isEnabled()

    assert panel.mosaic_choice.count() == 2  # one entry per class
    for i in range(panel.mosaic_choice.count()):
        panel.mosaic_choice.setCurrentIndex(i)
        if panel.mosaic.tiles():
            break
    tiles = panel.mosaic.tiles()
    assert tiles, "an untrained model still classifies about half of the images right, so patches exist"
    rect, path = tiles[0]
    with qtbot.waitSignal(panel.sampleRequested, timeout=2000) as clicked:
        qtbot.mouseClick(panel.mosaic, Qt.MouseButton.LeftButton, pos=rect.center())
    assert clicked.args == [path]
    assert panel.mosaic.path_at(0, 0) is None  # the label column is not a patch


def test_rerun_is_served_from_the_cache_and_exports(panel, context, qtbot, tmp_path):
    index, ck = context
    panel.set_context(index, {"shallow": ck})
    panel.limit.setValue(6)
    with qtbot.waitSignal(panel.analysisFinished, timeout=240000):
        assert panel.start()
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=10000)
    with qtbot.waitSignal(panel.analysisFinished, timeout=240000) as blocker:
        assert panel.start()
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=10000)
    assert all(m["cached"] for m in blocker.args[0]["models"])
    assert "cache" in panel.status.text()
    files = panel.export_report(tmp_path / "out")
    assert files["html"].is_file() and (tmp_path / "out" / "report.json").is_file()


def test_cancel_stops_the_worker_and_shutdown_joins_it(panel, context, cancel_mid_pass):
    index, ck = context
    panel.set_context(index, {"shallow": ck})
    panel.limit.setValue(0)  # all images: long enough to cancel
    panel.method.setCurrentIndex(panel.method.findData("scorecam"))
    cancel_mid_pass(panel, "analyze", other_lane="units")
    assert "cancel" in panel.status.text().lower()
    assert panel.shutdown(30000)
    assert not workers.running_threads()


def test_failure_is_reported_not_raised(panel, context, qtbot, tmp_path):
    from geocam_gui.core.checkpoints import save_checkpoint
    from geocam_gui.core.models import build_model

    index, _ = context
    bad = save_checkpoint(tmp_path / "bad" / "best", build_model("shallow", 2),
                          {"model": "shallow", "classes": ["paris", "rome"], "image_size": 40})
    panel.set_context(index, {"shallow": str(bad)})
    assert panel.start()
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=60000)
    assert "failed" in panel.status.text() and "trained on classes" in panel.status.text()
    assert panel.run_button.isEnabled()


def test_results_get_room_in_the_window_and_go_when_another_dataset_opens(main_window, context, tiny_index, qtbot,
                                                                          tmp_path, torch_threads):
    from PySide6.QtWidgets import QApplication

    w = main_window
    index, ck = context
    w.set_index(index)
    w.workspace.set_checkpoint("shallow", ck)
    w.bottom_tabs.setCurrentWidget(w.analysis)
    panel = w.analysis
    panel.limit.setValue(6)
    for width, height in ((1280, 800), (1920, 1080)):
        w.resize(width, height)
        QApplication.processEvents()
        with qtbot.waitSignal(panel.analysisFinished, timeout=240000):  # the second comes from the cache
            assert panel.start()
        qtbot.waitUntil(lambda: not panel.is_running(), timeout=10000)
        panel.tabs.setCurrentIndex(1)  # the plots
        QApplication.processEvents()
        assert panel.tabs.height() >= 0.3 * w.height(), (width, panel.tabs.height())  # not a 120 px strip
        view = panel.plots_area.viewport().width()
        plots = [v for k, v in panel.plot_labels.items() if not k.startswith("_")]
        assert plots and all(0 < p.pixmap().width() <= view for p in plots)  # scaled to fit, never cut off
        assert all(p.height() == p.pixmap().height() for p in plots)
        w.grab().save(str(tmp_path / f"analysis_{width}.png"))
    panel.tabs.setCurrentIndex(0)
    assert panel.table_widgets and not panel.placeholder.isVisible()

    w.set_index(tiny_index)  # another dataset: the old results say nothing about it
    assert panel.report is None and not panel.table_widgets and not panel.plot_labels
    assert panel.mosaic_choice.count() == 0 and panel.placeholder.isVisible()
    assert not panel.export_button.isEnabled() and "Dataset changed" in panel.status.text()
