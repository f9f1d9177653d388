"""The contract between the training child process and the GUI's relay (core/train/child.py).

What goes over the queue must survive pickling unchanged, arrive in the documented order, and
end with ``Done`` whatever happened.
"""

from __future__ import annotations

import dataclasses
import pickle
import queue
import threading
from pathlib import Path

import pytest

from geocam_gui.core.train import child
from geocam_gui.core.train import events as ev
from geocam_gui.core.train.config import TrainConfig

SAMPLES = {
    ev.Start: dict(model="shallow", config=TrainConfig().to_dict(), device="CPU", classes=["a", "b"], n_train=4,
                   n_val=2, n_test=2, epochs=2, start_epoch=0, world=1, batches=2, run_dir="/r"),
    ev.Batch: dict(epoch=1, epochs=2, batch=1, batches=2, loss=0.69, acc=0.5, images_per_s=10.0, eta_s=1.0, lr=1e-3),
    ev.Epoch: dict(model="shallow", epoch=1, epochs=2, train_loss=0.6, train_acc=0.6, val_loss=0.7, val_acc=0.5,
                   images_per_s=9.5, seconds=1.2, lr=1e-3, batch_size=8, improved=True, best_epoch=1,
                   best_val_acc=0.5, eta_s=1.0),
    ev.Checkpoint: dict(which="best", path="/r/shallow/best.json", epoch=1, test=True),
    ev.Finished: dict(model="shallow", best_checkpoint="/r/shallow/best.json", best_epoch=1, best_val_acc=0.5,
                      test={"accuracy": 0.5, "confusion": [[1, 0], [1, 0]]}, seconds=3.0),
    ev.Failed: dict(message="The validation loss became NaN."),
    ev.Cancelled: dict(message="Training was cancelled during epoch 2.", epoch=2),
    ev.Log: dict(message="Paused.", extra={"paused": True}),
}


def test_every_event_kind_has_a_sample_and_round_trips_through_pickling():
    assert set(SAMPLES) == set(ev.EVENT_TYPES)
    assert len(set(ev.EVENT_KINDS)) == len(ev.EVENT_KINDS) == 8
    for cls, fields in SAMPLES.items():
        event = cls(**fields)
        msg = child.ModelEvent("shallow", event)
        back = pickle.loads(pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL))
        assert back == msg and type(back.event) is cls and back.event.kind == cls.kind
        with pytest.raises(dataclasses.FrozenInstanceError):
            event.message = "changed"  # type: ignore[misc]
    assert ev.Log("Paused.", {"paused": True}).data == {"message": "Paused.", "paused": True}
    assert ev.Checkpoint("last", "/p", 3).data == {"which": "last", "path": "/p", "epoch": 3, "test": False}


def test_result_error_and_control_messages_round_trip():
    result = ev.TrainResult("finished", "shallow", Path("/r/shallow"), Path("/r/shallow/best.json"), None, 1, 2,
                            [{"epoch": 1}], {"accuracy": 1.0}, 2.5)
    for msg in (child.ModelStarted("vgg11", 1, 3), child.ModelFinished("shallow", result),
                child.ModelFailed("resnet18", "Out of memory."), child.RunCancelled(), child.Done()):
        assert pickle.loads(pickle.dumps(msg)) == msg
    assert set(child.MESSAGE_TYPES) == {child.ModelStarted, child.ModelEvent, child.ModelFinished,
                                        child.ModelFailed, child.RunCancelled, child.Done}


class _FakeTrainer:
    """Stands in for the engine: emits one of each progress event, or fails, or is cancelled."""

    script: dict = {}

    def __init__(self, config, index, out_dir, callback=None):
        self.config, self.callback = config, callback
        if self.script.get(config.model) == "bad-config":
            from geocam_gui.core.errors import BadArgument

            raise BadArgument("Bad setting.")

    def cancel(self):
        pass

    def pause(self):
        pass

    def resume(self):
        pass

    def run(self):
        what = self.script.get(self.config.model, "ok")
        self.callback(ev.Log("Decoding.", {"split": "train"}))
        if what == "crash":
            raise RuntimeError("boom")
        self.callback(ev.Batch(1, 1, 1, 1, 0.5, 1.0, 1.0, 0.0, 1e-3))
        if what == "cancel":
            return ev.TrainResult("cancelled", self.config.model, Path("."), None, None, None, 0, [], None, 0.0)
        return ev.TrainResult("finished", self.config.model, Path("."), None, None, 1, 1, [], None, 0.0)


def _run(monkeypatch, models, script):
    from geocam_gui.core.train import engine

    monkeypatch.setattr(engine, "Trainer", _FakeTrainer)
    # the child lowers its priority; this process must not
    monkeypatch.setattr("geocam_gui.core.background.run_in_background", lambda *a, **k: "unchanged")
    monkeypatch.setattr(_FakeTrainer, "script", script)
    q: queue.Queue = queue.Queue()
    configs = [TrainConfig(model=m) for m in models]
    child.run_queue(configs, None, "/tmp/x", q, threading.Event(), threading.Event())
    out = []
    while not q.empty():
        msg = q.get()
        out.append(pickle.loads(pickle.dumps(msg)))  # as a multiprocessing queue delivers it
    return out


def test_message_order_per_model_and_done_last(monkeypatch):
    msgs = _run(monkeypatch, ["shallow", "vgg11", "resnet18"],
                {"vgg11": "crash", "resnet18": "bad-config"})
    kinds = [(type(m).__name__, getattr(m, "model", None)) for m in msgs]
    assert kinds == [
        ("ModelStarted", "shallow"), ("ModelEvent", "shallow"), ("ModelEvent", "shallow"), ("ModelFinished", "shallow"),
        ("ModelStarted", "vgg11"), ("ModelEvent", "vgg11"), ("ModelFailed", "vgg11"),
        ("ModelFailed", "resnet18"),
        ("Done", None),
    ]
    assert msgs[4] == child.ModelStarted("vgg11", 1, 3)
    assert msgs[6].message == "RuntimeError: boom"
    assert msgs[7].message == "Bad setting."
    assert isinstance(msgs[2].event, ev.Batch) and msgs[3].result.status == "finished"


def test_a_cancelled_model_ends_the_queue(monkeypatch):
    msgs = _run(monkeypatch, ["shallow", "vgg11"], {"shallow": "cancel"})
    assert [type(m).__name__ for m in msgs] == ["ModelStarted", "ModelEvent", "ModelEvent", "RunCancelled", "Done"]
