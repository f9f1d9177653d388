"""Logging to stderr and to a rotating file in the user log directory."""

from __future__ import annotations

import logging
import logging.handlers

from geocam_gui.core import paths

_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def setup_logging(level: int = logging.INFO, *, to_file: bool = True) -> logging.Logger:
    """Configure the ``geocam_gui`` logger once; returns it. Safe to call repeatedly."""
    log = logging.getLogger("geocam_gui")
    if getattr(log, "_geocam_configured", False):
        return log
    log.setLevel(level)
    stream = logging.StreamHandler()
    stream.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    stream.setLevel(logging.WARNING)
    log.addHandler(stream)
    if to_file:
        try:
            folder = paths.log_dir()
            folder.mkdir(parents=True, exist_ok=True)
            handler = logging.handlers.RotatingFileHandler(
                folder / "geocam.log", maxBytes=2_000_000, backupCount=3, encoding="utf-8",
                errors="backslashreplace",  # a file name that is not UTF-8 is logged, escaped
            )
            handler.setFormatter(logging.Formatter(_FORMAT))
            log.addHandler(handler)
        except OSError as exc:  # a read-only home must not stop the app
            log.warning("Cannot write the log file: %s", exc)
    log._geocam_configured = True  # type: ignore[attr-defined]
    return log


def log_file() -> str:
    return str(paths.log_dir() / "geocam.log")
