"""The Export dialog (pytest-qt): one overlay, the overwrite question, a figure, a batch, closing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

from geocam_gui.ui import workers  # noqa: E402
from geocam_gui.ui.export_dialog import BATCH, FIGURE, ExportDialog  # noqa: E402


@dataclass
class _Sample:
    path: str
    label: str


@pytest.fixture(scope="module")
def assets(tmp_path_factory, torch_threads):
    from geocam_gui.core.checkpoints import base_meta, save_checkpoint
    from geocam_gui.core.models import build_model

    torch_threads.manual_seed(0)
    root = tmp_path_factory.mktemp("dialog_assets")
    save_checkpoint(root / "shallow" / "best", build_model("shallow", 2), base_meta("shallow", ["pittsburgh", "tokyo"], 32))
    rng = np.random.default_rng(3)
    photos = []
    for i, (w, h) in enumerate([(160, 120), (90, 120)]):
        path = root / f"street_{i}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        photos.append(str(path))
    bad = root / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return {"ckpt": str(root / "shallow" / "best.json"), "photos": photos, "bad": str(bad)}


@pytest.fixture
def make_dialog(qtbot, qt_settings, assets):
    made = []

    def make(**kwargs):
        kwargs.setdefault("checkpoints", {"shallow": assets["ckpt"], "vgg11": None, "resnet18": None})
        kwargs.setdefault("images", [(assets["photos"][0], "pittsburgh")])
        dlg = ExportDialog(None, **kwargs)
        qtbot.addWidget(dlg)
        made.append(dlg)
        return dlg

    yield make
    for dlg in made:
        dlg.close()
    assert not workers.running_threads(), workers.running_threads()


def _export(qtbot, dlg, **kwargs):
    with qtbot.waitSignal(dlg.exportFinished, timeout=120000) as blocker:
        if kwargs:
            assert dlg.start_export(**kwargs)
        else:
            qtbot.mouseClick(dlg.export_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not dlg.is_running() and dlg.export_button.isEnabled(), timeout=10000)
    return blocker.args[0]


def test_dialog_exports_one_overlay_at_native_size(make_dialog, qtbot, tmp_path):
    dlg = make_dialog(opacity=0.4, cmap="viridis")
    dlg.show()
    out = tmp_path / "out"
    dlg.set_destination(str(out))
    dlg.out_heatmap.setChecked(False)
    dlg.out_raw.setChecked(False)
    summary = _export(qtbot, dlg)
    assert summary.written == [str(out / "street_0_shallow.png")] and not summary.failed
    assert Image.open(out / "street_0_shallow.png").size == (160, 120)
    side = json.loads((out / "street_0_shallow.png.json").read_text())
    assert side["opacity"] == 0.4 and side["colormap"] == "viridis" and side["class"] == "predicted"
    assert not (out / "summary.json").exists()  # one image: no batch report
    assert "1 file(s) written" in dlg.status.text() and dlg.summary_text.isVisible()

    # A different export into the same files: the question is answered "no", then "yes".
    before = (out / "street_0_shallow.png").read_bytes()
    dlg.cmap.setCurrentIndex(dlg.cmap.findData("gray"))
    dlg.overwrite_answer = False
    assert dlg.start_export()
    qtbot.waitUntil(lambda: "Nothing was written" in dlg.status.text(), timeout=60000)
    qtbot.waitUntil(lambda: not dlg.is_running(), timeout=10000)
    assert (out / "street_0_shallow.png").read_bytes() == before
    summary = _export(qtbot, dlg, overwrite=True)
    assert summary.written and (out / "street_0_shallow.png").read_bytes() != before


def test_dialog_writes_a_figure(make_dialog, qtbot, tmp_path, assets):
    dlg = make_dialog(images=[(p, None) for p in assets["photos"]])
    dlg.set_mode(FIGURE)
    assert dlg.width.isVisibleTo(dlg) and not dlg.out_raw.isVisibleTo(dlg)
    dlg.set_destination(str(tmp_path / "fig.svg"))
    assert dlg.format.currentData() == "svg"
    dlg.width.setCurrentIndex(1)  # double column
    summary = _export(qtbot, dlg)
    assert summary.written == [str(tmp_path / "fig.svg")]
    assert "<text" in (tmp_path / "fig.svg").read_text()
    assert json.loads((tmp_path / "fig.svg.json").read_text())["params"]["width_in"] == 7.16


def test_dialog_batch_reports_a_broken_image(make_dialog, qtbot, tmp_path, assets):
    samples = [_Sample(assets["photos"][1], "tokyo"), _Sample(assets["bad"], "tokyo")]
    dlg = make_dialog(batch_samples=samples)
    dlg.set_mode(BATCH)
    dlg.set_destination(str(tmp_path / "batch"))
    summary = _export(qtbot, dlg)
    assert [p for p, _ in summary.failed] == [assets["bad"]]
    assert (tmp_path / "batch" / "street_1_shallow.png").exists()
    assert "broken.png" in dlg.summary_text.toPlainText()
    assert json.loads((tmp_path / "batch" / "summary.json").read_text())["failed"][0]["path"] == assets["bad"]


def test_closing_while_exporting_leaves_no_thread(make_dialog, qtbot, tmp_path, assets):
    samples = [_Sample(assets["photos"][i % 2], "tokyo") for i in range(2)]
    dlg = make_dialog(batch_samples=samples)
    dlg.set_mode(BATCH)
    dlg.set_destination(str(tmp_path / "b"))
    assert dlg.start_export()
    assert dlg.is_running()
    dlg._worker.wait()  # the plan's thread may end at once; its result still waits in the event queue
    assert dlg.is_running() and not dlg.export_button.isEnabled()
    dlg.reject()
    assert not dlg.is_running()
    qtbot.wait(300)  # a plan that finished meanwhile must not start the export after closing
    assert not workers.running_threads()
    assert not (tmp_path / "b").exists()


def test_dialog_without_a_model_explains_why(make_dialog):
    dlg = make_dialog(checkpoints={"shallow": None})
    assert not dlg.export_button.isEnabled()
    assert "No trained model" in dlg.status.text()


def test_default_folder_is_under_geocam_home(make_dialog, _isolated_home, assets):
    dlg = make_dialog(batch_samples=[_Sample(assets["photos"][0], "pittsburgh")])
    assert dlg.destination.text() == str(_isolated_home / "exports")
    dlg.set_mode("figure")
    assert dlg.destination.text() == str(_isolated_home / "exports" / "street_0_gradcam.pdf")
    dlg.set_mode("batch")
    assert dlg.destination.text() == str(_isolated_home / "exports" / "batch")


def test_dialog_remembers_the_folder_chosen_for_each_export(make_dialog, qtbot, tmp_path, monkeypatch, assets):
    from PySide6.QtWidgets import QFileDialog

    chosen = tmp_path / "my overlays"
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(chosen))
    dlg = make_dialog()
    qtbot.mouseClick(dlg.browse, Qt.MouseButton.LeftButton)  # chosen, then closed without exporting
    assert dlg.destination.text() == str(chosen)
    dlg.close()

    figure_dir = tmp_path / "paper" / "figures"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(figure_dir / "fig3.svg"), ""))
    again = make_dialog(batch_samples=[_Sample(assets["photos"][0], "pittsburgh")])
    assert again.destination.text() == str(chosen)  # the next dialog starts where the user was
    again.set_mode("figure")
    assert Path(again.destination.text()).parent == chosen  # no figure folder chosen yet
    qtbot.mouseClick(again.browse, Qt.MouseButton.LeftButton)
    again.set_mode("batch")
    batch = tmp_path / "all of them"
    again.set_destination(str(batch))  # typed, then exported: remembered too
    _export(qtbot, again, overwrite=False)
    again.close()

    third = make_dialog(batch_samples=[_Sample(assets["photos"][0], "pittsburgh")])
    assert third.destination.text() == str(chosen)
    third.set_mode("figure")
    assert third.destination.text() == str(figure_dir / "street_0_gradcam.pdf")
    third.set_mode("batch")
    assert third.destination.text() == str(batch)


def test_settings_that_are_not_a_folder_are_ignored(make_dialog, qt_settings, _isolated_home):
    from PySide6.QtCore import QSettings

    s = QSettings()
    s.setValue("export/folder", "relative/place")
    s.setValue("export/figure_folder", 42)
    s.sync()
    dlg = make_dialog()
    assert dlg.destination.text() == str(_isolated_home / "exports")
    dlg.set_mode("figure")
    assert Path(dlg.destination.text()).parent == _isolated_home / "exports"


def test_the_dialog_starts_from_the_viewers_colour_scale(make_dialog, qtbot, tmp_path, assets):
    assert make_dialog().scale.currentData() == "per_map"
    assert make_dialog(scale="shared").build_request().options.normalize == "shared"
    lone = make_dialog(scale="p99")  # no dataset open: no reference images, so no p99 either
    i = lone.scale.findData("p99")
    assert lone.scale.currentData() == "per_map" and not lone.scale.model().item(i).isEnabled()
    assert "Open a dataset" in lone.scale.itemData(i, Qt.ItemDataRole.ToolTipRole)

    # with the viewer's reference images it exports on the viewer's comparable scale
    dlg = make_dialog(scale="p99", reference_images=assets["photos"])
    assert dlg.scale.currentData() == "p99"
    dlg.set_destination(str(tmp_path / "p99"))
    summary = _export(qtbot, dlg)
    assert summary.written and not summary.failed
    side = json.loads((tmp_path / "p99" / "street_0_shallow.png.json").read_text())
    assert side["normalisation"] == "p99" and side["reference"][0]["images"] == len(assets["photos"])
    assert side["params"]["reference_images"] == [str(Path(p).absolute()) for p in assets["photos"]]
