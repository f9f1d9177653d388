"""The compute process: every piece of model work the window needs, outside the window's process.

Loading a checkpoint, building a model and running Python-level torch code hold the GIL for
tens to hundreds of milliseconds; in the GUI's own process that freezes the window however many
threads are used. ``ComputeService`` spawns one long-lived child process (at lower priority, see
``core.background``) that owns the models (and, on a GPU, the CUDA context: the GUI process never
initialises CUDA) and answers requests with plain numpy data.

Requests travel in *lanes* (``"explain"`` for the viewer, ``"predict"`` for the browser, any other
name for other views). In each lane the latest request wins: a new request replaces one that is
waiting and stops one that is running at its next check, and the parent drops any reply that is
not the lane's latest. The interactive lanes (``server.PRIORITY``: the viewer's explanations, the Units
tab's unit maps and layer lists) go first: a long job (predictions, reference scales, an analysis,
a units scan) serves a waiting one between two of its batches. A whole-dataset pass (``server.PASSES``:
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

When the parent dies the child sees the pipe's end within a fraction of a second and exits.
When the child dies, ``poll`` reports ``Reply(status="crashed")`` for each lane with a request
in flight, and ``restart()`` starts a fresh process.

Every request gets exactly one final reply, except one its sender cancelled: ``result``,
``error``, ``crashed``, or ``superseded`` when a newer request on the same lane (from this
window's other views, or another window sharing the process) replaced it before it finished;
the listener that sent it stops waiting, the others drop it by its id.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

from geocam_gui.core.errors import GeoCamError
from geocam_gui.core.explain.server import serve

SUPERSEDED = "A newer request on the same lane replaced this one before it finished."


@dataclass(frozen=True)
class Reply:
    """What the parent learns about one request: status is result, error, progress, crashed or
    superseded (payload: a sentence for all but result and progress)."""

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
        proc = self._ctx.Process(target=serve, args=(child, self.device, self.nice, self.threads, self.jobs),
                                 name="geocam-compute", daemon=True)
        try:
            proc.start()
        except BaseException:
            parent.close()
            child.close()
            raise
        self._proc = proc  # only a started process: close() joins it
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
        """Forget the lane's request (no reply comes for it); the child stops it at its next check."""
        self._in_flight.pop(self._latest.pop(lane, None), None)
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
        if self._latest.get(lane) != job_id or tag == "superseded":  # a newer request replaced it
            return None if tag == "progress" else Reply(job_id, lane, "superseded", SUPERSEDED)
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
        out = [Reply(job_id, lane, "crashed", sentence) for job_id, lane in self._in_flight.items()]
        self._in_flight.clear()
        self._latest.clear()
        return out


def _write(conn, outbox: queue.SimpleQueue) -> None:
    """The parent's writer thread: sends what is queued until ``None`` or a closed pipe."""
    while (message := outbox.get()) is not None:
        try:
            conn.send(message)
        except (OSError, ValueError):
            return  # the child is gone (the reader reports it) or the pipe was closed
