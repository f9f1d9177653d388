"""The compute process: every piece of model work the window needs, outside the window's process.

Loading a checkpoint, building a model and running Python-level torch code hold the GIL for
tens to hundreds of milliseconds; in the GUI's own process that freezes the window however many
threads are used. ``ComputeService`` spawns one long-lived child process (at lower priority, see
``core.background``) that owns the models (and, on a GPU, the CUDA context: the GUI process never
initialises CUDA) and answers requests with plain numpy data.

Requests travel in *lanes* (``"explain"`` for the viewer, ``"predict"`` for the browser, any other
name for other views). In each lane the latest request wins: a new request replaces one that is
waiting and stops one that is running at its next check, and the parent drops any reply that is
not the lane's latest. The interactive lanes (``PRIORITY``: the viewer's explanations, the Units
tab's unit maps and layer lists) go first: a long job (predictions, reference scales, an analysis,
a units scan) serves a waiting one between two of its batches. A whole-dataset pass (``PASSES``:
an analysis, a units scan) also lets the browser's predictions and the viewer's reference scales
through, so minutes of analysis never hold up the rest of the window.

Protocol (pickled tuples over one ``multiprocessing`` pipe; contract-tested):

* parent -> child: ``("job", id, lane, kind, kwargs, home)``, ``("cancel", lane)``, ``("stop",)``;
  ``home`` is the parent's ``GEOCAM_HOME`` when it sent the job (None: unset), set in the child
  while the job runs, so the long-lived child writes caches and reports where the window would
* child -> parent: ``("progress", id, done, total, text)``, ``("result", id, payload)``,
  ``("error", id, sentence)``, ``("superseded", id)``, ``("ready", pid)`` (once, at start)

Kinds: ``explain`` (``explain_image``'s arguments without the store -> ``ImageExplanation``),
``predict`` (checkpoint, samples -> (N, C) probabilities), ``reference`` (checkpoint, paths,
method, q -> ``reference.cam_percentiles``' dict: each class's percentile of the raw maps),
``stats`` (how many jobs of each kind were computed, for tests and benchmarks), ``sleep``
(seconds; a cancellable job for tests). Rooms above ``explain`` add kinds through ``jobs``: module
names the child imports at its start, each with a ``HANDLERS`` dict of the same form (the
window's bridge adds ``core.analysis.jobs``: ``analyze``, ``units``, ``unitmap``, ``layers``).

Long because both ends of the protocol live here (the parent's ``ComputeService``, the child's
``_Server`` and the base kinds), so that neither can change without the other.

When the parent dies the child sees the pipe's end within a fraction of a second and exits.
When the child dies, ``poll`` reports ``Reply(status="crashed")`` for each lane with a request
in flight, and ``restart()`` starts a fresh process.
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import os
import queue
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable

from geocam_gui.core.errors import GeoCamError

#: Lanes served first when several wait, and between two batches of a long job on another lane:
#: the viewer's explanations, then the Units tab's unit maps and layer lists (each a click away).
PRIORITY = ("explain", "unit-map", "layers")
#: Lanes of whole-dataset passes (minutes): between two batches they serve every other waiting
#: lane too (predictions, reference scales), but not each other.
PASSES = ("analysis", "units")


@dataclass(frozen=True)
class Reply:
    """What the parent learns about one request: status is result, error, progress or crashed."""

    id: int
    lane: str
    status: str
    payload: Any = None


class ComputeService:
    """The parent's handle on the compute process (no Qt; the ui wraps ``fileno()`` in a notifier)."""

    def __init__(self, device: str = "cpu", *, nice: int = 5, threads: int | None = None,
                 jobs: tuple[str, ...] = ()):
        self.device = device
        self.nice = nice
        self.threads = threads
        self.jobs = tuple(jobs)  # modules whose HANDLERS the child adds to its own
        self._ctx = mp.get_context("spawn")
        self._conn = None
        self._proc = None
        self._outbox: queue.SimpleQueue | None = None  # what the writer thread sends, None: stop
        self._writer: threading.Thread | None = None
        self._next_id = 0
        self._latest: dict[str, int] = {}  # lane -> id of its newest request
        self._in_flight: dict[int, str] = {}  # id -> lane, requests not yet answered
        self.pid: int | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "ComputeService":
        parent, child = self._ctx.Pipe(duplex=True)
        self._proc = self._ctx.Process(target=serve, args=(child, self.device, self.nice, self.threads, self.jobs),
                                       name="geocam-compute", daemon=True)
        self._proc.start()
        child.close()  # only the child holds its end: its death is our EOF and vice versa
        self._conn = parent
        # Requests go out from a thread: a large one (an index of 100,000 samples) fills the pipe,
        # and a caller blocked in send() while the child is blocked sending a large reply would
        # wait for ever. The window's thread only ever queues.
        self._outbox = queue.SimpleQueue()
        self._writer = threading.Thread(target=_write, args=(parent, self._outbox), name="geocam-compute-writer",
                                        daemon=True)
        self._writer.start()
        self.pid = self._proc.pid
        self._in_flight.clear()
        self._latest.clear()
        return self

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    def restart(self) -> None:
        self.close(timeout=1.0)
        self.start()

    def close(self, timeout: float = 3.0) -> None:
        """Ask the child to stop, then make sure it has (terminate, then kill)."""
        proc, conn, outbox, writer = self._proc, self._conn, self._outbox, self._writer
        self._proc = self._conn = self._outbox = self._writer = None
        if outbox is not None:
            outbox.put(("stop",))
            outbox.put(None)
            writer.join(timeout)
        if conn is not None:
            conn.close()
        if proc is not None:
            proc.join(timeout)
            if proc.is_alive():
                proc.terminate()
                proc.join(1.0)
            if proc.is_alive():
                proc.kill()
                proc.join(1.0)

    def fileno(self) -> int:
        """The pipe's descriptor: readable when ``poll`` has something (for a socket notifier)."""
        if self._conn is None:
            raise GeoCamError("The compute process is not running.")
        return self._conn.fileno()

    # ------------------------------------------------------------------ requests
    def submit(self, lane: str, kind: str, **kwargs: Any) -> int:
        """Send a request; it replaces the lane's previous one. Returns its id."""
        if self._conn is None:
            self.start()
        self._next_id += 1
        job_id = self._next_id
        self._latest[lane] = job_id
        self._in_flight[job_id] = lane
        home = os.environ.get("GEOCAM_HOME")
        self._outbox.put(("job", job_id, lane, kind, kwargs, home))  # a dead child: the next poll says so
        return job_id

    def cancel(self, lane: str) -> None:
        """Forget the lane's request; the child stops it at its next check."""
        self._latest.pop(lane, None)
        if self._outbox is not None:
            self._outbox.put(("cancel", lane))

    def poll(self, timeout: float = 0.0) -> list[Reply]:
        """Replies that arrived (waiting up to ``timeout`` s for the first); only each lane's latest."""
        out: list[Reply] = []
        if self._conn is None:
            return out
        deadline = time.monotonic() + timeout
        while True:
            wait = max(0.0, deadline - time.monotonic()) if not out else 0.0
            try:
                if not self._conn.poll(wait):
                    break
                message = self._conn.recv()
            except (EOFError, OSError):
                out.extend(self._crashed())
                break
            reply = self._reply(message)
            if reply is not None:
                out.append(reply)
        return out

    def request(self, lane: str, kind: str, timeout: float = 120.0, **kwargs: Any) -> Any:
        """Submit and wait for the answer (scripts and tests); raises ``GeoCamError`` on failure."""
        job_id = self.submit(lane, kind, **kwargs)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for reply in self.poll(timeout=min(1.0, max(0.0, deadline - time.monotonic()))):
                if reply.id != job_id or reply.status == "progress":
                    continue
                if reply.status == "result":
                    return reply.payload
                raise GeoCamError(str(reply.payload))
        raise GeoCamError(f"The compute process did not answer within {timeout:.0f} s.")

    def _reply(self, message: tuple) -> Reply | None:
        tag, job_id = message[0], message[1]
        if tag == "ready":
            return None
        lane = self._in_flight.get(job_id)
        if lane is None:
            return None
        if tag != "progress":
            del self._in_flight[job_id]
        if self._latest.get(lane) != job_id or tag == "superseded":
            return None  # an older request of the lane: nobody shows it any more
        if tag == "progress":
            return Reply(job_id, lane, "progress", tuple(message[2:]))  # (done, total, text)
        if tag == "result":
            return Reply(job_id, lane, "result", message[2])
        return Reply(job_id, lane, "error", message[2])

    def _crashed(self) -> list[Reply]:
        proc = self._proc
        code = None
        if proc is not None:
            proc.join(0.5)
            code = proc.exitcode
        if self._outbox is not None:
            self._outbox.put(None)  # the writer stops; it may be blocked on the dead pipe until close
        if self._conn is not None:
            self._conn.close()
        self._conn = self._proc = self._outbox = self._writer = None
        sentence = f"The compute process stopped unexpectedly (exit code {code}); it is restarted on the next request."
        out = [Reply(job_id, lane, "crashed", sentence) for job_id, lane in self._in_flight.items()
               if self._latest.get(lane) == job_id]
        self._in_flight.clear()
        self._latest.clear()
        return out


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


def _write(conn, outbox: queue.SimpleQueue) -> None:
    """The parent's writer thread: sends what is queued until ``None`` or a closed pipe."""
    while (message := outbox.get()) is not None:
        try:
            conn.send(message)
        except (OSError, ValueError):
            return  # the child is gone (the reader reports it) or the pipe was closed


# ====================================================================== the child's side
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
