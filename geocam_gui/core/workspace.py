"""The app's state, Qt-free: the open dataset, its run folder and the active checkpoint per model.

One ``Workspace`` per window (in the style of napari's evented models, without Qt): the views
read its attributes and subscribe to its events; whoever changes the state (the window, the
training panel's signals) calls its methods, and every subscriber hears about it. Events are
plain callbacks called synchronously, in the thread that changed the state (the GUI thread in
the app); a callback's exception propagates to that caller.

* ``events.index(index, run_dir)``: another dataset was opened (``index`` may be None).
* ``events.checkpoint(model, path, error)``: ``model``'s active checkpoint changed (``path``
  None: no model; ``error``: why the one found cannot be used).

``default_run_dir`` is the one place that decides where a dataset's runs go (GUI and CLI).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from geocam_gui.core import paths, runs
from geocam_gui.core.data.datasets import DatasetIndex
from geocam_gui.core.data.demo import is_demo_dir
from geocam_gui.core.models import MODEL_NAMES


def is_demo_index(index: DatasetIndex) -> bool:
    """The index is (or starts with) the demo set (``data.demo.is_demo_dir`` decides)."""
    return bool(index.roots) and is_demo_dir(index.roots[0])


def default_run_dir(index: DatasetIndex, checkpoint_dir: str | Path | None = None) -> Path:
    """Where the GUI and ``geocam train`` (without ``--out``) keep the runs on ``index``:
    ``runs.run_dir_for`` below ``checkpoint_dir`` (default ``paths.default_checkpoint_dir()``)."""
    root = Path(checkpoint_dir) if checkpoint_dir is not None else paths.default_checkpoint_dir()
    return runs.run_dir_for(index, root, demo=is_demo_index(index))


class Emitter:
    """A list of callbacks: ``connect(cb)``, ``disconnect(cb)``, ``emit(*args)``."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[..., None]] = []

    def connect(self, callback: Callable[..., None]) -> Callable[..., None]:
        if callback not in self._callbacks:
            self._callbacks.append(callback)
        return callback

    def disconnect(self, callback: Callable[..., None]) -> None:
        if callback in self._callbacks:
            self._callbacks.remove(callback)

    def emit(self, *args) -> None:
        for callback in list(self._callbacks):
            callback(*args)


class WorkspaceEvents:
    def __init__(self) -> None:
        self.index = Emitter()
        self.checkpoint = Emitter()


class Workspace:
    """The open index, its run folder, the active checkpoint of each model (see module doc)."""

    def __init__(self, checkpoint_dir: str | Path | None = None):
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else paths.default_checkpoint_dir()
        self.events = WorkspaceEvents()
        self.index: DatasetIndex | None = None
        self.run_dir: Path | None = None
        self._checkpoints: dict[str, str | None] = {name: None for name in MODEL_NAMES}
        self._errors: dict[str, str] = {}

    # ---------------------------------------------------------------- reading
    @property
    def checkpoints(self) -> dict[str, str | None]:
        """Model -> active checkpoint path (None: none), every model present (a copy)."""
        return dict(self._checkpoints)

    def active_checkpoints(self) -> dict[str, str]:
        """Only the models that have a checkpoint."""
        return {k: v for k, v in self._checkpoints.items() if v}

    def checkpoint_error(self, model: str) -> str | None:
        return self._errors.get(model)

    def is_demo(self) -> bool:
        return self.index is not None and is_demo_index(self.index)

    def history(self, model: str) -> list[dict]:
        """The per-epoch records of the run of ``model``'s active checkpoint (``metrics.jsonl``
        beside it; [] when there is none)."""
        path = self._checkpoints.get(model)
        return runs.read_history(Path(path).parent / "metrics.jsonl") if path else []

    def run_dir_for(self, index: DatasetIndex) -> Path:
        """The run folder ``index`` would get here (stats every file: call it off the GUI thread)."""
        return default_run_dir(index, self.checkpoint_dir)

    # ---------------------------------------------------------------- changing
    def set_index(self, index: DatasetIndex | None, run_dir: str | Path | None = None) -> None:
        """Open ``index`` (its run folder: ``run_dir`` or the default one); every model's
        checkpoint is cleared (``reopen()`` then finds the run's)."""
        self.index = index
        if index is None:
            self.run_dir = None
        else:
            self.run_dir = Path(run_dir) if run_dir is not None else self.run_dir_for(index)
        for name in MODEL_NAMES:
            self.set_checkpoint(name, None)
        self.events.index.emit(index, self.run_dir)

    def follow(self, set_context) -> None:
        """Call ``set_context(index, checkpoints)`` now and whenever the index or a checkpoint
        changes (the analysis and units views follow the workspace this way)."""

        def sync(*_args) -> None:
            set_context(self.index, self.checkpoints)

        self.events.index.connect(sync)
        self.events.checkpoint.connect(sync)
        sync()

    def set_checkpoint(self, model: str, path: str | Path | None, error: str | None = None) -> None:
        """Make ``path`` the active checkpoint of ``model`` (None: none; ``error``: why) and
        announce it, even when the path is the same (the file may have been rewritten)."""
        if model not in self._checkpoints:
            raise ValueError(f"Unknown model {model!r}.")
        # Always announced, also for the same path: a run rewrites best/last in place each epoch.
        new = str(path) if path else None
        self._checkpoints[model] = new
        if error:
            self._errors[model] = error
        else:
            self._errors.pop(model, None)
        self.events.checkpoint.emit(model, new, error)

    def reopen(self, folder: str | Path | None = None) -> dict[str, runs.ModelCheckpoint]:
        """Make each model's checkpoint in ``folder`` (default: the run folder) active, as
        ``runs.reopen`` chooses it for the open index's classes; returns what it found (models
        with an error included, their ``path`` None). Models absent from ``folder`` keep theirs."""
        folder = folder if folder is not None else self.run_dir
        classes = list(self.index.classes) if self.index is not None else None
        found = runs.reopen(folder, classes)
        for name, entry in found.items():
            self.set_checkpoint(name, entry.path, entry.error)
        return found
