"""The training panel's settings: which models, the device, epochs, batch, learning rate, image
size, augmentation and ImageNet weights.

Epochs, batch, learning rate and image size start at *per model*: each model trains with its own
defaults on the chosen device (their tooltips list them: the shallow net, VGG11 and ResNet18 do
not share epochs, batch or learning rate). A value the user enters is an override for every model
trained (``core.train.config.config_for``, the rule ``geocam train`` follows too); stepping a
field back to its bottom returns it to *per model*. During a run the fields are read-only and show
the recipe actually running for the model in training (the demo's first run trains each model
with its own recipe); the user's values come back when the run ends.
"""

from __future__ import annotations

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from geocam_gui.core.device import available_devices, resolve_device
from geocam_gui.core.models import MODEL_LABELS, MODEL_NAMES


PER_MODEL = "per model"


def _shown(key: str, value) -> str:
    return f"{value:g}" if key == "lr" else f"{value} px" if key == "image_size" else str(value)


#: A learning rate this many times above or below a model's own default gets a warning.
LR_WARN_FACTOR = 10.0
OPTIMIZER_NAMES = {"adamw": "AdamW", "sgd": "SGD"}


def lr_warning(lr: float, defaults: dict) -> str:
    """A sentence when ``lr`` (one value for every model) is far from some model's own default
    (``defaults``: model -> ``TrainConfig``): the models do not share an optimiser or a scale of
    learning rate (VGG11 without batch norm stalls at chance at 1e-3, AdamW's rates are not SGD's).
    Empty when ``lr`` is 0 (*per model*) or close enough to every default."""
    if lr <= 0:
        return ""
    far = []
    for name, cfg in defaults.items():
        ratio = lr / cfg.lr
        if ratio >= LR_WARN_FACTOR or ratio <= 1 / LR_WARN_FACTOR:
            times = f"{ratio:.0f}x" if ratio >= 1 else f"1/{1 / ratio:.0f}"
            far.append(f"{MODEL_LABELS.get(name, name)} ({OPTIMIZER_NAMES.get(cfg.optimizer, cfg.optimizer)} "
                       f"{cfg.lr:g}: {times})")
    if not far:
        return ""
    return (f"LR {lr:g} is far from the default of " + ", ".join(far) + ": it may not learn. Step the "
            "field down to the bottom for each model's own rate.")


class TrainingSettings(QWidget):
    """The settings fields (see the module doc)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        # One row, not a framed group: the panel's 300 px must also hold the buttons and the state
        # lines at a window height of 800 px.
        bl = QHBoxLayout()
        bl.addWidget(QLabel("Models"))
        self.model_checks: dict[str, QCheckBox] = {}
        for name in MODEL_NAMES:
            cb = QCheckBox(MODEL_LABELS[name])
            cb.setChecked(True)
            self.model_checks[name] = cb
            bl.addWidget(cb)
        bl.addStretch(1)
        layout.addLayout(bl)

        self.device = QComboBox()
        for dev, label in available_devices():
            self.device.addItem(label, dev)
        self.device.currentIndexChanged.connect(self._apply_device_defaults)
        # The bottom of each range is the sentinel shown as "per model" (invalid as a setting:
        # 0 epochs, batch 1, lr 0, 16 px), so every real value stays reachable.
        self.epochs = QSpinBox()
        self.epochs.setRange(0, 1000)
        self.batch = QSpinBox()
        self.batch.setRange(1, 4096)
        self.lr = QDoubleSpinBox()
        self.lr.setDecimals(5)
        self.lr.setRange(0.0, 1.0)
        self.lr.setSingleStep(1e-4)
        self.size = QSpinBox()
        self.size.setRange(16, 1024)
        self.size.setSingleStep(16)
        self.size.setSuffix(" px")
        for w in self._fields().values():
            w.setSpecialValueText(PER_MODEL)
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
        self.lr_note = QLabel()  # a learning rate far from a selected model's own
        self.lr_note.setObjectName("lrNote")
        self.lr_note.setWordWrap(True)
        self.lr_note.setStyleSheet("color:#8a5a00")
        self.lr_note.setVisible(False)
        layout.addWidget(self.lr_note)
        self.lr.valueChanged.connect(self._check_lr)
        for cb in self.model_checks.values():
            cb.toggled.connect(self._check_lr)
        self._apply_device_defaults()

    def _fields(self) -> dict:
        return {"epochs": self.epochs, "batch_size": self.batch, "lr": self.lr, "image_size": self.size}

    def _apply_device_defaults(self) -> None:
        """Back to *per model*, with each model's defaults on the chosen device in the tooltips."""
        from geocam_gui.core.train.config import default_config

        try:
            dev = str(resolve_device(self.device.currentData() or "auto"))
        except Exception:  # noqa: BLE001
            dev = "cpu"
        configs = {name: default_config(name, dev) for name in MODEL_NAMES}
        self._defaults = configs
        for key, w in self._fields().items():
            w.setValue(w.minimum())
            each = ", ".join(f"{MODEL_LABELS[n]} {_shown(key, getattr(c, key))}"
                             + (f" ({OPTIMIZER_NAMES.get(c.optimizer, c.optimizer)})" if key == "lr" else "")
                             for n, c in configs.items())
            w.setToolTip(f"Per model: {each}. A value you enter applies to every model trained; step down to "
                         f"the bottom for each model's own default again.")

    def _check_lr(self, *_args) -> None:
        if not self.recipe_note.isHidden():  # a run shows its own recipe: nothing to warn about
            self.lr_note.setVisible(False)
            return
        chosen = {n: c for n, c in self._defaults.items() if self.model_checks[n].isChecked()}
        text = lr_warning(self.lr.value(), chosen)
        self.lr_note.setText(text)
        self.lr_note.setVisible(bool(text))

    def _field_values(self) -> dict:
        return {key: w.value() for key, w in self._fields().items()}

    def overrides(self) -> dict:
        """The values the user entered (``config_for``'s overrides); *per model* fields give none."""
        out = {key: w.value() for key, w in self._fields().items() if w.value() != w.minimum()}
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
        for key, w in self._fields().items():
            w.setValue(getattr(cfg, key))
        self.augment.setChecked(bool(cfg.augment.crop or cfg.augment.hflip))
        self.pretrained.setChecked(cfg.pretrained == "imagenet")
        self.recipe_note.setText(f"Showing the settings {MODEL_LABELS.get(cfg.model, cfg.model)} trains with "
                                 "now; yours come back when the run ends.")
        self.recipe_note.setVisible(True)
        self.lr_note.setVisible(False)

    def restore(self, snapshot: tuple) -> None:
        values, augment, pretrained = snapshot
        for key, w in self._fields().items():
            w.setValue(values[key])
        self.augment.setChecked(augment)
        self.pretrained.setChecked(pretrained)
        self.recipe_note.setVisible(False)
        self._check_lr()
