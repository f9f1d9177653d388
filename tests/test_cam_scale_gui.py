"""The viewer's colour scale and pane fitting (issue 16), driven through the real main window:
the colour bar reads the values of each scale mode, the comparable mode divides by each model's
99th percentile (checked against numpy), and the panes refit on resizes and View > Reset layout."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from geocam_gui.core.explain import render  # noqa: E402


@pytest.fixture
def explained(main_window, qtbot, tiny_demo, torch_threads):
    """The window with the tiny demo open, untrained shallow and ResNet18 checkpoints, and the
    CAMs of the first image on screen."""
    import torch

    from geocam_gui.core.checkpoints import save_checkpoint
    from geocam_gui.core.models import build_model

    w = main_window
    w.open_dataset([str(tiny_demo)])
    qtbot.waitUntil(lambda: w.index is not None and w.is_idle(), timeout=60000)
    for name, size in (("shallow", 32), ("resnet18", 64)):
        torch.manual_seed(0)  # untrained nets whose maps of the predicted class are not empty (the p99 check needs heat)
        path = save_checkpoint(w.run_dir / name / "best", build_model(name, 2),
                               {"model": name, "classes": w.index.classes, "image_size": size})
        w.viewer.set_checkpoint(name, str(path))
    w.browser.select_row(0)
    qtbot.waitUntil(lambda: w.is_idle() and w.viewer.current_explanation() is not None
                    and w.viewer.panes["resnet18"].rgb is not None, timeout=120000)
    return w


def _choose(viewer, mode):
    viewer.scale.setCurrentIndex(viewer.scale.findData(mode))


def _drawn_equals(pane, exp, map01, opacity, max_off=0.005):
    """The pane shows ``map01`` over the photo (a few pixels may differ by float rounding)."""
    expected = render.overlay(exp.image, np.clip(render.resize_map(map01, exp.image.shape[:2]), 0, 1),
                              opacity=opacity, cmap="jet")
    off = np.abs(pane.rgb.astype(int) - expected.astype(int)).max(axis=2) > 1
    assert off.mean() <= max_off, off.mean()


def test_colour_bar_reads_the_values_of_each_scale(explained, qtbot, tmp_path):
    w = explained
    v = w.viewer
    exp = v.current_explanation()
    opacity = v.opacity.value() / 100
    assert [v.scale.itemData(i) for i in range(v.scale.count())] == ["per_map", "shared", "p99"]
    assert "not across architectures" in v.scale.toolTip()
    for i in range(v.scale.count()):  # every choice says what it means
        assert len(v.scale.itemData(i, 3)) > 60  # Qt.ToolTipRole

    # Per map: 0 … 1 of each map's own maximum.
    assert v.colorbar.tick_texts() == ["0", "0.5", "1"] and "map's peak" in v.colorbar.title
    v.grab().save(str(tmp_path / "per_map.png"))

    # Shared: the raw values, 0 … the largest ReLU'd raw value of every model and class.
    _choose(v, "shared")
    peak = max(float(np.maximum(m.raw, 0).max()) for m in exp.models.values())
    assert v.colorbar.tick_texts() == ["0", f"{peak / 2:.3g}", f"{peak:.3g}"]
    assert "raw" in v.colorbar.title and "not across architectures" in v.colorbar.toolTip()
    for name, m in exp.models.items():
        _drawn_equals(v.panes[name], exp, np.maximum(m.raw[m.predicted], 0) / peak, opacity)

    # Comparable: each model's map over its own 99th percentile, computed in the compute process.
    _choose(v, "p99")
    assert v.colorbar.tick_texts() == ["0", "0.5", "1"]
    qtbot.waitUntil(lambda: "p99" in v.colorbar.title and "not ready" not in v.colorbar.title and w.is_idle(),
                    timeout=120000)
    assert "99th-percentile" in v.colorbar.toolTip() and "clipped at 1" in v.colorbar.toolTip()
    v.grab().save(str(tmp_path / "p99.png"))

    # numpy's 99th percentile of the same models' raw maps over the val split, image by image.
    from geocam_gui.core.explain.store import ModelStore, explain_image

    val = sorted((s for s in w.index.samples if s.split == "val"), key=lambda s: s.path)[:64]
    store = ModelStore("cpu")
    checkpoints = {name: m.checkpoint for name, m in exp.models.items()}
    raws = {name: [] for name in checkpoints}
    for s in val:
        one = explain_image(s.path, checkpoints, store, strict=True)
        for name in checkpoints:
            raws[name].append(one.models[name].raw)
    for name, m in exp.models.items():
        c = m.predicted
        p99 = np.percentile(np.maximum(np.stack(raws[name])[:, c], 0).ravel(), 99)
        assert p99 > 0
        _drawn_equals(v.panes[name], exp, np.minimum(np.maximum(m.raw[c], 0) / p99, 1.0), opacity)

    # The same reference is kept: back and forth computes nothing new.
    _choose(v, "per_map")
    _choose(v, "p99")
    assert not v.references.busy() and "not ready" not in v.colorbar.title


def test_the_reference_waits_for_a_dataset(qtbot, qt_settings):
    """Alone (no dataset open) the comparable mode says why it shows per-map colours."""
    from geocam_gui.core.explain.store import ImageExplanation, ModelExplanation
    from geocam_gui.ui.cam_viewer import CamViewer

    v = CamViewer()
    qtbot.addWidget(v)
    rng = np.random.default_rng(0)
    exp = ImageExplanation("/x/a.jpg", "tokyo", rng.integers(0, 255, (30, 40, 3), dtype=np.uint8))
    exp.models["shallow"] = ModelExplanation("shallow", "/c/shallow", ["pittsburgh", "tokyo"],
                                             rng.random((2, 4, 4)).astype(np.float32),
                                             np.array([0.4, 0.6], np.float32), 32, "gradcam")
    v._sample = (exp.path, exp.label)  # the image selected, and its model active
    v.workspace._checkpoints["shallow"] = "/c/shallow"
    v._requested_key = ("k",)
    v._on_result(("k",), exp)
    _choose(v, "p99")
    assert "not ready" in v.colorbar.title and "Open a dataset" in v.colorbar.toolTip()
    assert v.colorbar.tick_texts() == ["0", "0.5", "1"] and not v.references.busy()
    v.shutdown()


def _image_rect(pane):
    """The image's size on screen (pixels of the pane's graphics view) and the view's size."""
    item = pane.image_item
    r = pane.graphics.mapFromScene(item.mapRectToScene(item.boundingRect())).boundingRect()
    return (r.width(), r.height()), (pane.graphics.width(), pane.graphics.height())


def _fits(pane):
    (iw, ih), (vw, vh) = _image_rect(pane)
    return max(iw / vw, ih / vh) == pytest.approx(1.0, abs=0.02) and iw <= vw + 2 and ih <= vh + 2


def test_panes_refit_after_resizes_and_reset_layout(explained, qtbot):
    w = explained
    pane = w.viewer.panes["shallow"]
    qtbot.waitUntil(lambda: _fits(pane), timeout=5000)
    before = _image_rect(pane)[0]
    w.resize(1000, 650)
    qtbot.waitUntil(lambda: _image_rect(pane)[0] != before and _fits(pane), timeout=5000)
    w.resize(1400, 900)
    qtbot.waitUntil(lambda: _fits(pane), timeout=5000)

    # Zoom in, move the docks, then View > Reset layout: the whole image is back, fitted.
    pane.view.scaleBy((0.25, 0.25))
    pane.view.sigRangeChangedManually.emit(pane.view.state["mouseEnabled"])  # as a mouse wheel does
    qtbot.waitUntil(lambda: not _fits(pane), timeout=5000)
    w.browser_dock.setFloating(True)
    w.training_dock.hide()
    qtbot.waitUntil(lambda: not _fits(pane), timeout=5000)  # the user's zoom survives a resize
    small = _image_rect(pane)[1]
    w.reset_layout()
    qtbot.waitUntil(lambda: _image_rect(pane)[1] != small and _fits(pane), timeout=5000)
    for other in w.viewer.panes.values():
        if other.rgb is not None:
            assert _fits(other)
