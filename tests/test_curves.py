"""The training curves' epoch axis shows whole epochs only."""

from __future__ import annotations


def test_epoch_axis_has_no_fractional_ticks(qtbot, qt_settings, tmp_path):
    from geocam_gui.ui.training_views import Curves

    curves = Curves()
    qtbot.addWidget(curves)
    for epoch, acc in ((1, 0.5), (2, 0.62)):
        curves.add("shallow", "acc", "val", epoch, acc)
        curves.add("shallow", "loss", "val", epoch, 1 - acc)
    curves.resize(900, 300)
    curves.show()
    qtbot.wait(50)
    for plot in (curves.loss, curves.acc):
        axis = plot.getAxis("bottom")
        for lo, hi, px in ((1, 2, 400), (0.9, 2.1, 800), (1.2, 1.8, 600), (0, 120, 400)):
            ticks = [v for _, values in axis.tickValues(lo, hi, px) for v in values]
            assert all(float(v).is_integer() for v in ticks), (lo, hi, ticks)
            assert bool(ticks) == (int(hi) >= lo)  # a whole epoch in view gets its tick
        assert axis.tickValues(0, 120, 400)[0][0] >= 10  # many epochs: not one tick each
    curves.grab().save(str(tmp_path / "curves.png"))


def test_accuracy_is_drawn_in_percent_and_kept_as_a_share(qtbot, qt_settings):
    from geocam_gui.ui.training_views import Curves

    curves = Curves()
    qtbot.addWidget(curves)
    curves.add("vgg11", "acc", "train", 1, 0.825)
    curves.add("vgg11", "loss", "train", 1, 0.4)
    assert list(curves._items[("vgg11", "acc", "train")].getData()[1]) == [82.5]  # as the results table says it
    assert list(curves._items[("vgg11", "loss", "train")].getData()[1]) == [0.4]
    assert curves.series("vgg11", "acc", "train") == [(1, 0.825)]
    assert "%" in curves.acc.plotItem.titleLabel.text
