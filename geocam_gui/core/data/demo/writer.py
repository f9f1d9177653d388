"""Drawing a demo set's plan into files: each image with its evidence and sky masks and its
per-kind label map, in this process or in worker processes.

Each image depends on (seed, class, place, view, sky, layout) alone (its own seeded numpy
Generators), so any split of the plan into chunks, in any process, writes the same bytes. Sets of
``PARALLEL_FROM`` images or more are drawn by one spawned process per CPU (``default_workers``),
in chunks of whole places, at SCHED_BATCH +5 so that a window generating its demo set keeps the
CPU first.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from geocam_gui.core.errors import Cancelled, DataError
from geocam_gui.core.files import atomic_write
from geocam_gui.core.data.demo.draw import render
from geocam_gui.core.data.demo.scene import build_scene

_PNG = {"format": "PNG", "compress_level": 3, "optimize": False}
#: Colours of the label map's palette (index = kind id), for looking at it; the values are the data.
_PALETTE = [(0, 0, 0), (110, 170, 230), (235, 235, 240), (90, 90, 95), (240, 230, 120), (180, 170, 150),
            (160, 100, 80), (60, 80, 120), (120, 60, 140), (240, 140, 40), (220, 40, 40), (40, 160, 80),
            (240, 200, 30), (30, 90, 220), (250, 250, 250), (30, 120, 40), (130, 130, 130), (20, 20, 20),
            (200, 60, 200)]


def image_name(item: dict) -> str:
    """The file stem of a planned image: ``p<place>_v<view>``."""
    return f"p{item['place']:04d}_v{item['view']}"


def _camera(rng: np.random.Generator, view: int) -> tuple:
    """Small shifts of zoom, position and light; view 0 is the place's reference shot."""
    if view == 0:
        return 1.02, 0.0, 0.0, 1.0, (1.0, 1.0, 1.0)
    zoom = rng.uniform(1.0, 1.1)
    room = (zoom - 1) / 2 + 0.02
    return (zoom, rng.uniform(-room, room), rng.uniform(-room, room), rng.uniform(0.88, 1.1),
            tuple(rng.uniform(0.96, 1.04, 3)))


def _save(arr: np.ndarray, path: Path) -> None:
    # Inside the hidden working folder, which is renamed into place at the end; fsync is not
    # needed (the set is re-creatable), the shared writer gives the clear disk-full sentence.
    atomic_write(path, lambda tmp: Image.fromarray(arr).save(tmp, **_PNG), fsync=False)


def _save_parts(parts: np.ndarray, path: Path) -> None:
    """The per-kind label map as an 8-bit indexed PNG (mode "P"; pixel value = kind id)."""
    im = Image.frombytes("P", (parts.shape[1], parts.shape[0]), np.ascontiguousarray(parts, np.uint8).tobytes())
    im.putpalette([c for rgb in _PALETTE for c in rgb])
    atomic_write(path, lambda tmp: im.save(tmp, **_PNG), fsync=False)


def _write_image(tmp: Path, item: dict, image, evidence, sky, parts) -> None:
    """Every file of one image (all the generator's per-image writes are here)."""
    name, cls = image_name(item), item["label"]
    _save(image, tmp / cls / f"{name}.png")
    _save(evidence.astype(np.uint8) * 255, tmp / "_masks" / cls / f"{name}_evidence.png")
    _save(sky.astype(np.uint8) * 255, tmp / "_masks" / cls / f"{name}_sky.png")
    _save_parts(parts, tmp / "_masks" / cls / f"{name}_parts.png")


#: Sets smaller than this are drawn in the calling process (starting workers costs ~1 s).
PARALLEL_FROM = 400
_CHUNK = 48  # images per task: cancel and progress answer within one chunk's time


def _draw_items(tmp: str, size: int, seed: int, items: list[dict]) -> int:
    """Render and write ``items`` (whole places, views in order) into ``tmp``; returns how many.
    Each image depends on (seed, class, place, view, sky, layout) alone, so any split of the
    plan into chunks, in any process, writes the same bytes."""
    scenes: dict = {}
    for item in items:
        key = [seed, item["ci"], item["place"]]
        if item["view"] == 0:
            scenes = {}
        look = (item["sky"], item["layout"])
        if look not in scenes:  # same key: same street, whatever the sky and layout
            scenes[look] = build_scene(np.random.default_rng(key), item["label"], item["sky"] == "cloudy",
                                       item["layout"])
        camera = _camera(np.random.default_rng(key + [item["view"]]), item["view"])
        _write_image(Path(tmp), item, *render(scenes[look], size, *camera))
    return len(items)


def _below_the_window() -> None:
    """A worker's start: SCHED_BATCH at +5, like the window's compute process, so that a window
    generating its demo set stays first on the CPU; and an exit when the process that started the
    pool dies (a killed window's workers otherwise wait on their task queue for ever: each holds
    the queue's write end too, so it never reads end of file)."""
    from geocam_gui.core.background import run_in_background, watch_parent

    run_in_background(5, policy="batch")
    watch_parent(lambda: os._exit(1))


def _chunks(plan: list[dict], size: int) -> list[list[dict]]:
    """The plan in runs of about ``size`` images that never split a place's views."""
    chunks: list[list[dict]] = []
    for item in plan:
        if not chunks or (item["view"] == 0 and len(chunks[-1]) >= size):
            chunks.append([])
        chunks[-1].append(item)
    return chunks


def default_workers(total: int) -> int:
    """Processes for a set of ``total`` images: the CPUs this process may use (at most 8), or 1
    for small sets."""
    if total < PARALLEL_FROM:
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


def draw_plan(tmp: Path, p: dict, plan: list[dict], workers: int, progress, cancel) -> None:
    """Every image of ``plan`` (``_plan``'s items; ``p``: the validated parameters) into ``tmp``, in
    ``workers`` processes (1: this one); ``progress(done, total)`` and ``cancel()`` as in
    ``generate_demo``."""
    total, done = len(plan), 0

    def stop_if_cancelled() -> None:
        if cancel is not None and cancel():
            raise Cancelled("Demo data generation was cancelled; nothing was written.")

    def step(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)
        stop_if_cancelled()

    stop_if_cancelled()
    if workers <= 1:  # place by place: progress and cancel after every place
        for chunk in _chunks(plan, 1):
            step(_draw_items(str(tmp), p["size"], p["seed"], chunk))
        return
    chunks = _chunks(plan, _CHUNK)
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    pool = ProcessPoolExecutor(min(workers, len(chunks)), mp_context=multiprocessing.get_context("spawn"),
                               initializer=_below_the_window)
    try:
        waiting = {pool.submit(_draw_items, str(tmp), p["size"], p["seed"], chunk) for chunk in chunks}
        while waiting:
            finished, waiting = wait(waiting, return_when=FIRST_COMPLETED)
            for future in finished:
                step(future.result())
    except BrokenProcessPool:
        raise DataError(
            "A demo generator process stopped unexpectedly (out of memory? or a script that calls "
            "generate_demo outside `if __name__ == \"__main__\":`, which worker processes re-run); "
            "nothing was written. workers=1 draws in this process.") from None
    finally:
        # Wait for the workers even on failure, so none still writes into tmp when it is removed.
        pool.shutdown(wait=True, cancel_futures=True)
