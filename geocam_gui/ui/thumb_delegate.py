"""How the dataset browser's grid draws one image: its thumbnail, file name, class and split
badges, and a red cross when a model gets it wrong."""

from __future__ import annotations

from PySide6.QtCore import QObject, QRect, QSize, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QStyle, QStyledItemDelegate

from geocam_gui.ui.dataset_model import CLASS_COLORS, SPLIT_COLORS, THUMB, SampleModel


class ThumbDelegate(QStyledItemDelegate):
    """Paints a thumbnail with its file name, a class badge and a split badge."""

    def __init__(self, model: SampleModel, parent: QObject | None = None):
        super().__init__(parent)
        self._model = model
        self._badges: dict[tuple, QPixmap] = {}  # (text, colour, font, dpr) -> drawn badge
        self._fonts: dict[str, QFont] = {}

    def sizeHint(self, option, index) -> QSize:  # noqa: N802
        return QSize(THUMB + 12, THUMB + 30)

    def paint(self, painter: QPainter, option, index) -> None:
        # Called for every tile that scrolls into view: one look-up in the model, badges drawn
        # once and reused, no scaling of a thumbnail that already fits.
        m = self._model
        if index.row() >= m.rowCount():
            return
        row = m.source_row(index.row())
        s = m.samples[row]
        painter.save()
        r = option.rect.adjusted(3, 3, -3, -3)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        if selected:
            painter.fillRect(option.rect, option.palette.highlight())
        img = m.thumbnail(row)
        box = QRect(r.x() + (r.width() - THUMB) // 2, r.y(), THUMB, THUMB)
        if img is not None and not img.isNull():
            if img.width() > THUMB or img.height() > THUMB:
                img = img.scaled(THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio,
                                 Qt.TransformationMode.SmoothTransformation)
            painter.drawImage(box.x() + (THUMB - img.width()) // 2, box.y() + (THUMB - img.height()) // 2, img)
        else:
            painter.fillRect(box, QColor("#e3e6ea"))
        font, font_key = self._small_font(option.font)
        painter.setFont(font)
        classes = m.classes
        color = CLASS_COLORS[classes.index(s.label) % len(CLASS_COLORS)] if s.label in classes else "#7f8c8d"
        dpr = painter.device().devicePixelRatioF()
        painter.drawPixmap(box.x() + 2, box.y() + 2, self._badge(s.label, color, font, font_key, dpr))
        if s.split:
            painter.drawPixmap(box.x() + 2, box.bottom() - 15,
                               self._badge(s.split, SPLIT_COLORS.get(s.split, "#5f6b7a"), font, font_key, dpr))
        if m.predictions and m.wrong_models(row):
            painter.drawPixmap(box.right() - 16, box.y() + 2, self._badge("✗", "#c0392b", font, font_key, dpr))
        painter.setPen(option.palette.color(option.palette.ColorRole.HighlightedText if selected
                                            else option.palette.ColorRole.Text))
        text_rect = QRect(r.x(), box.bottom() + 3, r.width(), 18)
        name = painter.fontMetrics().elidedText(m.table.names[row], Qt.TextElideMode.ElideMiddle, r.width())
        painter.drawText(text_rect, Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop, name)
        painter.restore()

    def _small_font(self, base: QFont) -> tuple[QFont, str]:
        key = base.key()
        font = self._fonts.get(key)
        if font is None:
            font = QFont(base)
            font.setPointSizeF(max(6.5, font.pointSizeF() * 0.8))
            self._fonts[key] = font
        return font, key

    def _badge(self, text: str, color: str, font: QFont, font_key: str, dpr: float) -> QPixmap:
        key = (text, color, font_key, dpr)
        pix = self._badges.get(key)
        if pix is None:
            if len(self._badges) > 512:
                self._badges.clear()
            fm = QFontMetrics(font)
            w, h = fm.horizontalAdvance(text) + 8, fm.height() + 1
            pix = QPixmap(round(w * dpr), round(h * dpr))
            pix.setDevicePixelRatio(dpr)
            pix.fill(Qt.GlobalColor.transparent)
            p = QPainter(pix)
            p.setRenderHint(QPainter.RenderHint.Antialiasing)
            p.setFont(font)
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(QColor(color))
            p.drawRoundedRect(QRect(0, 0, w, h), 4, 4)
            p.setPen(QPen(QColor("white")))
            p.drawText(QRect(0, 0, w, h), Qt.AlignmentFlag.AlignCenter, text)
            p.end()
            self._badges[key] = pix
        return pix
