"""Training in a child process, reporting through a queue (used by the GUI).

A training thread in the GUI's own process shares the GIL with the GUI thread; model building,
cache decoding and checkpoint serialisation hold it for 100-300 ms at a time, which freezes
the window. In a child process the GUI keeps its interpreter to itself.

Messages put on ``events`` (all picklable):
``("started", model, i, total)``, ``("event", model, kind, data)`` for every engine event,
``("finished", model, TrainResult)``, ``("failed", model, message)``, ``("cancelled",)`` and,
always last, ``("done",)``.
"""

from __future__ import annotations

import threading


def run_queue(configs: list, index, out_dir, events, cancel, pause) -> None:
    """Train ``configs`` one after the other (child-process entry point).

    ``cancel`` and ``pause`` are ``multiprocessing.Event`` objects set by the parent; they act
    within one batch, as ``Trainer.cancel()`` / ``pause()`` do.
    """
    import os

    from geocam_gui.core.errors import GeoCamError
    from geocam_gui.core.train.engine import Trainer

    try:  # below the GUI's priority: the window stays responsive while training fills the CPU
        os.nice(5)
    except (AttributeError, OSError):
        pass
    try:
        for i, config in enumerate(configs):
            if cancel.is_set():
                events.put(("cancelled",))
                break
            name = config.model

            def callback(ev, _name=name) -> None:
                events.put(("event", _name, ev.kind, dict(ev.data)))

            try:
                trainer = Trainer(config, index, out_dir, callback=callback)
            except GeoCamError as exc:
                events.put(("failed", name, str(exc)))
                continue
            stop = threading.Event()
            watcher = threading.Thread(target=_relay_controls, args=(trainer, cancel, pause, stop), daemon=True)
            watcher.start()
            events.put(("started", name, i, len(configs)))
            try:
                result = trainer.run()
            except GeoCamError as exc:
                events.put(("failed", name, str(exc)))
                continue
            except Exception as exc:  # noqa: BLE001 - reported to the GUI, which logs it
                events.put(("failed", name, f"{type(exc).__name__}: {exc}"))
                continue
            finally:
                stop.set()
                watcher.join()
            if result.status == "cancelled" or cancel.is_set():
                events.put(("cancelled",))
                break
            events.put(("finished", name, result))
    finally:
        events.put(("done",))


def _relay_controls(trainer, cancel, pause, stop: threading.Event) -> None:
    """Pass the parent's cancel/pause flags on to the trainer (polled every 50 ms)."""
    paused = False
    while not stop.wait(0.05):
        if cancel.is_set():
            trainer.cancel()
            return
        if pause.is_set() != paused:
            paused = pause.is_set()
            (trainer.pause if paused else trainer.resume)()
