"""The window's small message dialogs: About, the log file's location, the dataset audit,
replacing trained runs."""

from __future__ import annotations

import json
import platform
from pathlib import Path

from PySide6.QtWidgets import QMessageBox, QWidget

from geocam_gui import __version__
from geocam_gui.core.data.datasets import DatasetIndex
from geocam_gui.core.models import MODEL_LABELS


def show_about(parent: QWidget, device) -> None:
    import PySide6
    import torch
    import torchvision

    from geocam_gui.core.device import describe_device

    QMessageBox.about(
        parent,
        "About GeoCAM",
        f"<h3>GeoCAM {__version__}</h3>"
        "<p>See what convolutional networks look at when they tell cities apart: "
        "Grad-CAM of a shallow CNN, VGG11 and ResNet18 side by side, after "
        "Khademi et al., <i>Sight-seeing in the eyes of deep neural networks</i> (eScience 2018).</p>"
        f"<p>Qt {PySide6.QtCore.qVersion()} · PySide6 {PySide6.__version__} · torch {torch.__version__} · "
        f"torchvision {torchvision.__version__} · Python {platform.python_version()}<br>"
        f"Compute device: {describe_device(device)}</p>",
    )


def show_log_location(parent: QWidget) -> None:
    from geocam_gui.core.logs import log_file

    QMessageBox.information(parent, "Log file", f"GeoCAM writes its log to:\n{log_file()}")


def show_audit(parent: QWidget, index: DatasetIndex) -> None:
    """The index's audit as JSON, and its unreadable files (first 200)."""
    dlg = QMessageBox(parent)
    dlg.setWindowTitle("Dataset audit")
    dlg.setText(f"Audit of {', '.join(index.roots)}")
    lines = [f"{p}: {r}" for p, r in index.bad_files[:200]]
    dlg.setDetailedText(json.dumps(index.audit, indent=2, default=str)
                        + ("\n\nUnreadable files:\n" + "\n".join(lines) if lines else ""))
    dlg.exec()


def may_replace_runs(parent: QWidget, out_dir: Path, models: list[str]) -> bool:
    """True when none of ``models`` has a run in ``out_dir`` or the user agrees to replace them."""
    from geocam_gui.core.train.config import existing_run

    there = [m for m in models if existing_run(out_dir, m)]
    if not there:
        return True
    names = ", ".join(MODEL_LABELS.get(m, m) for m in there)
    answer = QMessageBox.question(
        parent, "Replace trained models?",
        f"{out_dir} already holds trained {names}. Training again replaces their checkpoints and metrics. "
        "Replace them?",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
    return answer == QMessageBox.StandardButton.Yes
