"""The compute process's own side (``service`` is the window's): its loop, the base job kinds and
its entry point ``serve``. The protocol is described in ``service``'s docstring; this module holds
the child's scheduling rules (``PRIORITY``, ``PASSES``) and runs every job under the sender's
``GEOCAM_HOME``.
"""

from __future__ import annotations

import importlib
import os
import time
from contextlib import contextmanager
from typing import Any, Callable

from geocam_gui.core.errors import GeoCamError

#: Lanes served first when several wait, and between two batches of a long job on another lane:
#: the viewer's explanations, then the Units tab's unit maps, layer lists and first-layer filters
#: (each a click away).
PRIORITY = ("explain", "unit-map", "layers", "filters")
#: Lanes of whole-dataset passes (minutes): between two batches they serve every other waiting
#: lane too (predictions, reference scales), but not each other.
PASSES = ("analysis", "units")


@contextmanager
def _home(home: str | None):
    """``GEOCAM_HOME`` as the job's sender had it, for the job's duration."""
    old = os.environ.get("GEOCAM_HOME")
    _set_home(home)
    try:
        yield
    finally:
        _set_home(old)


def _set_home(value: str | None) -> None:
    if value is None:
        os.environ.pop("GEOCAM_HOME", None)
    else:
        os.environ["GEOCAM_HOME"] = value


class _Superseded(Exception):
    pass


class _Server:
    """The child's loop: pending jobs per lane, latest wins, the explain lane first."""

    def __init__(self, conn, device: str, handlers: dict[str, Callable[..., Any]] | None = None):
        from geocam_gui.core.explain.store import ModelStore

        self.conn = conn
        self.device = device
        self.store = ModelStore(device)
        self.handlers = dict(HANDLERS if handlers is None else handlers)
        self.pending: dict[str, tuple] = {}
        self.running: list[tuple[int, str]] = []  # (id, lane) stack: a prediction may serve an explanation
        self.counts: dict[str, int] = {}
        self.cancelled_ids: set[int] = set()  # running jobs whose lane got a newer request
        self.stopping = False

    def run(self) -> None:
        while not self.stopping:
            self.drain(block=not self.pending)
            job = self.next_job()
            if job is not None:
                self.execute(job)

    def drain(self, block: bool = False) -> None:
        """Read every waiting message; EOF (the parent died or closed) ends the process."""
        timeout = 0.2 if block else 0.0
        while True:
            try:
                if not self.conn.poll(timeout):
                    return
                message = self.conn.recv()
            except (EOFError, OSError):
                self.stopping = True
                raise SystemExit(0)
            timeout = 0.0
            tag = message[0]
            if tag == "stop":
                self.stopping = True
                raise SystemExit(0)
            if tag == "cancel":
                self._supersede(message[1])
            elif tag == "job":
                _, job_id, lane, kind, kwargs, home = message
                self._supersede(lane)
                self.pending[lane] = (job_id, lane, kind, kwargs, home)

    def _supersede(self, lane: str) -> None:
        old = self.pending.pop(lane, None)
        if old is not None:
            self.send(("superseded", old[0]))
        for job_id, running_lane in self.running:
            if running_lane == lane:
                self.cancelled_ids.add(job_id)

    def next_job(self) -> tuple | None:
        for lane in PRIORITY:
            if lane in self.pending:
                return self.pending.pop(lane)
        if self.pending:
            return self.pending.pop(next(iter(self.pending)))
        return None

    def execute(self, job: tuple) -> None:
        job_id, lane, kind, kwargs, home = job
        self.running.append((job_id, lane))
        try:
            handler = self.handlers.get(kind)
            if handler is None:
                raise GeoCamError(f"The compute process has no job {kind!r}.")
            with _home(home):
                result = handler(self, job_id, **kwargs)
            self.counts[kind] = self.counts.get(kind, 0) + 1
            self.send(("result", job_id, result))
        except _Superseded:
            self.send(("superseded", job_id))
        except Exception as exc:  # noqa: BLE001 - a sentence to the window, the process lives on
            text = str(exc) if isinstance(exc, GeoCamError) else f"{type(exc).__name__}: {exc}"
            self.send(("error", job_id, text))
        finally:
            self.running.pop()
            self.cancelled_ids.discard(job_id)

    def check(self, job_id: int, lane: str) -> None:
        """Between steps of a job: read messages, serve a waiting explanation, stop if replaced."""
        self.drain()
        if job_id in self.cancelled_ids:
            raise _Superseded()
        for first in self._let_through(lane):
            if first in self.pending:
                import torch

                # This job may be inside ``torch.inference_mode`` (a prediction pass): the
                # waiting one needs gradients and must not load models as inference tensors.
                with torch.inference_mode(False), torch.enable_grad():
                    self.execute(self.pending.pop(first))
        if job_id in self.cancelled_ids:
            raise _Superseded()

    def _let_through(self, lane: str) -> list[str]:
        """The waiting lanes a running job on ``lane`` serves between two of its batches."""
        if lane in PRIORITY:
            return []
        lanes = [first for first in PRIORITY if first in self.pending]
        if lane in PASSES:
            lanes += [other for other in self.pending if other not in PRIORITY and other not in PASSES]
        return lanes

    # Helpers for handlers: a job's lane, its progress callback, its cancel callback.
    def lane_of(self, job_id: int) -> str:
        return next(lane for i, lane in self.running if i == job_id)

    def reporter(self, job_id: int) -> Callable[..., None]:
        """``progress(done, total, text="")`` sending the job's progress replies."""
        def progress(done: int, total: int, text: str = "") -> None:
            self.send(("progress", job_id, int(done), int(total), str(text)))

        return progress

    def canceller(self, job_id: int) -> Callable[[], bool]:
        """A core pass's ``cancel()``: serves waiting interactive jobs and raises ``_Superseded``
        when the job was replaced or cancelled (never returns True)."""
        lane = self.lane_of(job_id)

        def cancelled() -> bool:
            self.check(job_id, lane)
            return False

        return cancelled

    def send(self, message: tuple) -> None:
        try:
            self.conn.send(message)
        except (OSError, ValueError):
            self.stopping = True
            raise SystemExit(0)


def _explain(server: _Server, job_id: int, **kwargs):
    from geocam_gui.core.explain.store import explain_image

    return explain_image(store=server.store, **kwargs)


def _predict(server: _Server, job_id: int, *, checkpoint, samples, batch_size: int = 64):
    from geocam_gui.core.explain.store import predict_samples

    return predict_samples(checkpoint, samples, store=server.store, batch_size=batch_size,
                           progress=server.reporter(job_id), cancel=server.canceller(job_id))


def _reference(server: _Server, job_id: int, *, checkpoint, paths, method: str = "gradcam", q: float = 99.0):
    from geocam_gui.core.explain.reference import cam_percentiles

    return cam_percentiles(checkpoint, paths, server.store, method=method, q=q,
                           cancel=server.canceller(job_id))  # serves explanations between batches


def _stats(server: _Server, job_id: int):
    return dict(server.counts)


def _sleep(server: _Server, job_id: int, *, seconds: float):
    cancelled = server.canceller(job_id)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.02)
        cancelled()
    return seconds


HANDLERS: dict[str, Callable[..., Any]] = {"explain": _explain, "predict": _predict, "reference": _reference,
                                           "stats": _stats, "sleep": _sleep}


def serve(conn, device: str = "cpu", nice: int = 5, threads: int | None = None, jobs: tuple[str, ...] = ()) -> None:
    """The child process's entry point; ``jobs``: modules whose ``HANDLERS`` add kinds."""
    if nice:  # below the window: on a busy CPU the GUI thread wins, but the answers still come
        from geocam_gui.core.background import run_in_background

        run_in_background(nice, policy="batch" if device == "cpu" else "nice")
    import torch

    if threads:
        torch.set_num_threads(threads)
    handlers = dict(HANDLERS)
    for name in jobs:
        handlers.update(importlib.import_module(name).HANDLERS)
    server = _Server(conn, device, handlers)
    server.send(("ready", os.getpid()))
    try:
        server.run()
    except SystemExit:
        pass
    finally:
        conn.close()
