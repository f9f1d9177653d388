"""The app's state, Qt-free: the open dataset, its run folder and the active checkpoint per model.

(Filled in below; ``default_run_dir`` is the one place that decides where a dataset's runs go.)
"""

from __future__ import annotations

from pathlib import Path

from geocam_gui.core import paths, runs
from geocam_gui.core.data.datasets import DatasetIndex
from geocam_gui.core.data.demo import is_demo_dir


def is_demo_index(index: DatasetIndex) -> bool:
    """The index is (or starts with) the demo set (``data.demo.is_demo_dir`` decides)."""
    return bool(index.roots) and is_demo_dir(index.roots[0])


def default_run_dir(index: DatasetIndex, checkpoint_dir: str | Path | None = None) -> Path:
    """Where the GUI and ``geocam train`` (without ``--out``) keep the runs on ``index``:
    ``runs.run_dir_for`` below ``checkpoint_dir`` (default ``paths.default_checkpoint_dir()``)."""
    root = Path(checkpoint_dir) if checkpoint_dir is not None else paths.default_checkpoint_dir()
    return runs.run_dir_for(index, root, demo=is_demo_index(index))
