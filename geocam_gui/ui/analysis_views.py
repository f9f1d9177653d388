"""What the Analysis tab draws its results with: plots that fit the view's width and mosaics
whose patches are clickable (``analysis_panel.AnalysisPanel`` lays them out)."""

from __future__ import annotations

from PySide6.QtCore import QRect, Qt, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import QLabel, QScrollArea, QSizePolicy, QWidget


class MosaicView(QLabel):
    """A mosaic image whose patches are clickable: ``patchClicked(image_path)``."""

    patchClicked = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.setMouseTracking(True)
        self._tiles: list[tuple[QRect, str]] = []

    def set_mosaic(self, path: str | None, clusters: list[dict]) -> None:
        """Show the PNG at ``path`` and make every patch with a ``tile`` rectangle clickable."""
        self._tiles = [(QRect(*p["tile"]), p["path"]) for c in clusters for p in c["patches"] if p.get("tile")]
        pix = QPixmap(path) if path else QPixmap()
        self.setPixmap(pix)
        self.setText("" if not pix.isNull() else "No clusters from two places or more for this class.")
        self.adjustSize()

    def tiles(self) -> list[tuple[QRect, str]]:
        return list(self._tiles)

    def path_at(self, x: int, y: int) -> str | None:
        for rect, path in self._tiles:
            if rect.contains(x, y):
                return path
        return None

    def mouseMoveEvent(self, event) -> None:  # noqa: N802 - Qt override
        path = self.path_at(*event.position().toPoint().toTuple())
        self.setCursor(Qt.CursorShape.PointingHandCursor if path else Qt.CursorShape.ArrowCursor)
        self.setToolTip(f"{path}\nClick to open it in the browser" if path else "")
        super().mouseMoveEvent(event)

    def mousePressEvent(self, event) -> None:  # noqa: N802 - Qt override
        if event.button() == Qt.MouseButton.LeftButton:
            path = self.path_at(*event.position().toPoint().toTuple())
            if path:
                self.patchClicked.emit(path)
                return
        super().mousePressEvent(event)


class PlotView(QLabel):
    """A plot PNG drawn as wide as the view allows (never wider than drawn, never cut off)."""

    def __init__(self, pixmap: QPixmap, parent: QWidget | None = None):
        super().__init__(parent)
        self._full = pixmap
        self.setAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.setMinimumWidth(200)
        self._fit(pixmap.width())

    def full_pixmap(self) -> QPixmap:
        return self._full

    def _fit(self, width: int) -> None:
        if self._full.isNull():
            return
        w = max(1, min(width, self._full.width()))
        shown = self._full if w == self._full.width() else self._full.scaledToWidth(
            w, Qt.TransformationMode.SmoothTransformation)
        self.setPixmap(shown)
        self.setFixedHeight(shown.height())

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        if self.pixmap() is None or self.pixmap().width() != min(event.size().width(), self._full.width()):
            self._fit(event.size().width())


def scroll(widget: QWidget) -> QScrollArea:
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setWidget(widget)
    return area
