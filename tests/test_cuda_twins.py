"""CPU twins of the CUDA-only code paths (issue 19): inside ``device.cuda_twin()`` the CPU takes the
branches written for CUDA - bf16 autocast, channels_last, the device-resident data copy, the
deferred NaN checks, the out-of-memory fallbacks - and each is checked against the plain CPU path
as the reference. Only the lines that call the CUDA runtime itself stay for ``gpu_check``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geocam_gui.core import device as devmod
from geocam_gui.core.device import cuda_twin, ddp_backend, ddp_device, gpu_path
from geocam_gui.core.errors import BadArgument, GeoCamError
from geocam_gui.core.train import loader as loader_mod
from geocam_gui.core.train import loop as training_loop
from geocam_gui.core.train.config import DEMO_CPU_RECIPES, TrainConfig, default_config, demo_config
from geocam_gui.core.train.engine import Trainer
from geocam_gui.core.train.loader import BatchFeeder

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory):
    from geocam_gui.core.data.demo import generate_demo

    return generate_demo(tmp_path_factory.mktemp("twin") / "tiny", per_class=16, size=32, views_per_place=2, seed=3)


@pytest.fixture
def tiny_index(tiny_demo):
    from geocam_gui.core.data.datasets import open_data

    return open_data(tiny_demo)


@pytest.fixture(autouse=True)
def _no_leftover_faults():
    training_loop.INJECT_OOM.clear()
    yield
    training_loop.INJECT_OOM.clear()


def _config(**kw) -> TrainConfig:
    base = dict(model="shallow", epochs=1, batch_size=8, lr=1e-3, image_size=32, device="cpu", seed=1)
    base.update(kw)
    return TrainConfig(**base)


def _logs(events):
    return [e.data["message"] for e in events if e.kind == "log"]


# --------------------------------------------------------------------------- the switch itself
def test_gpu_path_is_cuda_or_the_cpu_inside_the_twin():
    assert not gpu_path(CPU) and gpu_path(torch.device("cuda", 0)) and not gpu_path("mps")
    with cuda_twin():
        assert gpu_path(CPU) and gpu_path("cpu") and not gpu_path("mps")
        with cuda_twin(False):
            assert not gpu_path(CPU)
        assert gpu_path(CPU)
    assert not gpu_path(CPU)
    assert devmod.free_memory(CPU) > 0
    devmod.release_cached_memory(CPU)  # a no-op off CUDA, and no error


def test_ddp_backend_and_rank_device_selection():
    assert ddp_backend("auto", cuda_available=True) == "nccl"
    assert ddp_backend("cuda:1", cuda_available=True) == "nccl"
    assert ddp_backend(" CPU ", cuda_available=True) == "gloo"
    assert ddp_backend("auto", cuda_available=False) == "gloo"
    assert ddp_backend(None, cuda_available=False) == "gloo"
    assert ddp_device("nccl", 3) == torch.device("cuda", 3)
    assert ddp_device("gloo", 3) == CPU


def test_ddp_setup_joins_nccl_on_its_local_gpu_and_gloo_on_the_cpu(monkeypatch):
    import torch.distributed as dist

    calls = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend: calls.append(("init", backend)))
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: calls.append(("set_device", i)))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert training_loop.ddp_setup("auto") is True
    assert calls == [("set_device", 1), ("init", "nccl")]
    calls.clear()
    assert training_loop.ddp_setup("cpu") is True
    assert calls == [("init", "gloo")]

    def refuse(backend):
        raise RuntimeError("connection refused")

    monkeypatch.setattr(dist, "init_process_group", refuse)
    with pytest.raises(GeoCamError, match="torchrun rendezvous"):
        training_loop.ddp_setup("cpu")


def test_device_resolution_logic_with_a_faked_cuda_runtime(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=None: "Fake GPU")
    assert devmod.resolve_device("auto") == torch.device("cuda", 0)
    assert devmod.resolve_device("cuda") == torch.device("cuda", 0)
    assert devmod.resolve_device("CUDA:1") == torch.device("cuda", 1)
    with pytest.raises(BadArgument, match="has 2 CUDA device"):
        devmod.resolve_device("cuda:5")
    assert [d for d, _ in devmod.available_devices()][:3] == ["auto", "cuda:0", "cuda:1"]
    assert devmod.describe_device(torch.device("cuda", 1)) == "cuda:1 (Fake GPU)"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(BadArgument, match="no CUDA GPU"):
        devmod.resolve_device("cuda")


def test_gpu_defaults_are_chosen_on_the_twin():
    with cuda_twin():
        cfg = default_config("resnet18", "cpu")
        assert (cfg.image_size, cfg.batch_size, cfg.amp, cfg.channels_last) == (224, 128, True, True)
        demo = demo_config("shallow", "cpu")
        assert (demo.image_size, demo.batch_size, demo.epochs) == (224, 128, 10)
    plain = demo_config("shallow", "cpu")
    assert plain.image_size == DEMO_CPU_RECIPES["shallow"]["image_size"]


# --------------------------------------------------------------------------- bf16 autocast
def test_autocast_is_bf16_where_the_device_computes_bf16(monkeypatch):
    conv = torch.nn.Conv2d(3, 4, 3).requires_grad_(False)
    x = torch.randn(2, 3, 8, 8)
    monkeypatch.setattr(devmod, "_cpu_bf16", lambda: False)  # a CPU that would emulate bf16
    assert not devmod.bf16_native(CPU) and not devmod.bf16_native("mps")
    with cuda_twin():
        assert devmod.bf16_native(CPU)
    monkeypatch.setattr(devmod, "_cpu_bf16", lambda: True)  # AVX512-BF16 or AMX
    assert devmod.bf16_native(CPU)
    with training_loop._autocast(CPU, False):
        assert conv(x).dtype == torch.float32
    with training_loop._autocast(CPU, True):
        low = conv(x)
    assert low.dtype == torch.bfloat16
    ref = conv(x)
    assert torch.allclose(low.float(), ref, atol=0.05 * float(ref.abs().max()))


# --------------------------------------------------------------------------- device-resident feeder
def _arrays(n=10, s=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, s, s, 3), dtype=np.uint8), rng.integers(0, 2, n)


def test_resident_feeder_on_the_twin_gives_the_host_feeders_batches():
    images, labels = _arrays()
    host = BatchFeeder(images, labels, CPU)
    assert not host.resident
    with cuda_twin():
        res = BatchFeeder(images, labels, CPU, channels_last=True)
        never = BatchFeeder(images, labels, CPU, resident=False)
    assert res.resident and not never.resident
    assert res._gpu.data_ptr() != torch.from_numpy(images).data_ptr()  # its own copy, like the GPU's
    idx = torch.tensor([7, 1, 4])
    x_ref, y_ref = host.batch(idx)
    x, y = res.batch(idx)
    assert torch.equal(x, x_ref) and torch.equal(y, y_ref)
    assert x.is_contiguous(memory_format=torch.channels_last)
    # resident data skip the gathering threads: staged is None
    assert [s for _p, _i, s in res.iterate(torch.arange(10), 4, workers=2)] == [None, None, None]
    with cuda_twin():
        from_tensor = BatchFeeder(torch.from_numpy(images), labels, CPU)
    assert from_tensor.resident and torch.equal(from_tensor.batch(idx)[0], x_ref)


def test_resident_feeder_falls_back_to_the_host_when_memory_is_short(monkeypatch):
    images, labels = _arrays()
    released = []
    monkeypatch.setattr(loader_mod, "release_cached_memory", lambda d: released.append(d))
    with cuda_twin():
        monkeypatch.setattr(loader_mod, "free_memory", lambda d: images.nbytes)  # 35 % of it is too little
        assert not BatchFeeder(images, labels, CPU).resident
        assert BatchFeeder(images, labels, CPU, resident=True).resident  # forced
        monkeypatch.setattr(loader_mod, "free_memory", lambda d: 100 * images.nbytes)

        def oom(self, imgs):
            raise torch.OutOfMemoryError("CUDA out of memory (simulated upload)")

        monkeypatch.setattr(BatchFeeder, "_upload", oom)
        feeder = BatchFeeder(images, labels, CPU)
    assert not feeder.resident and released == [CPU]
    x, y = feeder.batch(torch.tensor([0, 2]))
    assert x.shape == (2, 3, 8, 8) and torch.equal(y, torch.as_tensor(labels[[0, 2]]))


# --------------------------------------------------------------------------- the whole loop on the twin
class _Probe:
    """Records the dtype and memory format the model saw (``dtypes``: training steps, ``eval_dtypes``:
    the validation passes, then the test pass), and the feeders the loop built."""

    def __init__(self, monkeypatch):
        self.dtypes, self.eval_dtypes, self.cl_inputs, self.cl_weights, self.feeders = [], [], [], [], []
        real_build, real_feeder = training_loop.build_model, training_loop.BatchFeeder
        probe = self

        def build(*a, **kw):
            net = real_build(*a, **kw)
            first = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))

            def hook(mod, inputs, out):
                (probe.dtypes if torch.is_grad_enabled() else probe.eval_dtypes).append(out.dtype)
                probe.cl_inputs.append(inputs[0].is_contiguous(memory_format=torch.channels_last))
                probe.cl_weights.append(mod.weight.is_contiguous(memory_format=torch.channels_last))

            first.register_forward_hook(hook)
            return net

        def feeder(*a, **kw):
            f = real_feeder(*a, **kw)
            probe.feeders.append(f)
            return f

        monkeypatch.setattr(training_loop, "build_model", build)
        monkeypatch.setattr(training_loop, "BatchFeeder", feeder)


def _assert_val_bf16_test_float32(dtypes: list, n_test: int, bf16: bool = True) -> None:
    """Validation (it only picks the epoch) runs as training does; the test pass, whose numbers
    are reported, in float32 (one batch here: the tiny set's test split fits in one)."""
    assert n_test <= 16 and dtypes[-1] == torch.float32
    assert set(dtypes[:-1]) == {torch.bfloat16 if bf16 else torch.float32}, dtypes


def test_training_on_the_twin_uses_bf16_channels_last_and_resident_data(tiny_index, tmp_path, monkeypatch,
                                                                        torch_threads):
    ref = Trainer(_config(), tiny_index, tmp_path / "plain").run()
    probe = _Probe(monkeypatch)
    with cuda_twin():
        res = Trainer(_config(), tiny_index, tmp_path / "twin").run()
    assert res.status == "finished" and ref.status == "finished"
    assert set(probe.dtypes) == {torch.bfloat16}
    _assert_val_bf16_test_float32(probe.eval_dtypes, res.test["n"])
    assert all(probe.cl_inputs) and all(probe.cl_weights)
    assert probe.feeders and all(f.resident for f in probe.feeders)
    # The same run in bf16: the same batches and order, so the loss moves the same way.
    a, b = ref.history[0]["train_loss"], res.history[0]["train_loss"]
    assert abs(a - b) < 0.05 * a, (a, b)
    assert res.test["n"] == ref.test["n"]


def test_a_bf16_cpu_trains_in_bf16_unless_float32_is_asked(tiny_index, tmp_path, monkeypatch, torch_threads):
    import argparse

    from geocam_gui.commands.train import add_arguments, build_configs

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    for flags, amp, want in (([], True, torch.bfloat16), (["--float32"], False, torch.float32)):
        cfg = build_configs(parser.parse_args(["DATA", "--model", "shallow", "--device", "cpu", "--epochs", "1",
                                               "--batch-size", "8", "--image-size", "32", *flags]))[0]
        assert cfg.amp is amp
        for native in (True, False):  # AVX512-BF16/AMX, or a CPU that would emulate bf16
            monkeypatch.setattr(devmod, "_cpu_bf16", lambda native=native: native)
            probe = _Probe(monkeypatch)
            res = Trainer(cfg, tiny_index, tmp_path / f"{amp}-{native}").run()
            assert res.status == "finished"
            assert set(probe.dtypes) == {want if native else torch.float32}, (flags, native)
            _assert_val_bf16_test_float32(probe.eval_dtypes, res.test["n"], bf16=want == torch.bfloat16 and native)
            assert all(probe.cl_inputs) and all(probe.cl_weights)  # channels_last on the CPU too


def test_nan_is_caught_on_the_twin_without_a_sync_per_batch(tiny_index, tmp_path, monkeypatch):
    monkeypatch.setattr(training_loop, "augment", lambda x, cfg, gen: x * float("nan"))
    events = []
    with cuda_twin(), pytest.raises(GeoCamError, match="NaN"):
        Trainer(_config(), tiny_index, tmp_path, events.append).run()
    assert events[-1].kind == "failed"
    assert not (tmp_path / "shallow" / "last.json").exists()


# --------------------------------------------------------------------------- out of memory
@pytest.mark.parametrize("twin", [False, True], ids=["cpu", "twin"])
def test_injected_oom_halves_the_batch_and_the_run_goes_on(tiny_index, tmp_path, twin):
    training_loop.INJECT_OOM.add((1, 2))  # epoch 1, batch 2
    events = []
    with cuda_twin(twin):
        result = Trainer(_config(batch_size=8), tiny_index, tmp_path, events.append).run()
    assert result.status == "finished" and not training_loop.INJECT_OOM
    assert result.history[0]["batch_size"] == 4
    assert any("ran out of memory; retrying at batch size 4" in m for m in _logs(events))
    n_train = len(tiny_index.split("train"))
    batches = [e.data for e in events if e.kind == "batch"]
    # one full batch of 8 before the failure, then batches of 4 over the rest: every image once
    assert batches[-1]["batch"] == 1 + (n_train - 8) // 4, (n_train, batches[-1])


def test_injected_oom_while_evaluating_halves_the_batch_and_counts_the_same(tiny_index):
    from geocam_gui.core.models import build_model
    from geocam_gui.core.train.loop import decode_split, eval_confusion

    data = decode_split(tiny_index.split("val"), 32, list(tiny_index.classes))
    torch.manual_seed(0)
    model = build_model("shallow", 2).eval()
    feeder = BatchFeeder(data.images, data.labels, CPU)
    ref_conf, ref_loss = eval_confusion(model, feeder, 2, 8, data.positions)
    training_loop.INJECT_OOM.add(("eval", training_loop._eval_batches[0] + 1))
    conf, loss = eval_confusion(model, feeder, 2, 8, data.positions)
    assert not training_loop.INJECT_OOM
    assert torch.equal(conf, ref_conf) and loss == pytest.approx(ref_loss, rel=1e-6)
    training_loop.INJECT_OOM.update({("eval", training_loop._eval_batches[0] + k) for k in range(1, 6)})
    with pytest.raises(GeoCamError, match="even one image at a time"):
        eval_confusion(model, feeder, 2, 8, data.positions)


# --------------------------------------------------------------------------- CAMs
def test_cams_on_the_twin_equal_the_cpu_maps_and_still_refuse_nan():
    from geocam_gui.core.explain.cam import compute_cams, explain
    from geocam_gui.core.models import build_model, target_layer

    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    for name in ("shallow", "resnet18"):
        model = build_model(name, 2).eval()
        ref = explain(model, name, images)
        with cuda_twin():
            twin = explain(model, name, images)
        assert torch.equal(twin.maps, ref.maps) and torch.equal(twin.logits, ref.logits)
    bad = torch.zeros(2, 3, 32, 32)
    bad[1, 0, 3, 3] = float("nan")
    model = build_model("shallow", 2).eval()
    with cuda_twin(), pytest.raises(BadArgument, match="NaN"):
        compute_cams(model, bad, target_layer(model, "shallow"))


def test_determinism_settings_of_the_gpu_path(monkeypatch):
    from types import SimpleNamespace

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    before = torch.are_deterministic_algorithms_enabled()
    stub = SimpleNamespace(cfg=SimpleNamespace(deterministic=True))
    try:
        with cuda_twin():
            training_loop.TrainingLoop._determinism(stub, CPU)
            assert torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.benchmark
            assert __import__("os").environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
            stub.cfg.deterministic = False
            training_loop.TrainingLoop._determinism(stub, CPU)
            assert torch.backends.cudnn.benchmark  # autotuned kernels when exactness is not asked for
    finally:
        torch.use_deterministic_algorithms(before)


def test_evaluate_runs_in_float32_on_every_device_and_counts_every_image(tiny_index, monkeypatch):
    from geocam_gui.core.models import build_model
    from geocam_gui.core.train.engine import evaluate

    monkeypatch.setattr(devmod, "_cpu_bf16", lambda: True)  # a CPU that computes bf16 natively

    torch.manual_seed(0)
    model = build_model("shallow", 2).eval()
    seen = []
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    first.register_forward_hook(lambda mod, i, out: seen.append(out.dtype))
    ref = evaluate(model, tiny_index, "test", device="cpu", image_size=32)
    assert set(seen) == {torch.float32}
    seen.clear()
    with cuda_twin():
        twin = evaluate(model, tiny_index, "test", device="cpu", image_size=32)
    assert set(seen) == {torch.float32}  # reported numbers: no near-tie flipped by bf16
    assert twin["n"] == ref["n"] == len(tiny_index.split("test"))
    assert sum(map(sum, twin["confusion"])) == ref["n"]
    assert twin["confusion"] == ref["confusion"]
