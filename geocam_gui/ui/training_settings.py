"""The training panel's settings: which models, the device, epochs, batch, learning rate, image
size, augmentation and ImageNet weights.

Between runs the fields hold the user's values: a field changed from the device defaults shown
is an override for every model trained (``core.train.config.config_for``). During a run they are
read-only and show the recipe actually running for the model in training (the demo's first run
trains each model with its own recipe); the user's values come back when the run ends.
"""

from __future__ import annotations

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from geocam_gui.core.device import available_devices, resolve_device
from geocam_gui.core.models import MODEL_LABELS, MODEL_NAMES


class TrainingSettings(QWidget):
    """The settings fields (see the module doc)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        box = QGroupBox("Models")
        bl = QHBoxLayout(box)
        self.model_checks: dict[str, QCheckBox] = {}
        for name in MODEL_NAMES:
            cb = QCheckBox(MODEL_LABELS[name])
            cb.setChecked(True)
            self.model_checks[name] = cb
            bl.addWidget(cb)
        layout.addWidget(box)

        self.device = QComboBox()
        for dev, label in available_devices():
            self.device.addItem(label, dev)
        self.device.currentIndexChanged.connect(self._apply_device_defaults)
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 1000)
        self.batch = QSpinBox()
        self.batch.setRange(1, 4096)
        self.lr = QDoubleSpinBox()
        self.lr.setDecimals(5)
        self.lr.setRange(1e-5, 1.0)
        self.lr.setSingleStep(1e-4)
        tip = ("A value you change applies to every model trained; unchanged values keep each "
               "model's own default (VGG11 trains at 3e-4 after a one-epoch warm-up).")
        for w in (self.epochs, self.batch, self.lr):
            w.setToolTip(tip)
        self.size = QSpinBox()
        self.size.setRange(32, 1024)
        self.size.setSingleStep(16)
        self.size.setSuffix(" px")
        self.size.setToolTip(tip)
        self.augment = QCheckBox("Random resized crop + horizontal flip")
        self.augment.setChecked(True)
        self.pretrained = QCheckBox("Start VGG11 and ResNet18 from ImageNet weights")
        self.pretrained.setToolTip(
            "torchvision's ImageNet weights (VGG11_Weights / ResNet18_Weights.IMAGENET1K_V1), read from torch's "
            "hub cache or downloaded there once with a checksum. Helps with a few dozen photos per class. "
            "The shallow CNN has none and trains from scratch; off, all models train from scratch as in the paper.")
        grid = QGridLayout()
        grid.addWidget(QLabel("Device"), 0, 0)
        grid.addWidget(self.device, 0, 1, 1, 3)
        grid.addWidget(QLabel("Epochs"), 1, 0)
        grid.addWidget(self.epochs, 1, 1)
        grid.addWidget(QLabel("Batch"), 1, 2)
        grid.addWidget(self.batch, 1, 3)
        grid.addWidget(QLabel("LR"), 2, 0)
        grid.addWidget(self.lr, 2, 1)
        grid.addWidget(QLabel("Image"), 2, 2)
        grid.addWidget(self.size, 2, 3)
        grid.addWidget(self.augment, 3, 0, 1, 4)
        grid.addWidget(self.pretrained, 4, 0, 1, 4)
        layout.addLayout(grid)
        self.recipe_note = QLabel()
        self.recipe_note.setObjectName("recipeNote")
        self.recipe_note.setWordWrap(True)
        self.recipe_note.setVisible(False)
        layout.addWidget(self.recipe_note)
        self._apply_device_defaults()

    def _apply_device_defaults(self) -> None:
        """Show the device's defaults (the shallow net's); a field the user then changes is an
        override for every model trained, an unchanged one keeps each model's own default."""
        from geocam_gui.core.train.config import default_config

        try:
            dev = resolve_device(self.device.currentData() or "auto")
        except Exception:  # noqa: BLE001
            dev = resolve_device("cpu")
        cfg = default_config("shallow", str(dev))
        self.epochs.setValue(cfg.epochs)
        self.batch.setValue(cfg.batch_size)
        self.lr.setValue(cfg.lr)
        self.size.setValue(cfg.image_size)
        self._shown = self._field_values()

    def _field_values(self) -> dict:
        return {"epochs": self.epochs.value(), "batch_size": self.batch.value(), "lr": self.lr.value(),
                "image_size": self.size.value()}

    def overrides(self) -> dict:
        """The settings the user changed from the defaults shown (``config_for``'s overrides)."""
        out = {k: v for k, v in self._field_values().items() if v != self._shown.get(k)}
        if not self.augment.isChecked():
            out["augment"] = False
        if self.pretrained.isChecked():
            out["pretrained"] = "imagenet"
        return out

    def config_for(self, name: str):
        """The run for ``name``: its defaults on the chosen device with the user's changes
        applied (``core.train.config.config_for``, the rule ``geocam train`` follows too)."""
        from geocam_gui.core.train.config import config_for

        overrides = self.overrides()
        if name == "shallow":  # the paper's net has no ImageNet weights: it trains from scratch
            overrides.pop("pretrained", None)
        return config_for(name, self.device.currentData() or "auto", overrides)

    def selected_models(self) -> list[str]:
        return [n for n, cb in self.model_checks.items() if cb.isChecked()]

    def select_models(self, names: list[str]) -> None:
        for n, cb in self.model_checks.items():
            cb.setChecked(n in names)

    def set_editable(self, editable: bool) -> None:
        for w in (*self.model_checks.values(), self.device, self.epochs, self.batch, self.lr, self.size, self.augment,
                  self.pretrained):
            w.setEnabled(editable)

    # -- during a run: the recipe running, then the user's own values again ----------------------
    def snapshot(self) -> tuple:
        """The user's values, for ``restore``."""
        return self._field_values(), self.augment.isChecked(), self.pretrained.isChecked()

    def show_config(self, cfg) -> None:
        """Show the ``TrainConfig`` running now (its model named in a note)."""
        if cfg is None:
            return
        self.epochs.setValue(int(cfg.epochs))
        self.batch.setValue(int(cfg.batch_size))
        self.lr.setValue(float(cfg.lr))
        self.size.setValue(int(cfg.image_size))
        self.augment.setChecked(bool(cfg.augment.crop or cfg.augment.hflip))
        self.pretrained.setChecked(cfg.pretrained == "imagenet")
        self.recipe_note.setText(f"Showing the settings {MODEL_LABELS.get(cfg.model, cfg.model)} trains with "
                                 "now; yours come back when the run ends.")
        self.recipe_note.setVisible(True)

    def restore(self, snapshot: tuple) -> None:
        values, augment, pretrained = snapshot
        self.epochs.setValue(values["epochs"])
        self.batch.setValue(values["batch_size"])
        self.lr.setValue(values["lr"])
        self.size.setValue(values["image_size"])
        self.augment.setChecked(augment)
        self.pretrained.setChecked(pretrained)
        self.recipe_note.setVisible(False)
