"""The Units tab (pytest-qt): dissects in the compute process, shows unit mosaics with concepts, filters and
sorts them, shows a unit's map in the viewer's pane and goes back to the CAM, leaves no thread."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")



@pytest.fixture(scope="module")
def context(tmp_path_factory):
    from tests.test_units import _checkpoint, tiny_demo

    root = tmp_path_factory.mktemp("units_panel")
    data = tiny_demo(root / "demo")
    return data, _checkpoint(root)


def test_units_tab_dissects_filters_and_shows_a_unit_map(main_window, context, qtbot, torch_threads):
    from geocam_gui.core.data.datasets import open_data

    data, ck = context
    w = main_window
    index = open_data(data)
    w.set_index(index)
    w.viewer.set_checkpoint("shallow", ck)  # the units panel follows the workspace
    panel = w.units
    assert w.bottom_tabs.tabText(w.bottom_tabs.indexOf(panel)) == "Units"
    assert panel.model.count() == 1
    qtbot.waitUntil(lambda: panel.layer.currentText() == "features.14", timeout=60000)  # from the compute process
    # the first-layer filters come with the models, before any dissection (once the tab is shown)
    assert panel.filter_labels["shallow"].pixmap().isNull()
    w.bottom_tabs.setCurrentWidget(panel)
    qtbot.waitUntil(lambda: not panel.filter_labels["shallow"].pixmap().isNull(), timeout=60000)
    assert panel.filter_labels["vgg11"].text() == "no model loaded"
    w.bottom_tabs.setCurrentIndex(0)
    sample = index.split("test")[0]
    with qtbot.waitSignal(w.viewer.camsShown, timeout=60000):
        w.viewer.set_sample(sample.path, sample.label)
    panel.top.setValue(3)
    with qtbot.waitSignal(panel.unitsFinished, timeout=240000) as blocker:
        assert panel.start()
        assert panel.cancel_button.isEnabled()
    result = blocker.args[0]
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=10000)
    assert panel.grid.count() == result["units_count"] == 256
    assert not panel.filter_labels["shallow"].pixmap().isNull()
    # sorted by IoU, descending
    ious = [result["units"][u]["iou"] for u in panel.visible_units()]
    assert ious == sorted(ious, reverse=True)
    panel.sort.setCurrentIndex(1)
    assert panel.visible_units() == list(range(256))
    panel.concept.setCurrentText("Detectors only")
    assert len(panel.visible_units()) == result["dissection"]["detectors"]
    panel.concept.setCurrentText("No concept")
    assert len(panel.visible_units()) == 256 - result["dissection"]["detectors"]
    panel.concept.setCurrentText("All units")

    w.bottom_tabs.setCurrentWidget(panel)
    before = w.viewer.panes["shallow"].rgb.copy()
    item = panel.grid.item(5)
    panel.grid.setCurrentItem(item)
    with qtbot.waitSignal(panel.unitMapReady, timeout=60000):
        panel._on_unit_clicked(item)
    assert w.viewer.shown_map("shallow").startswith("unit 5 of features.14")
    assert w.viewer.panes["shallow"].cam_button.isVisible()
    assert (w.viewer.panes["shallow"].rgb != before).any()
    w.viewer.panes["shallow"].cam_button.click()
    assert w.viewer.shown_map("shallow") is None
    assert (w.viewer.panes["shallow"].rgb == before).all()

    out = panel.export_figure("mosaic", str(data.parent / "unit5.svg"), unit=5)
    assert out.read_text().lstrip().startswith("<?xml") and (data.parent / "unit5.svg.json").is_file()
    import os

    if os.environ.get("GEOCAM_SHOT"):
        panel.grid.setCurrentItem(item)
        w.grab().save(os.environ["GEOCAM_SHOT"])


def test_units_panel_without_label_maps_shows_top_patches_and_why(qtbot, qt_settings, torch_threads, tmp_path):
    from geocam_gui.core.data.datasets import open_data
    from geocam_gui.ui import workers
    from geocam_gui.ui.units_panel import UnitsPanel
    from tests.test_units import _checkpoint, tiny_demo

    data = tiny_demo(tmp_path / "photos", labels=False)
    panel = UnitsPanel()
    qtbot.addWidget(panel)
    panel.set_context(open_data(data), {"shallow": _checkpoint(tmp_path), "vgg11": None, "resnet18": None})
    qtbot.waitUntil(lambda: panel.layer.count() > 0, timeout=60000)
    panel.layer.setCurrentText("features.8")
    panel.top.setValue(2)
    with qtbot.waitSignal(panel.unitsFinished, timeout=240000) as blocker:
        assert panel.start()
    assert blocker.args[0]["layer"] == "features.8" and panel.grid.count() == 128
    assert [panel.concept.itemText(i) for i in range(panel.concept.count())] == ["All units"]
    assert "top patches only" in panel.summary.text() and "no per-pixel label maps" in panel.summary.text()
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=10000)
    assert not panel.export_chart.isEnabled()
    assert panel.show_unit(0) is False  # no image selected: a sentence, no worker
    assert panel.shutdown(30000)
    qtbot.waitUntil(lambda: not workers.running_threads(), timeout=20000)


def test_a_shallow_checkpoint_of_the_earlier_layout_offers_its_own_layers(qtbot, qt_settings, tmp_path):
    """A first run from before batch norm (its checkpoints still load) lists its own layer names, so
    a scan of its default layer does not ask for a layer it lacks; retrained into the same folder,
    the new layout's names, with its CAM layer chosen again."""
    import torch

    from geocam_gui.core.checkpoints import save_checkpoint
    from geocam_gui.core.data.datasets import open_data
    from geocam_gui.core.models import build_model
    from geocam_gui.ui.units_panel import UnitsPanel
    from tests.test_units import tiny_demo

    index = open_data(tiny_demo(tmp_path / "photos", labels=False))
    meta = {"model": "shallow", "classes": list(index.classes), "image_size": 32}
    best = tmp_path / "run" / "shallow" / "best"
    ckpt = str(save_checkpoint(best, build_model("shallow", 2, legacy=True), meta))
    panel = UnitsPanel()
    qtbot.addWidget(panel)
    panel.set_context(index, {"shallow": ckpt})
    qtbot.waitUntil(lambda: panel.layer.currentText() == "features.10", timeout=60000)  # its CAM layer
    assert "features.14" not in [panel.layer.itemText(i) for i in range(panel.layer.count())]
    torch.manual_seed(0)
    assert str(save_checkpoint(best, build_model("shallow", 2), meta)) == ckpt  # the GUI trains into the same folder
    panel.set_context(index, {"shallow": ckpt})
    qtbot.waitUntil(lambda: panel.layer.currentText() == "features.14", timeout=60000)
    assert panel.shutdown(30000)


def test_cancel_stops_the_scan_in_the_compute_process(tmp_path, qtbot, qt_settings, torch_threads, cancel_mid_pass):
    """Cancel ends the tab's run at once and stops the compute process's scan unfinished."""
    from geocam_gui.core.data.datasets import open_data
    from geocam_gui.core.data.demo import generate_demo
    from geocam_gui.ui.units_panel import UnitsPanel
    from tests.test_units import _checkpoint

    index = open_data(generate_demo(tmp_path / "demo", per_class=80, size=64, seed=3))
    panel = UnitsPanel()
    qtbot.addWidget(panel)
    panel.set_context(index, {"shallow": _checkpoint(tmp_path, size=64)})
    qtbot.waitUntil(panel.run_button.isEnabled, timeout=60000)  # the layer list has arrived
    cancel_mid_pass(panel, "units", other_lane="analysis")
    assert "cancelled" in panel.summary.text().lower()
    assert panel.shutdown()
