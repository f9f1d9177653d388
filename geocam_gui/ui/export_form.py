"""The Export dialog's form: what to export, how to explain and draw it, where to write it.

``build_form(dialog, ...)`` creates the widgets as attributes of the dialog (``ExportDialog`` in
``export_dialog.py`` holds the behaviour: modes, planning, running, the summary).
"""

from __future__ import annotations


from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
)

from geocam_gui.core import export as ex
from geocam_gui.core.explain.cam import METHOD_LABELS, METHODS
from geocam_gui.core.export.figure import DOUBLE_COLUMN_IN, SINGLE_COLUMN_IN
from geocam_gui.core.explain.render import COLORMAPS
from geocam_gui.ui.cam_scale import PER_MAP, REFERENCE, scale_chooser

CURRENT, FIGURE, BATCH = "current", "figure", "batch"
FIGURE_FORMAT_CHOICES = (("PDF (vector)", "pdf"), ("SVG (vector)", "svg"), ("PNG", "png"))
OVERLAY_FORMAT_CHOICES = (("PNG", "png"), ("TIFF", "tiff"))


def build_form(dlg, class_choice: str, method: str, cmap: str, opacity: float, scale: str = "per_map") -> None:
    """Lay out the dialog's widgets (the dialog's own slots are connected here); ``scale``: the
    viewer's colour scale (``ui.cam_scale``), which the dialog starts from where it can."""
    layout = QVBoxLayout(dlg)
    what = QGroupBox("What to export")
    wl = QVBoxLayout(what)
    n = len(dlg.images)
    dlg.mode_current = QRadioButton(
        "Overlays of the current image" if n <= 1 else f"Overlays of the {n} selected images")
    rows = min(n, ex.MAX_FIGURE_ROWS)
    dlg.mode_figure = QRadioButton(f"Figure of the selected image{'s' if rows != 1 else ''} ({rows} row"
                                    f"{'s' if rows != 1 else ''}, one column per model)")
    dlg.mode_batch = QRadioButton(f"Overlays of the images shown in the browser ({len(dlg.batch_samples)})")
    dlg.mode_group = QButtonGroup(dlg)
    for button, mode in ((dlg.mode_current, CURRENT), (dlg.mode_figure, FIGURE), (dlg.mode_batch, BATCH)):
        button.setProperty("mode", mode)
        dlg.mode_group.addButton(button)
        wl.addWidget(button)
    dlg.mode_current.setEnabled(bool(dlg.images))
    dlg.mode_figure.setEnabled(bool(dlg.images))
    dlg.mode_batch.setEnabled(bool(dlg.batch_samples))
    dlg.mode_group.buttonToggled.connect(dlg._on_mode_toggled)
    layout.addWidget(what)

    form = QFormLayout()
    dest_row = QHBoxLayout()
    dlg.destination = QLineEdit()
    dlg.destination.textEdited.connect(lambda text: dlg._dest.__setitem__(dlg._mode, text))
    dlg.browse = QToolButton()
    dlg.browse.setText("…")
    dlg.browse.setToolTip("Choose where to write")
    dlg.browse.clicked.connect(dlg._browse)
    dest_row.addWidget(dlg.destination, 1)
    dest_row.addWidget(dlg.browse)
    dlg.destination_label = QLabel("Folder:")
    form.addRow(dlg.destination_label, dest_row)

    dlg.format = QComboBox()
    dlg.format.currentIndexChanged.connect(dlg._on_format_changed)
    form.addRow("Format:", dlg.format)
    dlg.dpi = QSpinBox()
    dlg.dpi.setRange(ex.MIN_DPI, ex.MAX_DPI)
    dlg.dpi.setSingleStep(100)
    dlg.dpi.setValue(int(dlg._settings.value("export/dpi", 300)))
    dlg.dpi.setSuffix(" dpi")
    form.addRow("Resolution:", dlg.dpi)

    width_row = QHBoxLayout()
    dlg.width = QComboBox()
    dlg.width.addItem(f"Single column ({SINGLE_COLUMN_IN} in)", SINGLE_COLUMN_IN)
    dlg.width.addItem(f"Double column ({DOUBLE_COLUMN_IN} in)", DOUBLE_COLUMN_IN)
    dlg.width.addItem("Custom width", None)
    dlg.width_custom = QDoubleSpinBox()
    dlg.width_custom.setRange(1.5, 40.0)
    dlg.width_custom.setDecimals(2)
    dlg.width_custom.setSuffix(" in")
    dlg.width_custom.setValue(5.0)
    dlg.width.currentIndexChanged.connect(dlg._update_enabled)
    width_row.addWidget(dlg.width, 1)
    width_row.addWidget(dlg.width_custom)
    dlg.width_label = QLabel("Figure width:")
    form.addRow(dlg.width_label, width_row)

    dlg.class_combo = QComboBox()
    dlg.class_combo.addItem("Predicted class", ex.CLASS_PREDICTED)
    dlg.class_combo.addItem("Ground truth", ex.CLASS_TRUE)
    for c in dlg._classes:
        dlg.class_combo.addItem(c, c)
    dlg._select(dlg.class_combo, ex.normalize_class_choice(class_choice))
    form.addRow("Class explained:", dlg.class_combo)

    dlg.method = QComboBox()
    for m in METHODS:
        dlg.method.addItem(METHOD_LABELS.get(m, m), m)
    dlg._select(dlg.method, method)
    form.addRow("Method:", dlg.method)
    dlg.cmap = QComboBox()
    for c in COLORMAPS:
        dlg.cmap.addItem(c, c)
    dlg._select(dlg.cmap, cmap)
    form.addRow("Colormap:", dlg.cmap)
    dlg.opacity = QSpinBox()
    dlg.opacity.setRange(0, 100)
    dlg.opacity.setSuffix(" %")
    dlg.opacity.setValue(int(round(float(opacity) * 100)))
    form.addRow("Opacity:", dlg.opacity)
    dlg.scale = scale_chooser()  # the viewer's three scales, with the viewer's tooltips
    if not dlg.reference_images:  # no dataset open: no images to take the percentiles over
        i = dlg.scale.findData(REFERENCE)
        dlg.scale.model().item(i).setEnabled(False)
        dlg.scale.setItemData(i, "Open a dataset: each model's 99th percentile is taken over its "
                                 "validation images.", Qt.ItemDataRole.ToolTipRole)
    dlg._select(dlg.scale, scale if dlg.reference_images or scale != REFERENCE else PER_MAP)
    form.addRow("Scale:", dlg.scale)

    outputs = QHBoxLayout()
    dlg.out_overlay = QCheckBox("Overlay")
    dlg.out_heatmap = QCheckBox("Heat map (RGBA)")
    dlg.out_raw = QCheckBox("Raw map (.npy)")
    for box in (dlg.out_overlay, dlg.out_heatmap, dlg.out_raw):
        box.setChecked(True)
        outputs.addWidget(box)
    dlg.outputs_label = QLabel("Files:")
    form.addRow(dlg.outputs_label, outputs)
    dlg.predictions = QCheckBox("Prediction and probability under each panel")
    dlg.predictions.setChecked(True)
    form.addRow("", dlg.predictions)
    layout.addLayout(form)

    dlg.progress = QProgressBar()
    dlg.progress.setRange(0, 1)
    dlg.progress.setValue(0)
    dlg.status = QLabel(" ")
    dlg.status.setWordWrap(True)
    dlg.summary_text = QPlainTextEdit()
    dlg.summary_text.setReadOnly(True)
    dlg.summary_text.setMaximumHeight(120)
    dlg.summary_text.hide()
    layout.addWidget(dlg.progress)
    layout.addWidget(dlg.status)
    layout.addWidget(dlg.summary_text)

    buttons = QHBoxLayout()
    buttons.addStretch(1)
    dlg.export_button = QPushButton("Export")
    dlg.export_button.setDefault(True)
    dlg.export_button.clicked.connect(lambda: dlg.start_export())
    dlg.cancel_button = QPushButton("Cancel")
    dlg.cancel_button.setToolTip("Stop the export after the current image")
    dlg.cancel_button.clicked.connect(dlg.cancel_export)
    dlg.close_button = QPushButton("Close")
    dlg.close_button.clicked.connect(dlg.reject)
    for b in (dlg.export_button, dlg.cancel_button, dlg.close_button):
        buttons.addWidget(b)
    layout.addLayout(buttons)
    if not dlg.checkpoints:
        dlg.status.setText("No trained model to explain yet: train one or open a checkpoint first.")
