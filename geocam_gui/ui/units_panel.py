"""The Units tab: what a layer's units detect, and the first-layer filters of the three models.

Thin by design: ``core.analysis.units_run.run_units`` scans (and on labelled data dissects) the
chosen model's layer in the compute process (kind ``units`` of ``core.analysis.jobs``: progress
bar, Cancel); this panel shows each unit's mosaic with its concept and IoU in a scrollable icon
grid (filter by concept, sort by IoU), and the filter grids side by side. Clicking a unit computes
its activation map on the image the viewer shows (kind ``unitmap``) and emits
``unitMapReady(model, path, map01, caption)``; the window hands it to ``CamViewer.show_map`` (its
panes have a "Back to CAM" button). The layer list comes from there too (kind ``layers``, once
per architecture): the window's process builds no model and never imports torchvision for it.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from geocam_gui.core.analysis.dissection import IOU_THRESHOLD
from geocam_gui.core.checkpoints import checkpoint_stamp
from geocam_gui.core.models import MODEL_LABELS, MODEL_NAMES
from geocam_gui.ui.compute import ComputeBridge, LaneJob, shared_bridge

SPLITS = ("test", "val", "train")
ALL, DETECTORS, NONE = "All units", "Detectors only", "No concept"


class UnitsPanel(QWidget):
    """``set_context(index, {model: checkpoint or None})``; ``sample_provider() -> (path, label)``
    gives the image the viewer shows (set by the window)."""

    unitMapReady = Signal(str, str, object, str)  # model, image path, map01, caption
    statusMessage = Signal(str)
    unitsFinished = Signal(object)

    def __init__(self, parent: QWidget | None = None, bridge: ComputeBridge | None = None):
        super().__init__(parent)
        self._index = None
        self._checkpoints: dict[str, str | None] = {}
        bridge = bridge if bridge is not None else shared_bridge("cpu")
        self._job = LaneJob(bridge, "units", self)
        self._job.progress.connect(self._on_progress)
        self._job.returned.connect(self._on_finished)
        self._job.errored.connect(lambda msg: self._status(f"Dissection failed: {msg}"))
        self._job.cancelled.connect(lambda: self._status("Dissection cancelled."))
        self._job.finished.connect(self._update_buttons)
        self._map_job = LaneJob(bridge, "unit-map", self)
        self._map_job.returned.connect(self._on_map)
        self._map_job.errored.connect(lambda msg: self._status(f"Cannot show unit {self._map_context[0]}: {msg}"))
        self._map_context: tuple = ()  # unit, model, image path, caption of the map asked for
        self._layers_job = LaneJob(bridge, "layers", self)
        self._layers_job.returned.connect(self._on_layers)
        self._layers_job.errored.connect(lambda msg: self._status(f"Cannot list the layers: {msg}"))
        self._layers_job.finished.connect(self._update_buttons)  # Run waits for the layer list
        # (architecture, the shallow net's checkpoint and its stamp) -> layer names, from the compute
        # process
        self._layers: dict[tuple, list[str]] = {}
        self._layers_for: tuple | None = None  # the key asked for
        self._listed: tuple | None = None  # (architecture, checkpoint) whose layers the box shows
        self._filters_job = LaneJob(bridge, "filters", self)
        self._filters_job.returned.connect(self._show_filters)
        self._filters_job.errored.connect(lambda msg: self._status(f"Cannot show the first-layer filters: {msg}"))
        self._filters_for: dict | None = None  # the checkpoints whose filters were asked for
        self.sample_provider = lambda: None
        self.result: dict | None = None
        self._build()
        self._update_buttons()

    # ------------------------------------------------------------------ construction
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        bar = QHBoxLayout()
        self.model = QComboBox()
        # Filled only when checkpoints arrive: sized to its contents then, or "ResNet18" is clipped.
        self.model.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.model.currentIndexChanged.connect(lambda _i: self._fill_layers())
        self.layer = QComboBox()
        self.layer.setMinimumWidth(110)
        self.layer.setToolTip("Layer to dissect (first: the model's Grad-CAM layer)")
        self.split = QComboBox()
        self.split.addItems(SPLITS)
        self.top = QSpinBox()
        self.top.setRange(1, 64)
        self.top.setValue(9)
        self.top.setPrefix("top ")
        self.limit = QSpinBox()
        self.limit.setRange(0, 1_000_000)
        self.limit.setSpecialValueText("all images")
        self.limit.setSingleStep(50)
        self.random_check = QCheckBox("Randomised check")
        self.random_check.setToolTip("Also dissect the model with every layer re-initialised (twice the time)")
        self.run_button = QPushButton("Dissect")
        self.run_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(180)
        for w in (QLabel("Model"), self.model, QLabel("Layer"), self.layer, QLabel("Split"), self.split, self.top,
                  self.limit, self.random_check, self.run_button, self.cancel_button, self.progress):
            bar.addWidget(w)
        bar.addStretch(1)
        layout.addLayout(bar)

        bar = QHBoxLayout()
        self.concept = QComboBox()
        self.concept.addItems([ALL])
        self.concept.currentIndexChanged.connect(lambda _i: self._apply_view())
        self.sort = QComboBox()
        self.sort.addItems(["Sort by match (IoU)", "Sort by unit", "Sort by top activation"])
        self.sort.setToolTip("Match (IoU, 0-1): where a unit fires most against where its concept is, as the "
                             "overlap of the two divided by their union over the whole split (Network "
                             f"Dissection). Above {IOU_THRESHOLD:g} the unit counts as a detector of the concept.")
        self.sort.currentIndexChanged.connect(lambda _i: self._apply_view())
        self.cam_button = QPushButton("Back to CAM")
        self.cam_button.setToolTip("Show the Grad-CAM again in every pane")
        self.export_chart = QPushButton("Export chart…")
        self.export_chart.clicked.connect(lambda: self._export("detectors"))
        self.export_mosaic = QPushButton("Export unit…")
        self.export_mosaic.clicked.connect(lambda: self._export("mosaic"))
        self.summary = QLabel("Pick a model and press Dissect.")
        self.summary.setWordWrap(True)
        for w in (QLabel("Show"), self.concept, self.sort, self.cam_button, self.export_chart, self.export_mosaic):
            bar.addWidget(w)
        bar.addWidget(self.summary, 1)
        layout.addLayout(bar)

        split = QSplitter(Qt.Orientation.Horizontal)
        self.grid = QListWidget()
        self.grid.setViewMode(QListWidget.ViewMode.IconMode)
        self.grid.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.grid.setMovement(QListWidget.Movement.Static)
        self.grid.setWrapping(True)
        self.grid.setSpacing(6)
        self.grid.setUniformItemSizes(True)
        self.grid.itemClicked.connect(self._on_unit_clicked)
        self.grid.currentItemChanged.connect(lambda *_: self._update_buttons())
        split.addWidget(self.grid)
        filters = QWidget()
        fl = QHBoxLayout(filters)
        self.filter_labels: dict[str, QLabel] = {}
        for name in MODEL_NAMES:
            box = QVBoxLayout()
            cap = QLabel(f"<b>{MODEL_LABELS[name]}</b> first-layer filters")
            lab = QLabel("no model loaded")
            lab.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignHCenter)
            box.addWidget(cap)
            box.addWidget(lab, 1)
            fl.addLayout(box)
            self.filter_labels[name] = lab
        scroll = QScrollArea()  # the grids' pixmaps must not grow the dock over the viewer
        scroll.setWidget(filters)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        split.addWidget(scroll)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        layout.addWidget(split, 1)

    # ------------------------------------------------------------------ context
    def attach(self, workspace) -> None:
        """Follow a ``core.workspace.Workspace``: its index and active checkpoints."""
        workspace.follow(self.set_context)

    def set_context(self, index, checkpoints: dict[str, str | None]) -> None:
        self._index = index
        self._checkpoints = {k: v for k, v in checkpoints.items() if v}
        current = self.model.currentData()
        self.model.blockSignals(True)
        self.model.clear()
        for name in MODEL_NAMES:
            if name in self._checkpoints:
                self.model.addItem(MODEL_LABELS[name], name)
        if current in self._checkpoints:
            self.model.setCurrentIndex(self.model.findData(current))
        self.model.blockSignals(False)
        self._fill_layers()
        self._update_buttons()
        self._ask_filters()

    def _ask_filters(self) -> None:
        """The first-layer filters of the models there, asked of the compute process once the tab
        is shown and whenever its checkpoints change (each epoch of a run: not while hidden)."""
        if self.isVisible() and self._checkpoints != self._filters_for:
            self._filters_for = dict(self._checkpoints)
            self._filters_job.start("filters", checkpoints=dict(self._checkpoints))
            for name, lab in self.filter_labels.items():
                if lab.pixmap().isNull():
                    lab.setText("reading the checkpoint…" if name in self._checkpoints else "no model loaded")

    def showEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().showEvent(event)
        self._ask_filters()

    def _show_filters(self, grids: dict) -> None:
        from geocam_gui.ui.cam_pane import to_qimage

        for name, lab in self.filter_labels.items():
            if name in grids:
                g = grids[name]
                pix = QPixmap.fromImage(to_qimage(g))
                lab.setPixmap(pix.scaledToWidth(min(260, max(120, g.shape[1] * 2)), Qt.TransformationMode.FastTransformation))
            else:
                lab.setText("no model loaded")

    def _fill_layers(self) -> None:
        """The chosen architecture's layers: from the cache, else asked of the compute process (it
        builds the model on the meta device) and filled in when the answer arrives. A layer still
        offered stays chosen while the list is the same (it is refilled at every checkpoint change, e.g.
        each epoch)."""
        name = self.model.currentData()
        # the shallow net has two layouts (models.ShallowCNN): its checkpoint as it is now names the
        # layers (a run retrained in the same folder changes it; the stamp is a stat, no read)
        ckpt = self._checkpoints.get(name) if name == "shallow" else None
        key = (name, ckpt, checkpoint_stamp(ckpt) if ckpt else None)
        if name and key not in self._layers:
            if self._layers_for != key or not self._layers_job.busy():
                self._layers_for = key
                self._layers_job.start("layers", model=name, checkpoint=ckpt)
            if self._listed != key[:2]:  # another model's list: nothing to offer until the answer
                self.layer.clear()
                self._listed = None
            return
        chosen = self.layer.currentText()
        shown = [self.layer.itemText(i) for i in range(self.layer.count())]
        self.layer.blockSignals(True)
        self.layer.clear()
        if name:
            self.layer.addItems(self._layers[key])
            if self._layers[key] == shown:  # the same layers (each epoch): the choice stays; else the CAM layer
                self.layer.setCurrentText(chosen)
        self._listed = key[:2] if name else None
        self.layer.blockSignals(False)

    def _on_layers(self, names: list) -> None:
        if self._layers_for is not None:
            if len(self._layers) >= 16:  # a stamp per epoch of a shallow run
                self._layers.clear()
            self._layers[self._layers_for] = list(names)
            self._fill_layers()

    def is_running(self) -> bool:
        return self._job.busy()

    def _update_buttons(self) -> None:
        running = self.is_running()
        self.run_button.setEnabled(not running and self._index is not None and self.model.count() > 0
                                   and not self._layers_job.busy())
        self.cancel_button.setEnabled(running)
        have = self.result is not None
        self.export_chart.setEnabled(have and bool(self.result["dissection"].get("available")))
        self.export_mosaic.setEnabled(have and self.grid.currentItem() is not None)

    # ------------------------------------------------------------------ the scan
    def start(self) -> bool:
        if self.is_running() or self._layers_job.busy() or self._index is None or not self.model.currentData():
            return False
        name = self.model.currentData()
        ckpt, index = self._checkpoints[name], self._index
        layer, split, top = self.layer.currentText() or None, self.split.currentText(), self.top.value()
        limit = self.limit.value() or None
        random_check = self.random_check.isChecked()
        self._status(f"Dissecting {MODEL_LABELS[name]} {layer or '(its Grad-CAM layer)'}…")
        self._job.start("units", checkpoint=ckpt, index=index, split=split, layer=layer, top=top, limit=limit,
                        random_check=random_check, others=dict(self._checkpoints))
        self._update_buttons()
        return True

    def cancel(self) -> None:
        self._job.cancel()

    def shutdown(self, ms: int = 60000) -> bool:
        """Cancel the scan and a unit map still computing (the window calls this on close)."""
        for job in (self._job, self._map_job, self._layers_job, self._filters_job):
            job.cancel()
        return True

    def _on_progress(self, done: int, total: int, text: str) -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)
        self.progress.setFormat("%p %")
        self.progress.setToolTip(text)

    def _status(self, text: str) -> None:
        self.summary.setText(text)
        self.statusMessage.emit(text)

    def _on_finished(self, payload) -> None:
        result, grids = payload
        self.show_result(result, grids)
        self.unitsFinished.emit(result)

    # ------------------------------------------------------------------ showing
    def show_result(self, result: dict, grids: dict | None = None) -> None:
        self.result = result
        if grids is not None:
            self._show_filters(grids)
        d = result["dissection"]
        self.concept.blockSignals(True)
        self.concept.clear()
        self.concept.addItems([ALL] + ([DETECTORS, NONE] + list(d["kinds"][1:]) if d.get("available") else []))
        self.concept.blockSignals(False)
        entry = Path(result["entry"])
        self.grid.clear()
        first = QPixmap(str(entry / result["units"][0]["mosaic"])) if result["units"] else QPixmap()
        width = min(first.width(), 420) if not first.isNull() else 200
        self.grid.setIconSize(QSize(width, int(width * first.height() / max(1, first.width()))))
        for u in result["units"]:
            text = f"unit {u['unit']}: " + _caption(u)
            item = QListWidgetItem(QIcon(str(entry / u["mosaic"])), text)
            item.setData(Qt.ItemDataRole.UserRole, u["unit"])
            item.setToolTip(text + "\n" + "\n".join(Path(t["path"]).name for t in u["top"][:5]))
            if u.get("concept"):
                item.setForeground(Qt.GlobalColor.darkGreen)
            self.grid.addItem(item)
        if d.get("available"):
            by = ", ".join(f"{k} {v}" for k, v in d["by_concept"].items()) or "none"
            text = (f"{result['label']} {result['layer']}: {d['detectors']} of {result['units_count']} units are "
                    f"detectors, {d['unique_concepts']} unique concepts ({by})")
            if "randomised" in d:
                text += f"; randomised model: {d['randomised']['detectors']}"
        else:
            text = f"{result['label']} {result['layer']}: {result['units_count']} units, top patches only. {d.get('reason', '')}"
        self._status(text + ".")
        self._apply_view()
        self._update_buttons()

    def _apply_view(self) -> None:
        if self.result is None:
            return
        units = self.result["units"]
        choice = self.concept.currentText()
        mode = self.sort.currentIndex()
        key = {0: lambda u: (-(u.get("iou") or 0), u["unit"]), 1: lambda u: u["unit"],
               2: lambda u: (-(u["top"][0]["score"] if u["top"] else 0), u["unit"])}[mode]
        rank = {u["unit"]: i for i, u in enumerate(sorted(units, key=key))}
        items = [self.grid.takeItem(0) for _ in range(self.grid.count())]
        items.sort(key=lambda it: rank[it.data(Qt.ItemDataRole.UserRole)])
        for it in items:
            u = units[it.data(Qt.ItemDataRole.UserRole)]
            self.grid.addItem(it)
            it.setHidden(not (choice == ALL or (choice == DETECTORS and u.get("concept"))
                              or (choice == NONE and not u.get("concept")) or u.get("concept") == choice))

    def visible_units(self) -> list[int]:
        return [self.grid.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.grid.count())
                if not self.grid.item(i).isHidden()]

    # ------------------------------------------------------------------ a unit on the viewer's image
    def _on_unit_clicked(self, item: QListWidgetItem) -> None:
        self._update_buttons()
        self.show_unit(item.data(Qt.ItemDataRole.UserRole))

    def show_unit(self, unit: int) -> bool:
        sample = self.sample_provider()
        if self.result is None or not sample:
            self._status("Select an image in the dataset browser to see this unit's map on it.")
            return False
        r = self.result
        u = r["units"][unit]
        scale = u["top"][0]["score"] if u["top"] else 1.0
        path = sample[0]
        self._map_context = (unit, r["model"], path, f"unit {unit} of {r['layer']}: {_caption(u)}")
        self._map_job.start("unitmap", checkpoint=r["checkpoint"], layer=r["layer"], path=path,
                            size=r["image_size"], unit=unit, scale=scale)  # replaces a map still computing
        return True

    def _on_map(self, map01) -> None:
        _unit, name, path, caption = self._map_context
        self.unitMapReady.emit(name, path, map01, caption)

    # ------------------------------------------------------------------ export
    def _export(self, kind: str) -> None:
        if self.result is None:
            return
        item = self.grid.currentItem()
        unit = item.data(Qt.ItemDataRole.UserRole) if item is not None else None
        stem = "detectors" if kind == "detectors" else f"{self.result['model']}_unit{unit}"
        path, _ = QFileDialog.getSaveFileName(self, "Export figure", stem + ".pdf", "Figures (*.pdf *.svg *.png)")
        if path:
            self.export_figure(kind, path, unit=unit)

    def export_figure(self, kind: str, path: str, unit: int | None = None) -> Path:
        from geocam_gui.core.analysis.units_report import export_units_figure

        out = export_units_figure(kind, [self.result], path, unit=unit)
        self._status(f"Wrote {out} and its sidecar {out.name}.json")
        return out


def _caption(u: dict) -> str:
    from geocam_gui.core.analysis.units_report import caption

    return caption(u)

