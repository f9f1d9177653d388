"""A confusion matrix small enough for a table cell: class names as row (true) and column
(predicted) headers, each count on a shade of blue that grows with it (diagonal outlined), the
text white where the shade is dark. Used by the training panel's Results tab."""

from __future__ import annotations

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

_LOW, _HIGH = QColor("#f4f7fc"), QColor("#1f4fa8")
_NAME_CHARS = 12  # class names are cut to this many characters (the tooltip has them whole)


def shade(count: float, low: float, high: float) -> tuple[QColor, QColor]:
    """(background, text) colours of ``count`` on the scale ``low``..``high`` (the matrix's own
    smallest and largest counts): the text is white only where the background is dark."""
    t = 0.0 if high <= low else min(1.0, max(0.0, (count - low) / (high - low)))
    bg = QColor.fromRgbF(*(a + (b - a) * t for a, b in zip(_LOW.getRgbF()[:3], _HIGH.getRgbF()[:3])))
    lum = 0.2126 * bg.redF() + 0.7152 * bg.greenF() + 0.0722 * bg.blueF()
    return bg, QColor("white") if lum < 0.5 else QColor("#1a1a1a")


def _short(name: str) -> str:
    return name if len(name) <= _NAME_CHARS else name[: _NAME_CHARS - 1] + "…"


class ConfusionMatrix(QWidget):
    """``ConfusionMatrix(counts, classes)``: rows are the true classes, columns the predicted."""

    def __init__(self, counts: list[list[int]], classes: list[str], parent: QWidget | None = None):
        super().__init__(parent)
        self.counts = [[int(x) for x in row] for row in counts]
        n = len(self.counts)
        self.classes = list(classes)[:n] + [str(i) for i in range(len(classes), n)]
        self.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        self.setToolTip("Rows: true class; columns: predicted class\n" + "\n".join(
            f"{t}: " + ", ".join(f"{c} → {self.classes[j]}" for j, c in enumerate(row))
            for t, row in zip(self.classes, self.counts)))
        self._font = QFont(self.font())
        self._font.setPointSizeF(max(7.0, self._font.pointSizeF() * 0.85))

    def _geometry(self) -> tuple[int, int, int]:
        fm = QFontMetrics(self._font)
        head = max((fm.horizontalAdvance(_short(c)) for c in self.classes), default=0) + 8
        cell = max(28, max((fm.horizontalAdvance(str(v)) for row in self.counts for v in row), default=0) + 10,
                   *(fm.horizontalAdvance(_short(c)) + 6 for c in self.classes))
        return head, cell, fm.height() + 6

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        head, cell, row_h = self._geometry()
        n = len(self.counts)
        return QSize(head + n * cell + 2, row_h * (n + 1) + 2)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return self.sizeHint()

    def cell_colors(self, r: int, c: int) -> tuple[QColor, QColor]:
        flat = [v for row in self.counts for v in row] or [0]
        return shade(self.counts[r][c], min(flat), max(flat))

    def paintEvent(self, _event) -> None:  # noqa: N802 - Qt API
        head, cell, row_h = self._geometry()
        p = QPainter(self)
        p.setFont(self._font)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        grey = QColor("#5f6b7a")
        center = Qt.AlignmentFlag.AlignCenter
        for j, name in enumerate(self.classes):  # predicted: column headers
            p.setPen(grey)
            p.drawText(QRectF(head + j * cell, 0, cell, row_h), center, _short(name))
        for i, name in enumerate(self.classes):  # true: row headers
            y = row_h * (i + 1)
            p.setPen(grey)
            p.drawText(QRectF(0, y, head - 4, row_h), Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                       _short(name))
            for j, v in enumerate(self.counts[i]):
                bg, fg = self.cell_colors(i, j)
                rect = QRectF(head + j * cell, y, cell - 1, row_h - 1)
                p.fillRect(rect, bg)
                if i == j:
                    p.setPen(QPen(QColor("#1a1a1a"), 1))
                    p.drawRect(rect.adjusted(0, 0, -1, -1))
                p.setPen(fg)
                p.drawText(rect, center, str(v))
        p.end()
