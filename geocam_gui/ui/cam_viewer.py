"""The tri-pane Grad-CAM viewer: shallow, VGG11 and ResNet18 side by side.

CAMs of every class are computed off the GUI thread (``LatestWorker``: the newest selection
wins); opacity, class, scale and colormap changes only re-blend the cached maps here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSlider,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from geocam_gui.core.explain import render
from geocam_gui.core.explain.cam import METHOD_LABELS, METHODS
from geocam_gui.core.explain.store import GROUND_TRUTH, PREDICTED, ImageExplanation, ModelStore, display_maps, explain_image
from geocam_gui.core.models import MODEL_LABELS, MODEL_NAMES
from geocam_gui.ui.workers import LatestWorker



def to_qimage(rgb: np.ndarray) -> QImage:
    """An (H, W, 3|4) uint8 array as a QImage that owns its pixels."""
    rgb = np.ascontiguousarray(rgb)
    h, w, c = rgb.shape
    fmt = QImage.Format.Format_RGB888 if c == 3 else QImage.Format.Format_RGBA8888
    return QImage(rgb.data, w, h, c * w, fmt).copy()


class CamPane(QFrame):
    """One model's view: image + overlay, prediction, probabilities, checkpoint."""

    trainRequested = Signal(str)

    def __init__(self, name: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.name = name
        self.setObjectName("camPane")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.setSpacing(4)

        self.title = QLabel(f"<b>{MODEL_LABELS[name]}</b>")
        self.title.setObjectName("paneTitle")
        layout.addWidget(self.title)

        self.stack = QStackedWidget()
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground(None)
        self.graphics.ci.setContentsMargins(0, 0, 0, 0)
        self.view: pg.ViewBox = self.graphics.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.view.setDefaultPadding(0.0)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.view.addItem(self.image_item)
        self.stack.addWidget(self.graphics)

        empty = QWidget()
        el = QVBoxLayout(empty)
        el.addStretch(1)
        self.empty_label = QLabel()
        self.empty_label.setObjectName("emptyState")
        self.empty_label.setWordWrap(True)
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        el.addWidget(self.empty_label)
        self.train_button = QPushButton(f"Train {MODEL_LABELS[name]}")
        self.train_button.clicked.connect(lambda: self.trainRequested.emit(self.name))
        el.addWidget(self.train_button, 0, Qt.AlignmentFlag.AlignHCenter)
        el.addStretch(1)
        self.stack.addWidget(empty)
        self.stack.setMinimumSize(QSize(120, 110))
        self.stack.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        layout.addWidget(self.stack, 1)

        self.prediction = QLabel(" ")
        self.prediction.setObjectName("prediction")
        self.prediction.setWordWrap(True)
        layout.addWidget(self.prediction)
        self.bars_box = QVBoxLayout()
        self.bars_box.setSpacing(2)
        layout.addLayout(self.bars_box)
        self._bars: list[tuple[QLabel, QProgressBar]] = []
        self.checkpoint_label = QLabel(" ")
        self.checkpoint_label.setObjectName("checkpointLabel")
        self.checkpoint_label.setWordWrap(True)
        layout.addWidget(self.checkpoint_label)
        self.chance_label = QLabel()
        self.chance_label.setObjectName("chanceLabel")
        self.chance_label.setWordWrap(True)
        self.chance_label.setVisible(False)
        layout.addWidget(self.chance_label)
        self.rgb: np.ndarray | None = None
        self.show_empty(f"No {MODEL_LABELS[name]} trained yet - train one in the Training panel.", offer_training=True)

    # -- states ---------------------------------------------------------------------------
    def show_empty(self, text: str, *, offer_training: bool = False) -> None:
        self.empty_label.setText(text)
        self.train_button.setVisible(offer_training)
        self.stack.setCurrentIndex(1)
        self.rgb = None
        self.prediction.setText(" ")
        self._set_bars([], None)

    def show_rgb(self, rgb: np.ndarray) -> None:
        first = self.image_item.image is None or self.image_item.image.shape[:2] != rgb.shape[:2]
        self.rgb = rgb
        self.image_item.setImage(rgb, autoLevels=False, levels=(0, 255))
        if first:
            # Fit the whole image, and keep fitting on resizes until the user zooms or pans.
            self.view.enableAutoRange()
        self.stack.setCurrentIndex(0)

    def set_checkpoint_text(self, text: str) -> None:
        self.checkpoint_label.setText(text)

    def set_chance(self, verdict: dict | None) -> None:
        """Whether the model's test accuracy beats the majority-class rate (``core.chance``);
        a warning when it does not, nothing when the checkpoint stores no test metrics."""
        if not verdict:
            self.chance_label.setVisible(False)
            self.chance_label.setText("")
            return
        lo, hi = verdict["ci95"]
        acc = f"test accuracy {100 * verdict['accuracy']:.1f} % (95 % CI {100 * lo:.0f}-{100 * hi:.0f} %)"
        if verdict["above_chance"]:
            text = f"<span style='color:#5f6b7a'>{acc}, above chance (p = {verdict['p_value']:.2g})</span>"
        else:
            text = (f"<span style='color:#8a5a00'><b>At chance</b>: {acc} is not above "
                    f"{100 * verdict['majority_rate']:.0f} % (p = {verdict['p_value']:.2g}); "
                    "its heat map may show nothing it learned.</span>")
        self.chance_label.setText(text)
        self.chance_label.setToolTip(verdict["message"])
        self.chance_label.setVisible(True)

    def set_prediction(self, classes: list[str], probs: np.ndarray | None, label: str | None, shown: str) -> None:
        if probs is None:
            self.prediction.setText(" ")
            self._set_bars([], None)
            return
        k = int(np.argmax(probs))
        verdict = ""
        if label in classes:
            verdict = "  ✓" if classes[k] == label else "  ✗ wrong"
        self.prediction.setText(
            f"Predicts <b>{classes[k]}</b> ({probs[k] * 100:.1f} %){verdict}<br>"
            f"<span style='color:#5f6b7a'>showing: {shown}</span>"
        )
        self._set_bars(classes, probs)

    def _set_bars(self, classes: list[str], probs: np.ndarray | None) -> None:
        while len(self._bars) < len(classes):
            row = QHBoxLayout()
            name = QLabel()
            name.setMinimumWidth(70)
            bar = QProgressBar()
            bar.setRange(0, 1000)
            bar.setTextVisible(True)
            bar.setMaximumHeight(14)
            row.addWidget(name)
            row.addWidget(bar, 1)
            self.bars_box.addLayout(row)
            self._bars.append((name, bar))
        for i, (name, bar) in enumerate(self._bars):
            visible = i < len(classes)
            name.setVisible(visible)
            bar.setVisible(visible)
            if visible and probs is not None:
                name.setText(classes[i])
                bar.setValue(int(round(float(probs[i]) * 1000)))
                bar.setFormat(f"{probs[i] * 100:.1f} %")


class CamViewer(QWidget):
    """Three panes with shared controls: class, opacity, method, colormap, scale."""

    trainRequested = Signal(str)
    exportRequested = Signal()
    statusMessage = Signal(str)
    camsShown = Signal(str)  # path of the image whose CAMs are on screen

    def __init__(self, parent: QWidget | None = None, device: str = "cpu"):
        super().__init__(parent)
        self._checkpoints: dict[str, str | None] = {name: None for name in MODEL_NAMES}
        self._checkpoint_errors: dict[str, str] = {}
        self._classes: list[str] = []
        self._sample: tuple[str, str | None] | None = None
        self._explanation: ImageExplanation | None = None
        self._requested_key: tuple | None = None
        self._shown_key: tuple | None = None
        self._map_cache: dict = {}
        self._map_cache_key: tuple | None = None
        self._store = ModelStore(device)
        self._worker = LatestWorker("cam-worker", self._compute, self)
        self._worker.resultReady.connect(self._on_result)
        self._worker.failed.connect(self._on_failed)

        outer = QVBoxLayout(self)
        outer.setContentsMargins(4, 4, 4, 4)
        outer.addLayout(self._build_controls())
        self.heading = QLabel("Select an image in the dataset browser to see what each model looks at.")
        self.heading.setObjectName("viewerHeading")
        self.heading.setWordWrap(True)
        outer.addWidget(self.heading)

        row = QHBoxLayout()
        self.panes: dict[str, CamPane] = {}
        for name in MODEL_NAMES:
            pane = CamPane(name)
            pane.trainRequested.connect(self.trainRequested)
            self.panes[name] = pane
            row.addWidget(pane, 1)
        # Zoom and pan are linked across the panes.
        first = self.panes[MODEL_NAMES[0]].view
        for name in MODEL_NAMES[1:]:
            self.panes[name].view.setXLink(first)
            self.panes[name].view.setYLink(first)
        self.colorbar = QLabel()
        self.colorbar.setObjectName("colorbar")
        self.colorbar.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.colorbar.setToolTip("Colour scale: top = strongest evidence for the class shown")
        bar_box = QVBoxLayout()
        self.colorbar_top = QLabel("high")
        self.colorbar_bottom = QLabel("low")
        for lab in (self.colorbar_top, self.colorbar_bottom):
            lab.setObjectName("colorbarLabel")
            lab.setAlignment(Qt.AlignmentFlag.AlignCenter)
        bar_box.addWidget(self.colorbar_top)
        bar_box.addWidget(self.colorbar, 1)
        bar_box.addWidget(self.colorbar_bottom)
        row.addLayout(bar_box)
        outer.addLayout(row, 1)
        self._update_colorbar()
        for name in MODEL_NAMES:
            self._refresh_empty(name)

    # -- controls -----------------------------------------------------------------------
    def _build_controls(self) -> QVBoxLayout:
        rows = QVBoxLayout()
        rows.setSpacing(4)
        bar = QHBoxLayout()
        bar.setSpacing(6)
        rows.addLayout(bar)
        bar.addWidget(QLabel("Explain:"))
        self.class_group = QButtonGroup(self)
        self.class_group.setExclusive(True)
        self.class_box = QHBoxLayout()
        self.class_box.setSpacing(2)
        bar.addLayout(self.class_box)
        self._set_class_buttons([])
        self.class_group.buttonToggled.connect(self._on_class_toggled)
        bar.addStretch(1)
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Export the overlays and a figure for a publication")
        self.export_button.clicked.connect(self.exportRequested)
        bar.addWidget(self.export_button)

        bar = QHBoxLayout()
        bar.setSpacing(6)
        rows.addLayout(bar)
        bar.addWidget(QLabel("Opacity"))
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(50)
        self.opacity.setFixedWidth(110)
        self.opacity.setToolTip("Opacity of the heat map over the photo")
        self.opacity_label = QLabel("50 %")
        self.opacity_label.setMinimumWidth(38)
        self.opacity.valueChanged.connect(lambda v: (self.opacity_label.setText(f"{v} %"), self.rerender()))
        bar.addWidget(self.opacity)
        bar.addWidget(self.opacity_label)

        self.method = QComboBox()
        bar.addWidget(QLabel("Method"))
        for m in METHODS:
            self.method.addItem(METHOD_LABELS.get(m, m), m)
        self.method.setToolTip("CAM method")
        self.method.currentIndexChanged.connect(lambda _i: self.recompute())
        bar.addWidget(self.method)

        self.cmap = QComboBox()
        bar.addWidget(QLabel("Colormap"))
        for c in render.COLORMAPS:
            self.cmap.addItem(c, c)
        self.cmap.setToolTip("Colormap (jet as in the paper: red = high, blue = low)")
        self.cmap.currentIndexChanged.connect(lambda _i: (self._update_colorbar(), self.rerender()))
        bar.addWidget(self.cmap)

        self.shared = QCheckBox("Shared scale")
        self.shared.setToolTip("One colour scale across the three panes and the classes")
        self.shared.toggled.connect(lambda _b: self.rerender())
        bar.addWidget(self.shared)

        self.fit_button = QToolButton()
        self.fit_button.setText("Fit")
        self.fit_button.setToolTip("Reset zoom and pan (linked across panes)")
        self.fit_button.clicked.connect(self.fit)
        bar.addWidget(self.fit_button)
        bar.addStretch(1)
        return rows

    def _set_class_buttons(self, classes: list[str]) -> None:
        current = self.class_choice() if self.class_group.buttons() else PREDICTED
        for b in self.class_group.buttons():
            self.class_group.removeButton(b)
            b.deleteLater()
        for choice in [PREDICTED, GROUND_TRUTH, *classes]:
            b = QToolButton()
            b.setText(choice.capitalize() if choice in (PREDICTED, GROUND_TRUTH) else choice)
            b.setCheckable(True)
            b.setProperty("choice", choice)
            b.setObjectName("classToggle")
            b.setToolTip(f"Show the evidence for: {choice}")
            self.class_group.addButton(b)
            self.class_box.addWidget(b)
            if choice == current:
                b.setChecked(True)
        if self.class_group.checkedButton() is None:
            self.class_group.buttons()[0].setChecked(True)

    def _on_class_toggled(self, _button, checked: bool) -> None:
        if checked:
            self.rerender()

    def class_choice(self) -> str:
        b = self.class_group.checkedButton()
        return b.property("choice") if b is not None else PREDICTED

    def set_class_choice(self, choice: str) -> None:
        for b in self.class_group.buttons():
            if b.property("choice") == choice:
                b.setChecked(True)
                return
        raise ValueError(f"no class toggle {choice!r}")

    def fit(self) -> None:
        for pane in self.panes.values():
            if pane.rgb is not None:
                pane.view.enableAutoRange()

    def _update_colorbar(self) -> None:
        bar = render.colorbar(self.cmap.currentData() or "jet", 200, 14, vertical=True)
        self.colorbar.setPixmap(QPixmap.fromImage(to_qimage(bar)))

    # -- inputs ---------------------------------------------------------------------------
    def set_classes(self, classes: list[str]) -> None:
        if list(classes) != self._classes:
            self._classes = list(classes)
            self._set_class_buttons(self._classes)

    def set_checkpoint(self, name: str, path: str | None, error: str | None = None) -> None:
        """Show ``path``'s model in pane ``name`` (None: no model); re-explain the image."""
        self._checkpoints[name] = str(path) if path else None
        if error:
            self._checkpoint_errors[name] = error
        else:
            self._checkpoint_errors.pop(name, None)
        self._refresh_empty(name)
        self.panes[name].set_chance(None if error or not path else _chance_of(str(path)))
        self.recompute()

    def checkpoints(self) -> dict[str, str | None]:
        return dict(self._checkpoints)

    def set_sample(self, path: str | None, label: str | None = None) -> None:
        self._sample = (str(path), label) if path else None
        self.recompute()

    def current_sample(self) -> tuple[str, str | None] | None:
        """(path, true label) of the image the viewer shows, or None."""
        return self._sample

    def _refresh_empty(self, name: str) -> None:
        pane = self.panes[name]
        ckpt = self._checkpoints.get(name)
        if name in self._checkpoint_errors:
            pane.show_empty(f"The {MODEL_LABELS[name]} checkpoint could not be loaded:\n{self._checkpoint_errors[name]}",
                            offer_training=True)
            pane.set_checkpoint_text(" ")
        elif not ckpt:
            pane.show_empty(f"No {MODEL_LABELS[name]} trained yet - train one in the Training panel.",
                            offer_training=True)
            pane.set_checkpoint_text(" ")
        else:
            pane.set_checkpoint_text(f"<span style='color:#5f6b7a'>{_short_ckpt(ckpt)}</span>")
            if self._sample is None:
                pane.show_empty("Select an image in the dataset browser.")

    # -- computation ----------------------------------------------------------------------
    def recompute(self) -> None:
        """Ask the worker for the CAMs of the current image (latest request wins)."""
        if self._sample is None:
            return
        active = {k: v for k, v in self._checkpoints.items() if v}
        if not active:
            self.heading.setText(f"{Path(self._sample[0]).name} - no trained model yet.")
            return
        method = self.method.currentData() or "gradcam"
        key = (self._sample[0], self._sample[1], tuple(sorted(active.items())), method, self._stamp(active))
        self._requested_key = key
        self.heading.setText(f"{Path(self._sample[0]).name} - computing…")
        self._worker.submit(key, (self._sample[0], self._sample[1], active, method))

    @staticmethod
    def _stamp(active: dict[str, str]) -> tuple:
        out = []
        for path in active.values():
            try:
                out.append(Path(path).stat().st_mtime_ns)
            except OSError:
                out.append(0)
        return tuple(out)

    def _compute(self, request) -> ImageExplanation:  # runs on the worker thread
        path, label, checkpoints, method = request
        return explain_image(path, checkpoints, self._store, method=method, label=label)

    def _on_result(self, key, explanation: ImageExplanation) -> None:
        if key != self._requested_key:
            return  # stale: a newer request is on its way
        self._shown_key = key
        self._explanation = explanation
        for name, err in explanation.errors.items():
            self._checkpoint_errors[name] = err
            self._refresh_empty(name)
        self.rerender()
        self.camsShown.emit(explanation.path)

    def _on_failed(self, key, message: str) -> None:
        if key != self._requested_key:
            return
        self._shown_key = key
        self._explanation = None
        self.heading.setText(f"Cannot explain this image: {message}")
        for pane in self.panes.values():
            if self._checkpoints.get(pane.name):
                pane.show_empty(message)
        self.statusMessage.emit(message)

    def is_busy(self) -> bool:
        """True while the CAMs on screen are not those of the latest request."""
        return self._requested_key is not None and self._requested_key != self._shown_key

    # -- re-blending (GUI thread, cached maps only) ----------------------------------------
    def rerender(self) -> None:
        exp = self._explanation
        if exp is None:
            return
        choice = self.class_choice()
        maps = self._full_size_maps(exp, choice, self.shared.isChecked())
        opacity = self.opacity.value() / 100.0
        cmap = self.cmap.currentData() or "jet"
        label = f" (ground truth: {exp.label})" if exp.label else ""
        self.heading.setText(f"<b>{Path(exp.path).name}</b>{label}")
        for name, pane in self.panes.items():
            result = exp.panes.get(name)
            if result is None or name not in maps:
                if result is not None:  # e.g. ground truth not among this model's classes
                    pane.show_rgb(exp.image)
                    pane.set_prediction(result.classes, result.probs, exp.label, "no such class")
                continue
            idx, m, _scale = maps[name]
            pane.show_rgb(render.overlay(exp.image, m, opacity=opacity, cmap=cmap))
            pane.set_prediction(result.classes, result.probs, exp.label, result.classes[idx])
        if self.shared.isChecked():
            self.colorbar_top.setText("max")
            self.colorbar_bottom.setText("0")
        else:
            self.colorbar_top.setText("high")
            self.colorbar_bottom.setText("low")

    def _full_size_maps(self, exp: ImageExplanation, choice: str, shared: bool) -> dict:
        """Normalised maps resized to the photo, cached per (image, class, scale): an opacity or
        colormap change then only blends."""
        key = (id(exp), choice, shared)
        if self._map_cache_key != key:
            h, w = exp.image.shape[:2]
            self._map_cache = {
                name: (idx, render.resize_map(m, (h, w)), scale)
                for name, (idx, m, scale) in display_maps(exp, choice, shared=shared).items()
            }
            self._map_cache_key = key
        return self._map_cache

    def current_explanation(self) -> ImageExplanation | None:
        return self._explanation

    def shutdown(self) -> None:
        self._worker.stop()


def _chance_of(path: str) -> dict | None:
    """The chance verdict of a checkpoint's stored test metrics (None when it has none or is unreadable)."""
    from geocam_gui.core.chance import chance_of_checkpoint
    from geocam_gui.core.checkpoints import read_meta
    from geocam_gui.core.errors import GeoCamError

    try:
        return chance_of_checkpoint(read_meta(path))
    except (GeoCamError, OSError, ValueError):
        return None


def _short_ckpt(path: str) -> str:
    p = Path(path)
    parts = p.parts[-3:]
    return "checkpoint: …/" + "/".join(parts)
