"""What the window remembers between sessions (QSettings): geometry, dock layout, recent datasets.

A dock dragged nearly shut, or so wide that the viewer between the docks is left small, is saved
that way; on restore each dock is brought back to between ``MIN_DOCK`` pixels and a share of the
window (``MAX_SIDE`` of its width at the sides, ``MAX_BOTTOM`` of its height at the bottom), so
the window comes back usable without View > Reset layout. The stored state is untrusted: a value that does not restore
is ignored.
"""

from __future__ import annotations

from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtWidgets import QDockWidget, QMainWindow

SETTINGS_VERSION = 1
MAX_RECENT = 8
MIN_DOCK = 200  # px: a restored dock is at least this wide (sides) or tall (top, bottom)
MAX_SIDE, MAX_BOTTOM = 0.35, 0.45  # and at most this share of the window's width / height


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
            try:
                restored = bool(window.restoreGeometry(geometry))
            except TypeError:  # not a QByteArray: a settings file edited by hand
                restored = False
        if state is not None:
            try:
                window.restoreState(state, SETTINGS_VERSION)
            except TypeError:  # not a QByteArray: a settings file edited by hand
                pass
            # the docks get their restored sizes once the window is laid out: clamp them then
            QTimer.singleShot(0, window, lambda: clamp_docks(window))
    return restored


def clamp_docks(window: QMainWindow, minimum: int = MIN_DOCK) -> None:
    """Bring each visible dock of ``window`` back to a usable size: at least ``minimum`` px across
    (a floating one at least that much each way) and at most ``MAX_SIDE`` of the window's width
    (left, right) or ``MAX_BOTTOM`` of its height (top, bottom), so the viewer keeps its room."""
    vertical = (Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.RightDockWidgetArea)
    for dock in window.findChildren(QDockWidget):
        if not dock.isVisible():
            continue
        if dock.isFloating():
            dock.resize(max(dock.width(), minimum), max(dock.height(), minimum))
            continue
        side = window.dockWidgetArea(dock) in vertical
        have, room = (dock.width(), window.width()) if side else (dock.height(), window.height())
        most = int(room * (MAX_SIDE if side else MAX_BOTTOM))
        want = min(max(have, minimum), max(most, minimum))
        if want != have:
            window.resizeDocks([dock], [want], Qt.Orientation.Horizontal if side else Qt.Orientation.Vertical)


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
