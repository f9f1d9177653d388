"""What the window remembers between sessions (QSettings): geometry, dock layout, recent datasets."""

from __future__ import annotations

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QMainWindow

SETTINGS_VERSION = 1
MAX_RECENT = 8


def settings() -> QSettings:
    return QSettings("GeoCAM", "GeoCAM")


def reset() -> None:
    """Forget window geometry, dock layout and recent datasets (``--reset-settings``)."""
    s = settings()
    s.clear()
    s.sync()


def restore(window: QMainWindow) -> bool:
    """Restore the window's geometry and docks if saved by this settings version; True when
    a geometry was restored."""
    s = settings()
    restored = False
    if int(s.value("settingsVersion", 0) or 0) == SETTINGS_VERSION:
        geometry = s.value("geometry")
        state = s.value("windowState")
        if geometry is not None:
            restored = bool(window.restoreGeometry(geometry))
        if state is not None:
            window.restoreState(state, SETTINGS_VERSION)
    return restored


def save(window: QMainWindow) -> None:
    s = settings()
    s.setValue("settingsVersion", SETTINGS_VERSION)
    s.setValue("geometry", window.saveGeometry())
    s.setValue("windowState", window.saveState(SETTINGS_VERSION))
    s.sync()


def remember_recent(spec: list[str]) -> None:
    """Put the dataset ``spec`` (its folders) first in the recent list."""
    s = settings()
    recent = [r for r in (s.value("recentDatasets") or []) if r != "|".join(spec)]
    recent.insert(0, "|".join(spec))
    s.setValue("recentDatasets", recent[:MAX_RECENT])


def recent() -> list[list[str]]:
    """The recent datasets, newest first, each as its list of folders."""
    entries = settings().value("recentDatasets") or []
    if isinstance(entries, str):
        entries = [entries]
    return [entry.split("|") for entry in entries]
