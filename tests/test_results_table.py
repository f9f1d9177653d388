"""The training panel's Results tab draws each model's confusion as a small matrix (pytest-qt)."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")


def test_confusion_is_a_small_matrix_not_a_line_of_numbers(qtbot, tmp_path):
    from PySide6.QtGui import QColor

    from geocam_gui.ui.confusion_view import ConfusionMatrix
    from geocam_gui.ui.training_views import ResultsTable

    table = ResultsTable()
    qtbot.addWidget(table)
    table.resize(900, 260)
    metrics = {"accuracy": 0.5, "classes": ["harbourtown", "stonebury"], "confusion": [[7, 0], [7, 0]],
               "per_class": {"harbourtown": {"precision": 0.5, "recall": 1.0},
                             "stonebury": {"precision": None, "recall": 0.0}}}
    table.add_row("shallow", metrics, "/runs/shallow/best.json", ["a", "b"])
    table.show()
    qtbot.waitExposed(table)
    cell = table.cellWidget(0, 3)
    assert isinstance(cell, ConfusionMatrix)
    assert cell.counts == [[7, 0], [7, 0]] and cell.classes == ["harbourtown", "stonebury"]
    assert "|" not in table.item(0, 3).text()
    assert "harbourtown: 7 → harbourtown, 0 → stonebury" in cell.toolTip()
    hint = cell.sizeHint()
    assert table.columnWidth(3) >= hint.width() and table.rowHeight(0) >= hint.height()  # not clipped
    dark_bg, dark_text = cell.cell_colors(0, 0)
    light_bg, light_text = cell.cell_colors(0, 1)
    assert dark_text == QColor("white") and light_text != QColor("white")
    assert dark_bg.lightness() < light_bg.lightness()
    table.grab().save(str(tmp_path / "results.png"))


def test_a_confusion_that_is_not_a_square_matrix_is_shown_as_text(qtbot):
    from geocam_gui.ui.training_views import ResultsTable

    table = ResultsTable()
    qtbot.addWidget(table)
    table.add_row("vgg11", {"accuracy": None, "confusion": [[1, 2, 3]]}, None, ["a", "b"])
    assert table.cellWidget(0, 3) is None and table.item(0, 3).text() == "[[1, 2, 3]]"


def test_rows_follow_the_panes_order_whatever_order_models_finish_in(qtbot):
    from geocam_gui.ui.training_views import ResultsTable

    table = ResultsTable()
    qtbot.addWidget(table)
    for name in ("resnet18", "shallow", "vgg11"):  # as a reopened workspace listed them
        table.add_row(name, {"accuracy": 0.5}, None, ["a", "b"])
    assert [table.item(r, 0).text() for r in range(3)] == ["Shallow CNN", "VGG11", "ResNet18"]
    table.remove_model("vgg11")
    table.add_row("vgg11", {"accuracy": 0.9}, None, ["a", "b"])  # retrained: back in its place
    assert [table.item(r, 0).text() for r in range(3)] == ["Shallow CNN", "VGG11", "ResNet18"]
    assert table.item(1, 1).text() == "90.0 %"
