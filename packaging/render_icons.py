"""Render the application icon's PNG sizes from ``resources/icons/geocam.svg``.

    python packaging/render_icons.py                 # writes resources/icons/geocam-<N>.png
    python packaging/render_icons.py --check         # exit 1 if a PNG is missing or stale
    python packaging/render_icons.py --preview X.png # also a contact sheet of every icon

The SVG is the source; the PNGs are committed so that a wheel, the desktop entry and
PyInstaller find them without Qt's SVG plugin. Rendering uses PySide6's QSvgRenderer
(PySide6-Essentials), so no other tool is needed. Runs headless.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ICON_DIR = Path(__file__).resolve().parent.parent / "resources" / "icons"
APP_ICON = "geocam.svg"
SIZES = (16, 32, 48, 64, 128, 256, 512)


def png_name(size: int) -> str:
    return f"geocam-{size}.png"


def _app():
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication

    return QGuiApplication.instance() or QGuiApplication([sys.argv[0]])


def render_svg(svg: Path, size: int):
    """Return a transparent ``size`` x ``size`` QImage of ``svg``."""
    from PySide6.QtCore import QRectF, Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise ValueError(f"{svg} is not an SVG file Qt can read.")
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHints(QPainter.RenderHint.Antialiasing | QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter, QRectF(0, 0, size, size))
    painter.end()
    return image


def render_all(icon_dir: Path = ICON_DIR, sizes=SIZES) -> list[Path]:
    _app()
    written = []
    for size in sizes:
        out = icon_dir / png_name(size)
        if not render_svg(icon_dir / APP_ICON, size).save(str(out), "PNG"):
            raise OSError(f"Could not write {out}.")
        written.append(out)
    return written


def stale(icon_dir: Path = ICON_DIR, sizes=SIZES, tolerance: float = 0.002) -> list[str]:
    """Names of PNGs that are missing, of the wrong size, or differ from a fresh rendering.

    ``tolerance`` (see ``changed_fraction``) absorbs anti-aliasing changes between Qt
    versions; an edited colour or shape changes far more.
    """
    from PySide6.QtGui import QImage

    _app()
    problems = []
    for size in sizes:
        path = icon_dir / png_name(size)
        current = QImage(str(path))
        if current.isNull():
            problems.append(f"{path.name}: missing or unreadable")
            continue
        if (current.width(), current.height()) != (size, size):
            problems.append(f"{path.name}: {current.width()}x{current.height()}, expected {size}x{size}")
            continue
        diff = changed_fraction(current, render_svg(icon_dir / APP_ICON, size))
        if diff > tolerance:
            problems.append(f"{path.name}: {diff:.1%} differs from {APP_ICON}; rerun packaging/render_icons.py")
    return problems


def changed_fraction(first, second, threshold: int = 32) -> float:
    """Fraction of ARGB channel values of two same-size QImages that differ by more than ``threshold``."""
    import numpy as np
    from PySide6.QtGui import QImage

    arrays = []
    for image in (first, second):
        image = image.convertToFormat(QImage.Format.Format_ARGB32)
        rows = np.frombuffer(image.constBits(), np.uint8, image.sizeInBytes()).reshape(image.height(), -1)
        arrays.append(rows[:, : image.width() * 4].astype(np.int16))
    return float((np.abs(arrays[0] - arrays[1]) > threshold).mean())


def contact_sheet(out: Path, icon_dir: Path = ICON_DIR, cell: int = 72) -> Path:
    """Every SVG icon at ``cell`` px on a light and a dark row, to eyeball the set."""
    from PySide6.QtCore import QPoint
    from PySide6.QtGui import QColor, QImage, QPainter

    _app()
    svgs = sorted(icon_dir.glob("*.svg"))
    sheet = QImage(cell * len(svgs), cell * 2, QImage.Format.Format_ARGB32)
    painter = QPainter(sheet)
    for row, colour in enumerate(("#f4f5f7", "#1e2229")):
        painter.fillRect(0, row * cell, sheet.width(), cell, QColor(colour))
        for col, svg in enumerate(svgs):
            painter.drawImage(QPoint(col * cell + 12, row * cell + 12), render_svg(svg, cell - 24))
    painter.end()
    sheet.save(str(out))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the PNGs are up to date")
    parser.add_argument("--preview", type=Path, metavar="PNG", help="also write a contact sheet of all icons")
    args = parser.parse_args(argv)
    if args.check:
        problems = stale()
        for line in problems:
            print(line, file=sys.stderr)
        return 1 if problems else 0
    for path in render_all():
        print(path.relative_to(ICON_DIR.parent.parent))
    if args.preview:
        print(contact_sheet(args.preview))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
