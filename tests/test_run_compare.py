"""Issue 16 point 9: runs compared side by side (curves overlaid, settings in columns with the
differences highlighted), from run files that are treated as untrusted."""

from __future__ import annotations

import json
import os
import time

import pytest

from geocam_gui.core import checkpoints as ckpt
from geocam_gui.core import run_compare as rc
from geocam_gui.core.train.config import TrainConfig


def _model(run, model, records, **config):
    folder = run / model
    folder.mkdir(parents=True)
    import torch

    meta = ckpt.base_meta(model, ["pittsburgh", "tokyo"], config.get("image_size", 64), epoch=len(records),
                          hyper_parameters=TrainConfig(model=model, **config).to_dict())
    ckpt.save_checkpoint(folder / "best", {"w": torch.zeros(2)}, meta)
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def _runs(root):
    a, b = root / "demo-aaaaaaaa", root / "demo-bbbbbbbb"
    _model(a, "shallow", [{"epoch": 1, "val_acc": 0.5, "val_loss": 0.7, "train_acc": 0.55, "train_loss": 0.69},
                          {"epoch": 2, "val_acc": 0.625, "val_loss": 0.66, "train_acc": 0.6, "train_loss": 0.6},
                          {"epoch": 3, "val_acc": 0.75, "val_loss": 0.6}], epochs=3, lr=1e-3)
    _model(b, "shallow", [{"epoch": 1, "val_acc": 0.6, "val_loss": 0.68}, "not json {",
                          {"epoch": 2, "val_acc": "high", "val_loss": 0.5}, [1, 2],
                          {"epoch": "x", "val_acc": 0.9}, {"epoch": 3, "val_acc": 0.8, "val_loss": None}],
           epochs=3, lr=2e-3, image_size=96)
    bad = b / "vgg11"
    bad.mkdir()
    (bad / "best.json").write_text("{not json", encoding="utf-8")
    (bad / "best.safetensors").write_bytes(b"junk")
    now = time.time()
    os.utime(a / "shallow" / "best.json", (now - 60, now - 60))  # b is the newer run
    return a, b


def test_series_read_from_untrusted_files(tmp_path):
    a, b = _runs(tmp_path)
    [sa] = rc.series_of_run(a)
    sb, bad = rc.series_of_run(b)
    assert sa.label == "demo-aaaaaaaa · Shallow CNN" and sa.curves["val_acc"] == [(1.0, 0.5), (2.0, 0.625), (3.0, 0.75)]
    assert sb.curves["val_acc"] == [(1.0, 0.6), (3.0, 0.8)]  # junk lines, text and None skipped
    assert sb.curves["val_loss"] == [(1.0, 0.68), (2.0, 0.5)]
    assert bad.model == "vgg11" and bad.error and not bad.settings
    assert sa.settings["lr"] == "0.001" and sa.settings["augment.crop"] == "true"
    assert rc.differing([sa, sb]) == ["lr", "image_size"]
    assert rc.flatten({"k" * 200: "v" * 200}) == {"k" * rc.MAX_TEXT: "v" * (rc.MAX_TEXT - 1) + "…"}
    assert rc.flatten(["not", "a", "dict"]) == {}


def test_compare_two_runs_in_the_runs_dialog(qtbot, qt_settings, tmp_path, monkeypatch):
    pytest.importorskip("pytestqt")
    from PySide6.QtGui import QColor

    from geocam_gui.ui.run_compare import DIFF_BRUSH, CompareDialog
    from geocam_gui.ui.runs_dialog import RunsDialog

    a, b = _runs(tmp_path / "ckpt")
    dlg = RunsDialog(tmp_path / "ckpt")
    qtbot.addWidget(dlg)
    assert dlg.table.rowCount() == 2
    dlg.select_run(a)
    assert not dlg.compare_button.isEnabled()  # one run with one model: nothing to compare with
    dlg.select_run(b, add=True)
    assert len(dlg.selected_all()) == 2 and dlg.compare_button.isEnabled()
    assert not dlg.delete_button.isEnabled()  # deleting acts on one run at a time
    opened = []
    monkeypatch.setattr(CompareDialog, "exec", lambda self: opened.append(self) or 0)
    dlg.compare_button.click()
    cmp = opened[0]  # a child of the runs dialog, closed with it
    labels = [cmp.table.horizontalHeaderItem(i).text() for i in range(cmp.table.columnCount())]
    # the newest run first, as the dialog lists them
    assert labels == ["demo-bbbbbbbb · Shallow CNN", "demo-bbbbbbbb · VGG11", "demo-aaaaaaaa · Shallow CNN"]
    legend = [label.text for _, label in cmp.acc.plotItem.legend.items]
    assert legend == [labels[0], labels[2]]  # the damaged VGG11 has no curve
    assert "Unreadable: demo-bbbbbbbb · VGG11" in cmp.summary.text()
    row = cmp.row_of("lr")
    assert row == 0 or cmp.row_of("image_size") == 0  # the differences come first
    assert [cmp.table.item(row, c).text() for c in range(3)] == ["0.002", rc.MISSING, "0.001"]
    assert cmp.table.item(row, 0).background().color() == DIFF_BRUSH.color()
    same = cmp.row_of("optimizer")
    assert cmp.table.item(same, 0).background().color() != QColor(DIFF_BRUSH.color())
    assert cmp.table.item(same, 1).text() == rc.MISSING
    cmp.only_diff.setChecked(True)
    assert cmp.table.rowCount() == 2 and cmp.row_of("optimizer") is None
    assert "2 setting(s) differ" in cmp.summary.text()
    cmp.show()
    qtbot.waitExposed(cmp)
    cmp.only_diff.setChecked(False)
    cmp.grab().save(str(tmp_path / "compare.png"))
