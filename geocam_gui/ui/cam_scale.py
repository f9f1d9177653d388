"""The CAM viewer's colour scale: the three scale modes, the colour bar with its values, and the
models' reference scales (``core.explain.reference``) fetched from the compute process.

* ``SCALES``: per map (0-1 of each map's max), shared raw values, comparable across models (each
  model's map divided by its 99th percentile over a sample of the dataset, clipped at 1).
* ``ColourBar`` paints the colormap with tick values beside it (``render.scale_ticks``), a title
  above and a tooltip that says what the numbers mean.
* ``ReferenceScales`` asks the compute process (one lane per model, latest request wins) for a
  checkpoint's percentiles once per checkpoint file, method and image sample, and keeps them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPixmap
from PySide6.QtWidgets import QComboBox, QSizePolicy, QWidget

from geocam_gui.core.explain import render
from geocam_gui.core.explain.reference import REFERENCE_IMAGES, REFERENCE_Q, reference_samples
from geocam_gui.ui.cam_pane import to_qimage
from geocam_gui.ui.compute import ComputeBridge, LaneRequests, Reply

PER_MAP, SHARED, REFERENCE = "per_map", "shared", "p99"

_ACROSS = ("Raw Grad-CAM magnitudes depend on each network's layer scale and head weights: they are "
           "comparable within one model (between images and classes), not across architectures. A "
           "model with larger raw values makes the other panes look uniformly blue.")

#: (key, label, tooltip) of each scale the viewer offers.
SCALES: tuple[tuple[str, str, str], ...] = (
    (PER_MAP, "Per map (0–1 of each map's max)",
     "Each pane on its own scale: 1 = the largest value of that map, 0 = its smallest (after ReLU, "
     "usually 0). Shows where each model looks, not how strongly: colours cannot be compared between "
     "panes or classes."),
    (SHARED, "Shared raw values",
     "One scale for the three panes and every class of this image: the raw CAM values (after ReLU), "
     "0 … the largest of them. " + _ACROSS),
    (REFERENCE, f"Comparable across models (each model's {REFERENCE_Q:.0f}th percentile)",
     f"Each model's map divided by that model's {REFERENCE_Q:.0f}th-percentile CAM value for the class "
     f"shown, over up to {REFERENCE_IMAGES} validation (else test) images, clipped at 1. Compares how "
     "strong the evidence is relative to what each model usually shows - not raw magnitudes, which "
     "cannot be compared across architectures."),
)
SCALE_TOOLTIP = ("What the colours mean. " + _ACROSS + f" 'Comparable across models' divides each "
                 f"model's map by its own typical strong value ({REFERENCE_Q:.0f}th percentile over the "
                 "dataset) instead.")


def colour_bar_text(mode: str, top: float, note: str | None = None, *, ready: bool = True
                    ) -> tuple[str, list[tuple[float, str]], str]:
    """(title, ticks, tooltip) of the colour bar for a scale ``mode``; ``top``: the value the
    bar's top stands for (the shared peak; 1 otherwise). ``note``: what the reference scale is,
    or why it is not ready (then the maps are per map, and the bar says so)."""
    tip = dict((key, text) for key, _label, text in SCALES)[mode]
    if mode == SHARED:
        return "raw values", render.scale_ticks(top), f"0 … {render.format_value(top)} (raw values). {tip}"
    if mode == REFERENCE and ready:
        return f"1 = model's usual peak (p{REFERENCE_Q:.0f})", render.scale_ticks(1.0), f"{note}\n\n{tip}"
    if mode == REFERENCE:
        return (f"per map (p{REFERENCE_Q:.0f} not ready)", render.scale_ticks(1.0),
                f"{note} Until then each map is on its own scale (1 = its max).\n\n{tip}")
    return "1 = the map's peak", render.scale_ticks(1.0), tip


def scale_chooser() -> QComboBox:
    """The viewer's scale box: one item per ``SCALES`` entry (data: its key), each with its tooltip."""
    box = QComboBox()
    for i, (key, text, tip) in enumerate(SCALES):
        box.addItem(text, key)
        box.setItemData(i, tip, Qt.ItemDataRole.ToolTipRole)
    box.setToolTip(SCALE_TOOLTIP)
    box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    box.setMinimumContentsLength(18)  # the list shows the whole labels
    return box


class ColourBar(QWidget):
    """A vertical colour bar (high on top) with labelled ticks and a title above it."""

    BAR = 14

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("colorbar")
        self.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Expanding)
        self.setMinimumHeight(120)
        self.title = ""
        self.ticks: list[tuple[float, str]] = []
        self._pixmap = QPixmap()
        self.set_cmap("jet")

    def sizeHint(self) -> QSize:  # noqa: N802
        fm = self.fontMetrics()
        return QSize(max(self.BAR + 11 + fm.horizontalAdvance("8.88e+88"), fm.horizontalAdvance("× model p99") + 4), 240)

    def set_cmap(self, name: str) -> None:
        self._pixmap = QPixmap.fromImage(to_qimage(render.colorbar(name, 256, self.BAR, vertical=True)))
        self.update()

    def set_scale(self, title: str, ticks: list[tuple[float, str]], tooltip: str) -> None:
        self.title, self.ticks = title, list(ticks)
        self.setToolTip(tooltip)
        self.update()

    def tick_texts(self) -> list[str]:
        """The tick labels from the bottom (0) to the top."""
        return [text for _f, text in self.ticks]

    def _bar_rect(self) -> QRect:
        fm = self.fontMetrics()
        top = 3 * fm.height() + fm.height() // 2 + 6  # a title of up to three lines, then the top tick's label
        return QRect(4, top, self.BAR, max(10, self.height() - top - fm.height() // 2 - 2))

    def paintEvent(self, _event) -> None:  # noqa: N802
        p = QPainter(self)
        fm = self.fontMetrics()
        bar = self._bar_rect()
        p.setPen(self.palette().color(self.foregroundRole()))
        p.drawText(QRect(0, 0, self.width(), bar.top() - fm.height() // 2 - 4),
                   int(Qt.AlignmentFlag.AlignBottom | Qt.AlignmentFlag.AlignLeft) | int(Qt.TextFlag.TextWordWrap),
                   self.title)
        p.drawPixmap(bar, self._pixmap)
        p.setPen(QColor("#5f6b7a"))
        p.drawRect(bar.adjusted(0, 0, -1, -1))
        p.setPen(self.palette().color(self.foregroundRole()))
        for frac, text in self.ticks:
            y = bar.bottom() - round(frac * (bar.height() - 1))
            p.drawLine(bar.right() + 1, y, bar.right() + 4, y)
            p.drawText(bar.right() + 7, y + fm.ascent() // 2 - 1, text)
        p.end()


class ReferenceScales(LaneRequests):
    """The models' reference percentiles, computed once per checkpoint file, method and image
    sample in the compute process. ``changed`` fires when one arrives or fails."""

    changed = Signal()

    def __init__(self, bridge: ComputeBridge, parent: QObject | None = None):
        super().__init__(bridge, parent)
        self._samples: tuple[int, str, list[str]] | None = None  # (id of the index, split, paths)
        self._done: dict[tuple, dict] = {}
        self._failed: dict[tuple, str] = {}
        self._crashes: dict[tuple, int] = {}  # a crash of the compute process is retried once

    def sample(self, index) -> tuple[str, list[str]]:
        """(split, paths) of the images a reference is computed on for ``index`` (cached)."""
        if index is None:
            return "", []
        if self._samples is None or self._samples[0] != id(index):
            split, chosen = reference_samples(index.samples)
            self._samples = (id(index), split, [str(s.path) for s in chosen])
        return self._samples[1], self._samples[2]

    def lookup(self, models: dict, index) -> tuple[dict | None, str]:
        """For ``models`` (key -> ``ModelExplanation``): (key -> percentiles of each class, or
        None while any is missing; a sentence saying what the numbers are or why they are not
        there yet). Requests the missing ones."""
        split, paths = self.sample(index)
        if not paths:
            return None, "Open a dataset to compute the models' reference scale."
        found, waiting, errors = {}, [], []
        for key, model in models.items():
            ref_key = (model.checkpoint, _stamp(model.checkpoint), model.method, tuple(paths))
            if ref_key in self._done:
                found[key] = self._done[ref_key]["percentiles"]
            elif ref_key in self._failed:
                errors.append(f"{key}: {self._failed[ref_key]}")
            else:
                waiting.append(key)
                self._request(key, model.checkpoint, model.method, paths, ref_key)
        if errors:
            return None, "The reference scale could not be computed (" + "; ".join(errors) + ")."
        if waiting:
            return None, (f"Computing each model's {REFERENCE_Q:.0f}th percentile over {len(paths)} {split} "
                          "images…")
        return found, (f"1 = the model's {REFERENCE_Q:.0f}th-percentile CAM value for the class shown, "
                       f"over {len(paths)} {split} images; stronger values are clipped at 1.")

    def _request(self, key: str, checkpoint: str, method: str, paths: list[str], ref_key: tuple) -> None:
        lane = f"reference-{key}"
        pending = self._pending.get(lane)
        if pending is not None and pending[1] == ref_key:
            return  # already on its way
        self._submit(lane, "reference", ref_key, checkpoint=checkpoint, paths=paths, method=method, q=REFERENCE_Q)

    def _finished(self, ref_key: tuple, reply: Reply) -> None:
        if reply.status == "result":
            self._done[ref_key] = {**reply.payload, "percentiles": np.asarray(reply.payload["percentiles"], np.float64)}
        elif reply.status == "crashed" and self._crashes.get(ref_key, 0) == 0:
            self._crashes[ref_key] = 1  # the process died (it restarts): asked again at the next look-up
        else:  # an error is the same every time; a second crash too, most likely
            self._failed[ref_key] = str(reply.payload)
        self.changed.emit()


def _stamp(path: str) -> int:
    try:
        return Path(path).stat().st_mtime_ns
    except OSError:
        return 0
