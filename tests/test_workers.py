"""Worker signal contract (superqt names: returned / errored / finished always last) and the
thumbnail loader on the shared latest-request-wins worker."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from PySide6.QtGui import QImage

from geocam_gui.core.errors import DataError
from geocam_gui.ui import workers


@pytest.fixture(autouse=True)
def _no_leaks(qtbot):
    yield
    qtbot.waitUntil(lambda: not workers.running_threads(), timeout=20000)


def _record(worker, names):
    seen = []
    for name in names:
        getattr(worker, name).connect(lambda *a, _n=name: seen.append((_n, a)))
    return seen


@pytest.mark.parametrize("fn, first", [
    (lambda progress, cancelled: 42, ("returned", (42,))),
    (lambda progress, cancelled: (_ for _ in ()).throw(DataError("Bad data.")), ("errored", ("Bad data.",))),
])
def test_task_worker_emits_one_outcome_then_finished(qtbot, fn, first):
    task = workers.TaskWorker("t", fn)
    seen = _record(task, ["returned", "errored", "cancelled", "finished"])
    with qtbot.waitSignal(task.finished, timeout=10000):
        task.start()
    assert seen == [first, ("finished", ())]
    task.wait()


def test_latest_worker_runs_the_newest_request_and_finishes_each(qtbot):
    import threading

    gate = threading.Event()

    def fn(request):
        gate.wait(5)
        if request == "bad":
            raise DataError("No.")
        return request * 2

    worker = workers.LatestWorker("latest", fn)
    seen = _record(worker, ["returned", "errored", "finished"])
    worker.submit(1, 10)  # starts and blocks on the gate
    qtbot.wait(100)
    worker.submit(2, 20)
    worker.submit(3, "bad")  # replaces 2 before it ran
    gate.set()
    qtbot.waitUntil(lambda: len(seen) == 4, timeout=10000)
    assert seen == [("returned", (1, 20)), ("finished", (1,)), ("errored", (3, "No.")), ("finished", (3,))]
    assert worker.stop()


def test_thumbnail_loader_makes_every_requested_thumbnail_newest_first(qtbot, tmp_path):
    from geocam_gui.ui.dataset_model import ThumbnailLoader

    paths = []
    for i in range(6):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(np.full((40, 60, 3), i * 40, np.uint8)).save(p)
        paths.append(str(p))
    (tmp_path / "broken.png").write_bytes(b"not an image")
    paths.append(str(tmp_path / "broken.png"))
    loader = ThumbnailLoader(size=32)
    try:
        got = []
        loader.ready.connect(lambda path, img: got.append((path, img.width(), img.height())))
        for p in paths:
            loader.request(p)
        qtbot.waitUntil(lambda: len(got) == len(paths), timeout=20000)
        assert [g[0] for g in got] == paths[::-1]  # one request, newest first
        assert got[1:] == [(p, 32, 21) for p in paths[-2::-1]]  # aspect kept, long side 32
        assert got[0][1:] == (32, 32)  # a broken file gets a grey tile
        assert not loader._wanted
        cached = loader._cache_path(paths[3])
        assert cached.is_file() and abs(QImage(str(cached)).pixelColor(5, 5).red() - 120) <= 2
    finally:
        loader.stop()
