"""The GUI entry point (``geocam-gui``): QApplication bootstrap and command-line flags."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from pathlib import Path

from geocam_gui import __version__

log = logging.getLogger("geocam_gui")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="geocam-gui",
        description="GeoCAM: see what a shallow CNN, VGG11 and ResNet18 look at when they tell cities apart.",
    )
    p.add_argument("--version", action="version", version=f"geocam-gui {__version__}")
    p.add_argument("--demo", action="store_true",
                   help="open the embedded two-cities demo set (generated once into the cache); "
                        "trains the three models on first use")
    p.add_argument("--data", metavar="PATH", nargs="+", help="open this dataset folder (or index) at start")
    p.add_argument("--checkpoints", metavar="DIR", help="where training runs are written and found "
                   "(default: the user data directory)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    p.add_argument("--no-train", action="store_true", help="with --demo: do not train missing models")
    p.add_argument("--screenshot", metavar="PNG",
                   help="render the window to PNG once start-up work has finished, then exit")
    p.add_argument("--size", metavar="WxH", default=None, help="window size, e.g. 1280x800")
    p.add_argument("--screenshot-timeout", type=float, default=1800, metavar="S",
                   help="longest wait for start-up work before the screenshot (default 1800 s)")
    p.add_argument("--reset-settings", action="store_true", help="forget window layout and recent datasets")
    return p


def _parse_size(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"geocam-gui: error: --size must look like 1280x800, got {text!r}") from None
    if w < 200 or h < 200:
        raise SystemExit(f"geocam-gui: error: --size {text} is too small")
    return w, h


def install_excepthook() -> None:
    """Uncaught exceptions go to the log and a dialog, not only to a console."""

    def hook(exc_type, exc, tb):
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        log.error("Uncaught exception:\n%s", text)
        from PySide6.QtWidgets import QApplication, QMessageBox

        app = QApplication.instance()
        if app is not None and not app.property("geocamQuiet"):
            box = QMessageBox(QMessageBox.Icon.Critical, "GeoCAM - unexpected error",
                              f"{exc_type.__name__}: {exc}\n\nThe details are in the log file.")
            box.setDetailedText(text)
            box.exec()

    sys.excepthook = hook


def main(argv: list[str] | None = None) -> int:
    import multiprocessing

    multiprocessing.freeze_support()  # a frozen bundle's training child must not open a window
    args = build_parser().parse_args(argv)
    size = _parse_size(args.size)
    if args.screenshot and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    from geocam_gui.core.doctor import qt_start_problem

    problem = qt_start_problem()  # Qt would abort with a terse line; name the install command instead
    if problem:
        print(problem, file=sys.stderr)
        return 3
    from geocam_gui.core.logs import setup_logging

    setup_logging()
    from PySide6.QtCore import QTimer
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    from geocam_gui.core.device import resolve_device
    from geocam_gui.core.errors import GeoCamError

    try:
        resolve_device(args.device)
    except GeoCamError as exc:
        print(f"geocam-gui: error: {exc}", file=sys.stderr)
        return 2

    QApplication.setOrganizationName("GeoCAM")
    QApplication.setApplicationName("GeoCAM")
    QApplication.setApplicationVersion(__version__)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setDesktopFileName("geocam")  # Wayland matches the window to geocam.desktop
    if args.screenshot:
        app.setProperty("geocamQuiet", True)  # no modal dialogs when nobody can click them
    install_excepthook()
    from geocam_gui.ui.style import app_icon_path, apply_style

    apply_style(app)
    app.setWindowIcon(QIcon(str(app_icon_path())))
    from geocam_gui.ui.main_window import MainWindow
    from geocam_gui.ui.tasks import default_screenshot_timer

    if args.reset_settings:
        MainWindow.reset_settings()

    window = MainWindow(checkpoint_dir=args.checkpoints, device=args.device)
    window.auto_train_missing = not args.no_train
    if size:
        window.resize(*size)
    elif not window.restored_geometry:
        window.resize(1280, 800)
    window.show()
    if args.data:
        for p in args.data:
            if not Path(p).exists():
                print(f"geocam-gui: error: dataset {p} does not exist", file=sys.stderr)
                return 2
        QTimer.singleShot(0, lambda: window.open_dataset(args.data))
    elif args.demo:
        QTimer.singleShot(0, window.open_demo)

    if args.screenshot:
        out = Path(args.screenshot)
        window.confirm_close = False

        def finish(ok: bool) -> None:
            if ok:
                print(f"screenshot written to {out}")
            else:
                print(f"geocam-gui: error: could not write {out}", file=sys.stderr)
            app.setProperty("geocamExit", 0 if ok else 1)
            window.close()
            app.quit()

        out.parent.mkdir(parents=True, exist_ok=True)
        default_screenshot_timer(window, str(out), args.screenshot_timeout, finish)
    code = app.exec()
    return int(app.property("geocamExit") or code or 0)


if __name__ == "__main__":
    raise SystemExit(main())
