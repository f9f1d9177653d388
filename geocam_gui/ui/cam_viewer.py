"""The tri-pane Grad-CAM viewer: shallow, VGG11 and ResNet18 side by side.

CAMs of every class are computed in the compute process (``ui.compute``, lane ``explain``: the
newest selection wins); opacity, class, scale and colormap changes only re-blend the cached maps
here. The scale modes, the colour bar and the models' reference scales live in ``ui.cam_scale``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from geocam_gui.core.chance import chance_of_file
from geocam_gui.core.explain import render
from geocam_gui.core.explain.cam import METHOD_LABELS, METHODS
from geocam_gui.core.explain.store import GROUND_TRUTH, PREDICTED, ImageExplanation, full_size_maps
from geocam_gui.core.models import MODEL_LABELS, MODEL_NAMES
from geocam_gui.core.workspace import Workspace
from geocam_gui.ui.cam_pane import CamPane
from geocam_gui.ui.cam_scale import PER_MAP, REFERENCE, SHARED, ColourBar, ReferenceScales, colour_bar_text, scale_chooser
from geocam_gui.ui.compute import ComputeBridge, Reply, shared_bridge

LANE = "explain"  # the compute process serves this lane before any other


class CamViewer(QWidget):
    """Three panes with shared controls: class, opacity, method, colormap, scale."""

    trainRequested = Signal(str)
    exportRequested = Signal()
    statusMessage = Signal(str)
    camsShown = Signal(str)  # path of the image whose CAMs are on screen

    def __init__(self, parent: QWidget | None = None, device: str = "cpu", workspace: Workspace | None = None,
                 bridge: ComputeBridge | None = None):
        super().__init__(parent)
        # The active checkpoints live in the workspace (the window's, or an own one when alone).
        self.workspace = workspace if workspace is not None else Workspace()
        self._load_errors: dict[str, str] = {}  # checkpoints that failed to load when explaining
        self._classes: list[str] = []
        self._sample: tuple[str, str | None] | None = None
        self._explanation: ImageExplanation | None = None
        self._requested_key: tuple | None = None
        self._shown_key: tuple | None = None
        self._map_cache: dict = {}
        self._map_cache_key: tuple | None = None
        self._overrides: dict[str, tuple[str, np.ndarray, str]] = {}  # pane -> (image path, map01, caption)
        self._training: dict[str, str] = {}  # pane -> what its model's training run is doing
        # Models live in the compute process: this one never loads a checkpoint or runs torch.
        self.bridge = bridge if bridge is not None else shared_bridge(device)
        self.bridge.replied.connect(self._on_reply)
        self._request_id: int | None = None
        self.references = ReferenceScales(self.bridge, self)
        self.references.changed.connect(self._on_reference)

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
            pane.cam_button.clicked.connect(lambda _c=False, n=name: self.show_cam(n))
            pane.view.sigRangeChangedManually.connect(self._on_user_zoom)
            self.panes[name] = pane
            row.addWidget(pane, 1)
        # Zoom and pan are linked across the panes.
        first = self.panes[MODEL_NAMES[0]].view
        for name in MODEL_NAMES[1:]:
            self.panes[name].view.setXLink(first)
            self.panes[name].view.setYLink(first)
        self.colorbar = ColourBar()
        row.addWidget(self.colorbar)
        outer.addLayout(row, 1)
        self.colorbar.set_scale(*colour_bar_text(PER_MAP, 1.0))
        for name in MODEL_NAMES:
            self._refresh_empty(name)
        self.workspace.events.checkpoint.connect(self._on_checkpoint)

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
        self.export_button = QPushButton("Export…", toolTip="Export the overlays and a figure for a publication")
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

        self.method = QComboBox(toolTip="CAM method")
        bar.addWidget(QLabel("Method"))
        for m in METHODS:
            self.method.addItem(METHOD_LABELS.get(m, m), m)
        self.method.currentIndexChanged.connect(lambda _i: self.recompute())
        bar.addWidget(self.method)

        self.cmap = QComboBox(toolTip="Colormap (jet as in the paper: red = high, blue = low)")
        bar.addWidget(QLabel("Colormap"))
        for c in render.COLORMAPS:
            self.cmap.addItem(c, c)
        self.cmap.currentIndexChanged.connect(lambda _i: (self.colorbar.set_cmap(self.cmap.currentData()), self.rerender()))
        bar.addWidget(self.cmap)

        bar.addWidget(QLabel("Scale"))
        self.scale = scale_chooser()
        self.scale.currentIndexChanged.connect(lambda _i: self.rerender())
        bar.addWidget(self.scale)

        self.fit_button = QToolButton(text="Fit", toolTip="Reset zoom and pan (linked across panes)")
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
        """Fit the whole image again, and keep fitting on every resize until the user zooms."""
        for pane in self.panes.values():
            pane.follow_fit = True
            pane.refit()

    def _on_user_zoom(self, *_args) -> None:
        for pane in self.panes.values():  # the panes are linked: none refits over the user's zoom
            pane.follow_fit = False

    def scale_mode(self) -> str:
        return self.scale.currentData() or PER_MAP

    def _on_reference(self) -> None:
        if self.scale_mode() == REFERENCE:
            self.rerender()

    # -- inputs ---------------------------------------------------------------------------
    def set_classes(self, classes: list[str]) -> None:
        if list(classes) != self._classes:
            self._classes = list(classes)
            self._set_class_buttons(self._classes)

    def set_checkpoint(self, name: str, path: str | None, error: str | None = None) -> None:
        """Make ``path`` the workspace's checkpoint of ``name`` (the pane follows)."""
        self.workspace.set_checkpoint(name, path, error)

    def _on_checkpoint(self, name: str, path: str | None, error: str | None) -> None:
        """The workspace's checkpoint of ``name`` changed: show it and re-explain the image."""
        self._load_errors.pop(name, None)
        self._refresh_empty(name)
        self.panes[name].set_chance(None if error or not path else chance_of_file(str(path)))
        self.recompute()

    def checkpoints(self) -> dict[str, str | None]:
        return self.workspace.checkpoints

    def _error_of(self, name: str) -> str | None:
        return self.workspace.checkpoint_error(name) or self._load_errors.get(name)

    def set_sample(self, path: str | None, label: str | None = None) -> None:
        self._sample = (str(path), label) if path else None
        self.recompute()

    # -- another map instead of the CAM (the Units tab) -----------------------------------
    def show_map(self, name: str, path: str, map01: np.ndarray, caption: str) -> None:
        """Show ``map01`` (any size, values in [0, 1]) instead of the CAM in pane ``name`` while
        image ``path`` is on screen; ``caption`` says what it is. ``show_cam`` goes back."""
        self._overrides[name] = (str(path), np.asarray(map01, np.float32), caption)
        self.rerender()

    def show_cam(self, name: str | None = None) -> None:
        """Back to the CAM in pane ``name`` (every pane when None)."""
        for n in [name] if name else list(self._overrides):
            self._overrides.pop(n, None)
            self.panes[n].cam_button.setVisible(False)
        self.rerender()

    def shown_map(self, name: str) -> str | None:
        """The caption of the map shown instead of the CAM in pane ``name``, or None."""
        exp = self._explanation
        o = self._overrides.get(name)
        return o[2] if o and exp is not None and o[0] == exp.path else None

    def current_sample(self) -> tuple[str, str | None] | None:
        """(path, true label) of the image the viewer shows, or None."""
        return self._sample

    def set_training_note(self, name: str, text: str | None) -> None:
        """While ``name`` trains or waits in a run, ``text`` says so in its pane (None: the truth)."""
        if self._training.get(name) != (text or None):
            self._training[name] = text or None
            self._refresh_empty(name)

    def _refresh_empty(self, name: str) -> None:
        pane = self.panes[name]
        ckpt = self.workspace.checkpoints.get(name)
        error = self._error_of(name)
        if pane.show_training(self._training.get(name), bool(ckpt) and not error):
            return
        if error:
            pane.show_empty(f"The {MODEL_LABELS[name]} checkpoint could not be loaded:\n{error}",
                            offer_training=True)
            pane.set_checkpoint_text(" ")
        elif not ckpt:
            pane.show_empty(f"No {MODEL_LABELS[name]} trained yet - train one in the Training panel.",
                            offer_training=True)
            pane.set_checkpoint_text(" ")
        else:
            pane.set_checkpoint_text(f"<span style='color:#5f6b7a'>{_short_ckpt(ckpt)}</span>")
            pane.checkpoint_label.setToolTip(str(ckpt))
            if self._sample is None:
                pane.show_empty("Select an image in the dataset browser.")

    # -- computation ----------------------------------------------------------------------
    def recompute(self) -> None:
        """Ask the worker for the CAMs of the current image (latest request wins)."""
        if self._sample is None:
            return
        active = self.workspace.active_checkpoints()
        if not active:  # nothing to explain with: what is on screen must not stay
            if self._requested_key != self._shown_key:
                self.bridge.cancel(LANE)
            self._explanation = self._requested_key = self._shown_key = None
            for name in self.panes:
                self._refresh_empty(name)
            self.heading.setText(f"{Path(self._sample[0]).name} - no trained model yet.")
            return
        method = self.method.currentData() or "gradcam"
        key = (self._sample[0], self._sample[1], tuple(sorted(active.items())), method, self._stamp(active))
        self._requested_key = key
        self.heading.setText(f"{Path(self._sample[0]).name} - computing…")
        self._request_id = self.bridge.submit(LANE, "explain", path=self._sample[0], checkpoints=active,
                                              method=method, label=self._sample[1])

    @staticmethod
    def _stamp(active: dict[str, str]) -> tuple:
        out = []
        for path in active.values():
            try:
                out.append(Path(path).stat().st_mtime_ns)
            except OSError:
                out.append(0)
        return tuple(out)

    def _on_reply(self, reply: Reply) -> None:
        if reply.lane != LANE or reply.id != self._request_id or reply.status == "progress":
            return  # another view's, or an older request's
        if reply.status == "result":
            self._on_result(self._requested_key, reply.payload)
        else:  # "error": a sentence; "crashed": the compute process died (restarted on the next request)
            self._on_failed(self._requested_key, str(reply.payload))

    def _on_result(self, key, explanation: ImageExplanation) -> None:
        if key != self._requested_key:
            return  # stale: a newer request is on its way
        self._shown_key = key
        self._explanation = explanation
        for name, err in explanation.errors.items():
            self._load_errors[name] = err
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
            if self.workspace.checkpoints.get(pane.name):
                pane.show_empty(message)
        self.statusMessage.emit(message)

    def is_busy(self) -> bool:
        """True while the latest request's CAMs, or a reference scale, are still being computed."""
        return self.references.busy() or (self._requested_key is not None and self._requested_key != self._shown_key)

    # -- re-blending (GUI thread, cached maps only) ----------------------------------------
    def rerender(self) -> None:
        exp = self._explanation
        if exp is None or self._sample is None or exp.path != self._sample[0]:
            return  # not the image selected now: its answer is on its way
        choice = self.class_choice()
        maps = self._scaled_maps(exp, choice)
        opacity = self.opacity.value() / 100.0
        cmap = self.cmap.currentData() or "jet"
        label = f" (ground truth: {exp.label})" if exp.label else ""
        self.heading.setText(f"<b>{Path(exp.path).name}</b>{label}")
        for name, pane in self.panes.items():
            result = exp.models.get(name) if self.workspace.checkpoints.get(name) else None
            if result is None or name not in maps:
                if result is not None:  # e.g. ground truth not among this model's classes
                    pane.show_rgb(exp.image)
                    pane.set_prediction(result.classes, result.probs, exp.label, "no such class")
                continue
            idx, m, _scale = maps[name]
            override = self._overrides.get(name)
            if override is not None and override[0] == exp.path:
                m = render.resize_map(override[1], exp.image.shape[:2])
            pane.cam_button.setVisible(override is not None and override[0] == exp.path)
            pane.show_rgb(render.overlay(exp.image, m, opacity=opacity, cmap=cmap))
            shown = override[2] if pane.cam_button.isVisible() else result.classes[idx]
            pane.set_prediction(result.classes, result.probs, exp.label, shown)

    def _scaled_maps(self, exp: ImageExplanation, choice: str) -> dict:
        """The maps on the chosen scale (per map until the reference one is ready); the colour
        bar shows the values they stand for."""
        mode, refs, note = self.scale_mode(), None, None
        if mode == REFERENCE:
            refs, note = self.references.lookup(exp.models, self.workspace.index)
        maps = self._full_size_maps(exp, choice, PER_MAP if mode == REFERENCE and refs is None else mode, refs)
        peak = next(iter(maps.values()))[2] if maps and mode == SHARED else 1.0
        self.colorbar.set_scale(*colour_bar_text(mode, peak, note, ready=refs is not None))
        return maps

    def _full_size_maps(self, exp: ImageExplanation, choice: str, mode: str, refs: dict | None = None) -> dict:
        """Normalised maps resized to the photo, cached per (image, class, scale): an opacity or
        colormap change then only blends."""
        key = (id(exp), choice, mode, tuple((k, id(r)) for k, r in (refs or {}).items()))
        if self._map_cache_key != key:
            self._map_cache = full_size_maps(exp, choice, shared=mode == SHARED, reference=refs)
            self._map_cache_key = key
        return self._map_cache

    def current_explanation(self) -> ImageExplanation | None:
        return self._explanation

    def shutdown(self) -> None:
        if self._request_id is not None and self._requested_key != self._shown_key:
            self.bridge.cancel(LANE)
        self.references.cancel_all()
        self.bridge.replied.disconnect(self._on_reply)


def _short_ckpt(path: str) -> str:
    """One line for the pane (model folder and file); the full path is the label's tooltip."""
    return "checkpoint: …/" + "/".join(Path(path).parts[-2:])
