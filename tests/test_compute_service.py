"""The compute process (core/explain/service.py): same answers as in-process, latest request wins,
crashes reported and survived, no process left behind. No Qt here."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from PIL import Image

from geocam_gui.core.explain import service as svc
from geocam_gui.core.explain.store import ModelStore, explain_image

SIZE = 32
CLASSES = ["pittsburgh", "tokyo"]


@pytest.fixture(scope="module")
def assets(tmp_path_factory, torch_threads):
    import torch

    from geocam_gui.core.checkpoints import base_meta, save_checkpoint
    from geocam_gui.core.models import build_model

    root = tmp_path_factory.mktemp("compute")
    torch.manual_seed(0)
    save_checkpoint(root / "shallow" / "best", build_model("shallow", 2), base_meta("shallow", CLASSES, SIZE))
    rng = np.random.default_rng(0)
    photos = []
    for i in range(4):
        path = root / f"photo{i}.png"
        Image.fromarray(rng.integers(0, 255, (48, 40, 3), dtype=np.uint8)).save(path)
        photos.append(str(path))
    return {"ckpt": str(root / "shallow" / "best.json"), "photos": photos}


@pytest.fixture(scope="module")
def service():
    """One process for the module (each start imports torch: seconds on a busy 2-core machine),
    with the analysis room's kinds as the window's process has them."""
    s = svc.ComputeService("cpu", threads=1, jobs=("geocam_gui.core.analysis.jobs",)).start()
    yield s
    s.close()


def _wait(service, lane, timeout=120.0, seen=None):
    """The first final reply on ``lane`` other than ``superseded`` (those are kept in ``seen``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for reply in service.poll(timeout=0.5):
            if reply.lane == lane and reply.status == "superseded" and seen is not None:
                seen.append(reply.id)
            elif reply.lane == lane and reply.status not in ("progress", "superseded"):
                return reply
    raise AssertionError("no reply")


def test_explanation_equals_the_in_process_one(assets, service):
    remote = service.request("explain", "explain", path=assets["photos"][0],
                             checkpoints={"shallow": assets["ckpt"]}, method="gradcam", label="tokyo")
    local = explain_image(assets["photos"][0], {"shallow": assets["ckpt"]}, ModelStore("cpu"),
                          method="gradcam", label="tokyo")
    assert remote.errors == local.errors == {}
    np.testing.assert_array_equal(remote.image, local.image)
    (name, a), = remote.models.items()
    b = local.models[name]
    np.testing.assert_allclose(a.raw, b.raw, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.probs, b.probs, rtol=1e-5, atol=1e-6)


def test_predictions_equal_the_in_process_ones(assets, service):
    from geocam_gui.core.data.datasets import Sample
    from geocam_gui.core.explain.store import predict_samples

    samples = [Sample(path=p, label="tokyo", group=str(i), split="test", extra={}) for i, p in enumerate(assets["photos"])]
    remote = service.request("predict", "predict", checkpoint=assets["ckpt"], samples=samples, batch_size=2)
    local = predict_samples(assets["ckpt"], samples, batch_size=2)
    np.testing.assert_allclose(remote, local, rtol=1e-5, atol=1e-6)


def test_quick_requests_compute_only_the_last(assets, service):
    before = service.request("explain", "stats")  # the process is up and idle
    sleeping = service.submit("explain", "sleep", seconds=30.0)  # busy: the next ones wait
    ids = [service.submit("explain", "explain", path=p, checkpoints={"shallow": assets["ckpt"]})
           for p in assets["photos"]]
    replaced: list[int] = []
    reply = _wait(service, "explain", seen=replaced)
    assert reply.id == ids[-1] and reply.status == "result"
    assert sorted(replaced) == [sleeping, *ids[:-1]]  # every replaced request was told so, once
    assert reply.payload.path == assets["photos"][-1]
    counts = service.request("stats", "stats")
    assert counts.get("explain", 0) - before.get("explain", 0) == 1  # 3 never ran
    assert counts.get("sleep", 0) == before.get("sleep", 0)  # the sleep was stopped


def test_explanations_overtake_a_long_prediction(assets, service):
    before = service.request("explain", "stats")
    service.submit("predict", "sleep", seconds=30.0)  # stands for a long prediction pass
    service.submit("explain", "explain", path=assets["photos"][1], checkpoints={"shallow": assets["ckpt"]})
    reply = _wait(service, "explain", timeout=60)
    assert reply.status == "result"
    service.cancel("predict")
    assert service.request("explain", "stats").get("sleep", 0) == before.get("sleep", 0)


def test_a_whole_dataset_pass_lets_predictions_through_but_not_another_pass(assets, service):
    service.request("explain", "stats")  # the process is up and idle
    service.submit("analysis", "sleep", seconds=30.0)  # stands for a long analysis
    time.sleep(0.3)
    prediction = service.submit("predict-shallow", "sleep", seconds=0.1)
    reply = _wait(service, "predict-shallow", timeout=20)
    assert (reply.id, reply.status) == (prediction, "result")  # answered while the analysis runs
    service.submit("units", "sleep", seconds=0.1)  # another pass waits for the first to end
    time.sleep(1.0)
    assert not [r for r in service.poll() if r.lane == "units"]
    service.cancel("analysis")
    assert _wait(service, "units", timeout=20).status == "result"


def test_an_explanation_served_inside_a_real_prediction_still_has_gradients(assets, service, tmp_path):
    """The prediction pass runs under ``torch.inference_mode``; an explanation served between two
    of its batches must not inherit it - above all not load its model as inference tensors (found
    in the window: "Setting requires_grad=True on inference tensor" on every later CAM)."""
    import torch

    from geocam_gui.core.checkpoints import base_meta, save_checkpoint
    from geocam_gui.core.data.datasets import Sample
    from geocam_gui.core.models import build_model

    torch.manual_seed(1)
    other = str(save_checkpoint(tmp_path / "other" / "best", build_model("shallow", 2),
                                base_meta("shallow", CLASSES, SIZE)))  # not loaded in the process yet
    samples = [Sample(path=assets["photos"][i % 4], label="tokyo", group=str(i), split="test", extra={})
               for i in range(600)]
    service.submit("predict", "predict", checkpoint=assets["ckpt"], samples=samples, batch_size=1)
    deadline = time.monotonic() + 60
    while not any(r.lane == "predict" and r.status == "progress" for r in service.poll(0.5)):
        assert time.monotonic() < deadline, "the prediction never reached its batches"
    service.submit("explain", "explain", path=assets["photos"][2], checkpoints={"shallow": other},
                   method="gradcam", label="tokyo", strict=True)
    first = _wait(service, "explain", timeout=60)
    assert first.status == "result", first.payload
    again = service.request("explain", "explain", path=assets["photos"][3], checkpoints={"shallow": other},
                            method="gradcam", label="tokyo", strict=True)  # the cached model still works
    local = explain_image(assets["photos"][3], {"shallow": other}, ModelStore("cpu"), method="gradcam", label="tokyo")
    np.testing.assert_allclose(again.models["shallow"].raw, local.models["shallow"].raw, rtol=1e-5, atol=1e-6)
    service.cancel("predict")


def test_a_bad_checkpoint_is_a_sentence_in_the_result(assets, service, tmp_path):
    out = service.request("explain", "explain", path=assets["photos"][0], checkpoints={"vgg11": str(tmp_path / "none.json")})
    assert "vgg11" in out.errors and out.errors["vgg11"]
    with pytest.raises(svc.GeoCamError, match="no job"):
        service.request("explain", "nonsense")


def test_a_killed_process_is_reported_and_restarted(assets, service):
    service.request("explain", "stats")
    job = service.submit("explain", "sleep", seconds=30.0)
    time.sleep(0.3)
    os.kill(service.pid, signal.SIGKILL)
    reply = _wait(service, "explain", timeout=20)
    assert reply.id == job and reply.status == "crashed" and "stopped unexpectedly" in reply.payload
    assert not service.alive
    out = service.request("explain", "explain", path=assets["photos"][0], checkpoints={"shallow": assets["ckpt"]})
    assert out.models  # a fresh process answered


def test_protocol_messages_round_trip_through_pickle(assets):
    import pickle

    for message in [("job", 1, "explain", "explain", {"path": "a.png", "checkpoints": {"shallow": "x.json"}}, None),
                    ("cancel", "predict"), ("stop",), ("progress", 3, 10, 20, "a step"), ("result", 3, np.zeros((2, 2))),
                    ("error", 4, "A sentence."), ("superseded", 5), ("ready", 123)]:
        back = pickle.loads(pickle.dumps(message))
        assert back[0] == message[0] and len(back) == len(message)


def test_layer_lists_come_from_the_architecture_alone(service):
    import torch

    from geocam_gui.core.analysis.units import layer_choices
    from geocam_gui.core.models import build_model

    for name in ("shallow", "vgg11"):
        with torch.device("meta"):
            local = layer_choices(build_model(name, 2), name)
        assert service.request("layers", "layers", model=name) == local


def test_a_shallow_checkpoint_of_the_earlier_layout_gets_its_own_layer_names(service, tmp_path):
    import torch

    from geocam_gui.core.analysis.units import layer_choices
    from geocam_gui.core.checkpoints import save_checkpoint
    from geocam_gui.core.models import build_model

    meta = {"model": "shallow", "classes": ["a", "b"], "image_size": 32}
    old = str(save_checkpoint(tmp_path / "old" / "best", build_model("shallow", 2, legacy=True), meta))
    new = str(save_checkpoint(tmp_path / "new" / "best", build_model("shallow", 2), meta))
    with torch.device("meta"):
        want_old = layer_choices(build_model("shallow", 2, legacy=True), "shallow")
    assert want_old[0] == "features.10"  # the CAM layer: the fourth ReLU, before batch norm came
    assert service.request("layers", "layers", model="shallow", checkpoint=old) == want_old
    assert service.request("layers", "layers", model="shallow", checkpoint=new)[0] == "features.14"
    # the layout is read from the safetensors header alone; a plain PyTorch file has none: loaded whole
    plain = tmp_path / "old.pt"
    torch.save(build_model("shallow", 2, legacy=True).state_dict(), plain)
    assert service.request("layers", "layers", model="shallow", checkpoint=str(plain)) == want_old
    (tmp_path / "new" / "best.safetensors").write_bytes(b"\xff" * 64)  # a header that is not one
    with pytest.raises(svc.GeoCamError, match="best.safetensors is not a readable safetensors file"):
        service.request("layers", "layers", model="shallow", checkpoint=new)


def test_an_analysis_lets_explanations_through_and_stops_when_cancelled(assets, service, tmp_path, monkeypatch):
    """The Analysis tab's pass (kind ``analyze``) checks between batches: a waiting explanation is
    served before the pass ends, and a cancel stops it (no result, no count)."""
    from geocam_gui.core.checkpoints import base_meta, save_checkpoint
    from geocam_gui.core.data.datasets import open_data
    from geocam_gui.core.data.demo import generate_demo
    from geocam_gui.core.models import build_model

    index = open_data(generate_demo(tmp_path / "demo", per_class=16, size=40, views_per_place=2, seed=2))
    ckpt = str(save_checkpoint(tmp_path / "ck" / "shallow" / "best", build_model("shallow", 2),
                               base_meta("shallow", list(index.classes), 40)))
    before = service.request("explain", "stats")
    monkeypatch.setenv("GEOCAM_HOME", str(tmp_path / "home"))  # the job carries the sender's home
    service.submit("analysis", "analyze", checkpoints=[ckpt], index=index, split="test", method="scorecam",
                   limit=None)
    deadline = time.monotonic() + 60
    steps = []
    while not steps:
        steps = [r.payload for r in service.poll(0.5) if r.lane == "analysis" and r.status == "progress"]
        assert time.monotonic() < deadline, "the analysis never reported progress"
    done, total, text = steps[0]
    assert 0 <= done <= total and isinstance(text, str)
    service.submit("explain", "explain", path=assets["photos"][0], checkpoints={"shallow": assets["ckpt"]})
    finished = []
    deadline = time.monotonic() + 60
    while True:
        replies = service.poll(0.5)
        finished += [r for r in replies if r.lane == "analysis" and r.status != "progress"]
        explained = [r for r in replies if r.lane == "explain"]
        if explained:
            break
        assert time.monotonic() < deadline, "the explanation waited for the whole analysis"
    assert explained[0].status == "result" and not finished  # served between two batches of the pass
    service.cancel("analysis")
    after = service.request("explain", "stats")
    assert after.get("analyze", 0) == before.get("analyze", 0)  # stopped, never finished
    assert after.get("explain", 0) == before.get("explain", 0) + 1
    assert not (tmp_path / "home" / "cache" / "analysis" / "reports").exists()
    assert (tmp_path / "home" / "cache").is_dir()  # its caches went to the sender's home


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # a zombie of an already dead parent is reaped by init; treat "Z" as gone
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def test_closing_leaves_no_process():
    service = svc.ComputeService("cpu", threads=1).start()
    pid = service.pid
    service.request("explain", "stats")
    service.close()
    assert _gone(pid)


def test_the_child_exits_when_its_parent_is_killed(tmp_path):
    script = textwrap.dedent("""
        import sys, time
        from geocam_gui.core.explain.service import ComputeService
        s = ComputeService("cpu", threads=1).start()
        s.request("explain", "stats")
        print(s.pid, flush=True)
        time.sleep(120)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        assert not _gone(child)
        parent.kill()
        parent.wait(10)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not _gone(child):
            time.sleep(0.1)
        assert _gone(child), "the compute process outlived its parent by 5 s"
    finally:
        parent.kill()


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="SCHED_BATCH is Linux's")
def test_the_compute_process_runs_below_the_window(assets, service):
    """On a CPU the compute process never pre-empts the window but keeps its share of a busy
    CPU (core/background.py: SCHED_BATCH at nice +5), every thread of it, torch's included."""
    service.submit("stats", "stats")
    _wait(service, "stats")
    tids = os.listdir(f"/proc/{service.pid}/task")
    assert tids and all(os.sched_getscheduler(int(t)) == os.SCHED_BATCH for t in tids)
    assert all(os.getpriority(os.PRIO_PROCESS, int(t)) == os.getpriority(os.PRIO_PROCESS, 0) + 5 for t in tids)
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the window's process keeps its priority
