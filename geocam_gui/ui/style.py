"""The application stylesheet and icons, loaded from the ``geocam_gui.resources`` package."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def resource(*parts: str) -> Path:
    """A file shipped in ``geocam_gui.resources`` (works from a wheel and a checkout)."""
    return Path(str(resources.files("geocam_gui.resources").joinpath(*parts)))


def app_icon_path() -> Path:
    return resource("icons", "geocam.svg")


def icon(name: str):
    from PySide6.QtGui import QIcon

    return QIcon(str(resource("icons", f"{name}.svg")))


def apply_style(app) -> None:
    """Fusion style plus our stylesheet: consistent on every platform and offscreen."""
    app.setStyle("Fusion")
    qss = resource("style.qss")
    if qss.is_file():
        app.setStyleSheet(qss.read_text(encoding="utf-8"))
