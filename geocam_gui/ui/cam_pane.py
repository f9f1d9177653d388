"""One model's pane of the CAM viewer: the image with its overlay, the prediction, the class
probabilities and the checkpoint it comes from (or why there is none)."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QImage
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from geocam_gui.core.models import MODEL_LABELS


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
        self.training_label = QLabel()  # "<Model> is training — epoch k/N ..." over an epoch's CAM
        self.training_label.setObjectName("trainingNote")
        self.training_label.setWordWrap(True)
        self.training_label.setVisible(False)
        layout.addWidget(self.training_label)

        self.stack = QStackedWidget()
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground(None)
        self.graphics.ci.setContentsMargins(0, 0, 0, 0)
        self.view: pg.ViewBox = self.graphics.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.view.setDefaultPadding(0.0)
        # Refit the image on every resize (a dock moved, View > Reset layout) until the user zooms;
        # pyqtgraph's own auto-range is switched off by the panes' linked ranges, so it is done here.
        self.follow_fit = True
        self.view.sigResized.connect(lambda _v: self.refit() if self.follow_fit else None)
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
        self.stack.setMinimumSize(QSize(120, 72))  # the image gives way first on a small window
        self.stack.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        layout.addWidget(self.stack, 1)

        self.cam_button = QToolButton()
        self.cam_button.setText("Back to CAM")
        self.cam_button.setToolTip("This pane shows a unit's activation map; click to show the CAM again")
        self.cam_button.setVisible(False)
        layout.addWidget(self.cam_button, 0, Qt.AlignmentFlag.AlignLeft)
        self.prediction = QLabel(" ")
        self.prediction.setObjectName("prediction")
        self.prediction.setWordWrap(True)
        layout.addWidget(self.prediction)
        self.bars_box = QVBoxLayout()
        self.bars_box.setSpacing(2)
        layout.addLayout(self.bars_box)
        self._bars: list[tuple[QLabel, QProgressBar]] = []
        self._add_bars(2)  # now, not at the first prediction: creating them costs ~8 ms per pane
        self.checkpoint_label = QLabel(" ")
        self.checkpoint_label.setObjectName("checkpointLabel")
        self.chance_label = QLabel()
        # One line each, clipped on a narrow pane (the tooltips hold the whole text): a wrapped
        # label's second line is not in the pane's minimum height, so on a small window it was
        # drawn over the image.
        for label in (self.checkpoint_label, self.chance_label):
            label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        layout.addWidget(self.checkpoint_label)
        self.chance_label.setObjectName("chanceLabel")
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

    def show_training(self, text: str | None, has_model: bool) -> bool:
        """While the model trains or waits in a run, ``text`` says so: under the title over the
        latest epoch's CAM (``has_model``), else instead of the "train one" offer (then True:
        nothing else to show). None: the line goes."""
        self.training_label.setText(f"<span style='color:#2f6fde'>{text}</span>" if text and has_model else "")
        self.training_label.setVisible(bool(text and has_model))
        if text and not has_model:
            self.show_empty(text)
            self.set_checkpoint_text(" ")
            return True
        return False

    def show_rgb(self, rgb: np.ndarray) -> None:
        first = self.image_item.image is None or self.image_item.image.shape[:2] != rgb.shape[:2]
        self.rgb = rgb
        self.image_item.setImage(rgb, autoLevels=False, levels=(0, 255))
        self.stack.setCurrentIndex(0)
        if first or self.follow_fit:
            self.refit()

    def refit(self) -> None:
        """Show the whole image, as large as the pane allows."""
        if self.rgb is not None:
            self.view.autoRange(padding=0.0)

    def set_checkpoint_text(self, text: str) -> None:
        self.checkpoint_label.setText(text)
        self.checkpoint_label.setToolTip(text.strip())

    def set_chance(self, verdict: dict | None) -> None:
        """Whether the model's test accuracy beats the majority-class rate (``core.chance``);
        a warning when it does not, nothing when the checkpoint stores no test metrics."""
        if not verdict:
            self.chance_label.setVisible(False)
            self.chance_label.setText("")
            return
        # One short line (the pane must leave room for the image); the sentence, with the test's
        # p-value, is the tooltip.
        acc = f"test {100 * verdict['accuracy']:.1f} %"
        if verdict["above_chance"]:
            text = f"<span style='color:#5f6b7a'>{acc}, above chance</span>"
        else:
            text = f"<span style='color:#8a5a00'><b>At chance</b>: {acc}</span>"
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

    def _add_bars(self, n: int) -> None:
        while len(self._bars) < n:
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

    def _set_bars(self, classes: list[str], probs: np.ndarray | None) -> None:
        self._add_bars(len(classes))
        for i, (name, bar) in enumerate(self._bars):
            visible = i < len(classes)
            name.setVisible(visible)
            bar.setVisible(visible)
            if visible and probs is not None:
                name.setText(classes[i])
                bar.setValue(int(round(float(probs[i]) * 1000)))
                bar.setFormat(f"{probs[i] * 100:.1f} %")
