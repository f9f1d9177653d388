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


def default_checkpoint_dir() -> Path:
    """``GEOCAM_CHECKPOINTS`` or the user data directory's ``checkpoints`` folder."""
    env = os.environ.get("GEOCAM_CHECKPOINTS")
    return Path(env) if env else data_dir() / "checkpoints"
