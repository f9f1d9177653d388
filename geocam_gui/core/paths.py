"""Where GeoCAM keeps its cache, data and logs.

User directories come from platformdirs. ``GEOCAM_HOME`` moves all of them below one
folder (tests and portable installs use it); nothing is ever written into the source tree
except the ``checkpoints/`` folder of a source checkout when the user chooses it.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "geocam"


def _base(kind: str) -> Path:
    home = os.environ.get("GEOCAM_HOME")
    if home:
        return Path(home) / kind
    if kind == "cache":
        return Path(platformdirs.user_cache_dir(APP, appauthor=False))
    if kind == "data":
        return Path(platformdirs.user_data_dir(APP, appauthor=False))
    return Path(platformdirs.user_log_dir(APP, appauthor=False))


def cache_dir() -> Path:
    """Decoded-image caches, thumbnails, generated demo data, CAM results."""
    return _base("cache")


def data_dir() -> Path:
    """Trained checkpoints and runs of the GUI, recent datasets."""
    return _base("data")


def log_dir() -> Path:
    return _base("logs")


def export_dir() -> Path:
    """Where exports go until the user chooses a folder: ``GEOCAM_HOME/exports``, else
    ``~/GeoCAM exports`` (a folder people find, not hidden in the application data)."""
    home = os.environ.get("GEOCAM_HOME")
    return Path(home) / "exports" if home else Path.home() / "GeoCAM exports"


def default_checkpoint_dir() -> Path:
    """``GEOCAM_CHECKPOINTS`` or the user data directory's ``checkpoints`` folder."""
    env = os.environ.get("GEOCAM_CHECKPOINTS")
    return Path(env) if env else data_dir() / "checkpoints"


def check_writable_folder(folder: str | os.PathLike) -> Path:
    """Prove a file can be made in ``folder`` (created for the test and removed again) before long
    work whose results would go there; ``GeoCamError`` naming the folder and the reason if not."""
    import secrets

    from geocam_gui.core.errors import GeoCamError, os_error_sentence

    folder = Path(folder)
    probe = folder / f".geocam-probe-{secrets.token_hex(4)}"
    existed = folder.is_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as fh:
            fh.write(b"\0" * 4096)  # a folder with no room left for one block fails here
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise GeoCamError(os_error_sentence(exc, folder)) from None
    finally:
        _remove(probe)
        if not existed:
            try:
                folder.rmdir()  # leave no trace, not even an empty folder; the real writer makes it
            except OSError:
                pass
    return folder


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass
