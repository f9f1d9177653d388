"""The CAM engine against grad-cam 1.5.7 (the oracle) and against library-free identities.

Inputs are 64 px and batches tiny so the whole file stays well under a minute on 2 cores.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from geocam_gui.core.explain import cam as cam_mod
from geocam_gui.core.explain.cam import (
    CamResult,
    class_probabilities,
    compute_cams,
    explain,
    normalize_maps,
)
from geocam_gui.core.errors import BadArgument
from geocam_gui.core.models import MODEL_NAMES, build_model, preprocess, target_layer

SIZE = 64
GRAD_METHODS = ("gradcam", "gradcam++", "xgradcam", "layercam", "hirescam")


def _images(n: int, seed: int, size: int = SIZE) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g)


def _trained(name: str) -> nn.Module:
    """A few SGD steps on a learnable toy task (a bright corner means class 1): weights, BN
    statistics and gradients no longer look like a fresh initialisation."""
    torch.manual_seed(1)
    model = build_model(name, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    g = torch.Generator().manual_seed(2)
    model.train()
    for _ in range(2):
        x = torch.randn(4, 3, 32, 32, generator=g)
        y = torch.arange(4) % 2
        x[y == 1, :, :8, :8] += 2.0
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    return model.eval()


@pytest.fixture(scope="module")
def models(torch_threads):
    out = {}
    for name in MODEL_NAMES:
        torch.manual_seed(0)
        out[(name, "random")] = build_model(name, 2).eval()
        out[(name, "trained")] = _trained(name)
    return out


_ORACLE = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
    "hirescam": "HiResCAM",
    "scorecam": "ScoreCAM",
}


def _oracle(method: str, model: nn.Module, layer: nn.Module, x: torch.Tensor, classes) -> np.ndarray:
    """grad-cam 1.5.7's maps (B, C, H, W) through its public API, one call per class."""
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with getattr(pgc, _ORACLE[method])(model=model, target_layers=[layer]) as explainer:
        maps = [explainer(x, [ClassifierOutputTarget(k)] * x.shape[0]) for k in classes]
    model.zero_grad(set_to_none=True)  # grad-cam fills parameter .grad; later tests check ours does not
    return np.stack(maps, axis=1)


class _Recorded:
    """What grad-cam's hook holder recorded in the last call; ``release`` has nothing to undo."""

    def __init__(self, holder):
        self.activations = list(holder.activations)
        self.gradients = list(holder.gradients)

    def release(self) -> None:
        pass


def _oracle_all_gradient_methods(model: nn.Module, layer: nn.Module, x: torch.Tensor, classes) -> dict:
    """grad-cam 1.5.7's maps for every gradient method. Each class costs grad-cam a full forward
    and backward, so they are run once per class through ``GradCAM.__call__`` (its public path)
    and grad-cam's own per-method code (``compute_cam_per_layer``: weights, ReLU, min-max, cv2
    resize; ``aggregate_multi_layers``: the final min-max) is applied to the activations and
    gradients that call recorded. Same numbers as one public call per method, 5x cheaper."""
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    out: dict[str, list[np.ndarray]] = {m: [] for m in GRAD_METHODS}
    with pgc.GradCAM(model=model, target_layers=[layer]) as base:
        for k in classes:
            targets = [ClassifierOutputTarget(k)] * x.shape[0]
            out["gradcam"].append(base(x, targets))
            for method in GRAD_METHODS[1:]:
                cls = getattr(pgc, _ORACLE[method])
                other = cls.__new__(cls)
                other.__dict__.update(base.__dict__)
                other.activations_and_grads = _Recorded(base.activations_and_grads)
                per_layer = other.compute_cam_per_layer(x, targets, False)
                out[method].append(other.aggregate_multi_layers(per_layer))
    model.zero_grad(set_to_none=True)
    return {m: np.stack(v, axis=1) for m, v in out.items()}


# --------------------------------------------------------------------------- the oracle


@pytest.mark.parametrize("weights", ["random", "trained"])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_matches_grad_cam_for_every_method(models, name, weights):
    """Normalised maps equal grad-cam 1.5.7's within 1e-4 at the input size (grad-cam: ReLU,
    min-max, cv2 bilinear resize, min-max again; ours the same without its absolute epsilon)."""
    model = models[(name, weights)]
    layer = target_layer(model, name)
    x = _images(2, seed=10)
    oracle = _oracle_all_gradient_methods(model, layer, x, [0, 1])
    for method in GRAD_METHODS:
        ours = compute_cams(model, x, layer, method=method)
        ref = oracle[method]
        assert ours.maps.shape == ref.shape == (2, 2, SIZE, SIZE)
        assert ours.classes == [0, 1] and ours.method == method
        flat = ref.reshape(4, -1)
        # the comparison must not be trivial: most maps have structure
        assert (flat.max(1) - flat.min(1) > 0.5).sum() >= 2, (method, flat.max(1))
        diff = np.abs(ours.maps.numpy() - ref).max()
        assert diff <= 1e-4, f"{name}/{weights}/{method}: max |diff| {diff:.2e}"


def test_scorecam_matches_grad_cam(models):
    """Score-CAM, batched over channels and classes, equals grad-cam's channel-by-channel loop."""
    model = models[("shallow", "trained")]
    layer = model.features[6]  # ReLU of the second stage: 64 channels, two chunks of masked inputs
    x = _images(2, seed=11, size=32)
    ours = compute_cams(model, x, layer, method="scorecam")
    ref = _oracle("scorecam", model, layer, x, [0, 1])
    assert (ref.reshape(4, -1).max(1) > 0.5).all()
    assert np.abs(ours.maps.numpy() - ref).max() <= 1e-4


# --------------------------------------------------------------------------- identities


@pytest.mark.parametrize("weights", ["random", "trained"])
def test_resnet_analytic_path_equals_autograd(models, monkeypatch, weights):
    """GAP + linear head: W[k]/(h*w) without a backward gives the autograd gradients' maps."""
    model = models[("resnet18", weights)]
    layer = target_layer(model, "resnet18")
    x = _images(2, seed=12)
    calls = []
    real = cam_mod._autograd_gradients
    monkeypatch.setattr(cam_mod, "_autograd_gradients", lambda *a: calls.append(1) or real(*a))
    analytic = {m: compute_cams(model, x, layer, method=m) for m in GRAD_METHODS}
    assert not calls, "the ResNet head should have been recognised (no backward)"
    monkeypatch.setattr(cam_mod, "_gap_linear_head", lambda model, layer: None)
    for method in GRAD_METHODS:
        auto = compute_cams(model, x, layer, method=method)
        a = analytic[method]
        scale = a.raw.abs().max()
        assert torch.allclose(auto.raw, a.raw, atol=1e-5 * float(scale), rtol=1e-4), method
        assert (auto.maps - a.maps).abs().max() <= 1e-4, method
    assert len(calls) == len(GRAD_METHODS)


def test_analytic_path_refuses_a_head_it_does_not_know(models):
    """A ResNet whose forward changes the logits after fc must not use the analytic path."""
    base = models[("resnet18", "trained")]

    class Doubled(type(base)):
        def forward(self, x):
            return super().forward(x) * torch.tensor([1.0, 3.0])

    model = copy.deepcopy(base)
    model.__class__ = Doubled
    x = _images(2, seed=13)
    r = compute_cams(model, x, model.layer4[-1], method="gradcam", normalize="none")
    plain = compute_cams(base, x, base.layer4[-1], method="gradcam", normalize="none")
    assert torch.allclose(r.raw[:, 0], plain.raw[:, 0], atol=1e-6)
    assert torch.allclose(r.raw[:, 1], 3 * plain.raw[:, 1], atol=1e-5)


class _Shifted(nn.Module):
    def __init__(self, inner: nn.Module, shift: float):
        super().__init__()
        self.inner = inner
        self.shift = shift

    def forward(self, x):
        return self.inner(x) + self.shift


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_maps_invariant_to_a_constant_added_to_every_logit(models, name):
    model = models[(name, "trained")]
    layer = target_layer(model, name)
    wrapped = _Shifted(model, 7.25)
    x = _images(2, seed=14)
    for method in GRAD_METHODS:
        a = compute_cams(model, x, layer, method=method)
        b = compute_cams(wrapped, x, layer, method=method)
        assert torch.allclose(b.logits, a.logits + 7.25, atol=1e-4)
        assert (a.maps - b.maps).abs().max() <= 1e-4, method


def test_in_place_relu_after_the_layer_changes_nothing(models):
    """Explaining a layer whose output an in-place ReLU overwrites (the last batch norm): same maps as
    without in-place."""
    model = models[("shallow", "trained")]
    no_inplace = copy.deepcopy(model)
    for m in no_inplace.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    x = _images(2, seed=15)
    for method in ("gradcam", "hirescam"):
        a = compute_cams(model, x, model.features[-3], method=method, normalize="none")
        b = compute_cams(no_inplace, x, no_inplace.features[-3], method=method, normalize="none")
        assert torch.equal(a.logits, b.logits)
        assert torch.allclose(a.raw, b.raw, atol=1e-6)
        assert (a.raw < 0).any(), "a batch norm output has negative values: the ReLU did not leak into it"
        ref = _oracle(method, no_inplace, no_inplace.features[-3], x, [0, 1])
        assert np.abs(compute_cams(model, x, model.features[-3], method=method).maps.numpy() - ref).max() <= 1e-4


def test_one_forward_and_batch_independence(models):
    model = models[("vgg11", "trained")]
    layer = target_layer(model, "vgg11")
    x = _images(3, seed=16)
    calls = []
    h = model.register_forward_hook(lambda *a: calls.append(1))
    try:
        full = compute_cams(model, x, layer)
    finally:
        h.remove()
    assert len(calls) == 1
    one = compute_cams(model, x[1:2], layer, classes=[1])
    assert one.classes == [1] and one.maps.shape == (1, 1, SIZE, SIZE)
    assert (one.maps[0, 0] - full.maps[1, 1]).abs().max() <= 1e-5
    assert full.map_for(1, 1).shape == (SIZE, SIZE)
    assert np.allclose(full.probabilities().sum(1), 1.0, atol=1e-6)


def test_class_subset_in_any_order_equals_the_full_set():
    torch.manual_seed(4)
    model = build_model("shallow", 4).eval()
    layer = target_layer(model, "shallow")
    x = _images(2, seed=22)
    full = compute_cams(model, x, layer, method="gradcam++", normalize="none")
    part = compute_cams(model, x, layer, method="gradcam++", classes=[3, 1], normalize="none")
    assert part.classes == [3, 1] and part.raw.shape[1] == 2
    assert torch.allclose(part.raw, full.raw[:, [3, 1]], atol=1e-6)
    one = compute_cams(model, x, layer, classes=2)
    assert one.classes == [2] and one.maps.shape == (2, 1, SIZE, SIZE)


# --------------------------------------------------------------------------- normalisation


def test_per_map_normalisation_is_scale_free_and_zeroes_constant_maps():
    g = torch.Generator().manual_seed(3)
    raw = torch.randn(2, 2, 4, 4, generator=g)
    raw[1, 1] = 0.5  # constant map
    a = normalize_maps(raw, (32, 32), "per_map")
    b = normalize_maps(raw * 1e-9, (32, 32), "per_map")
    assert torch.allclose(a, b, atol=1e-6)
    assert torch.equal(a[1, 1], torch.zeros(32, 32))
    for m in (a[0, 0], a[0, 1], a[1, 0]):
        assert m.min() == 0 and abs(float(m.max()) - 1) < 1e-6


def test_shared_and_none_normalisation():
    raw = torch.zeros(1, 2, 2, 2)
    raw[0, 0] = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    raw[0, 1] = torch.tensor([[0.5, 0.0], [0.0, 0.0]])
    shared = normalize_maps(raw, (2, 2), "shared")
    assert torch.allclose(shared[0, 0], torch.tensor([[0.5, 1.0], [0.0, 0.0]]))
    assert torch.allclose(shared[0, 1], torch.tensor([[0.25, 0.0], [0.0, 0.0]]))
    assert torch.equal(normalize_maps(raw, (2, 2), "none"), raw)
    up = normalize_maps(raw, (8, 8), "none")
    assert torch.allclose(up, nn.functional.interpolate(raw, size=(8, 8), mode="bilinear", align_corners=False))
    assert torch.equal(normalize_maps(torch.zeros(1, 1, 3, 3), (6, 6), "shared"), torch.zeros(1, 1, 6, 6))


def test_shared_scale_across_classes(models):
    model = models[("resnet18", "trained")]
    x = _images(2, seed=17)
    r = compute_cams(model, x, model.layer4[-1], normalize="shared")
    assert abs(float(r.maps.max()) - 1.0) < 1e-6 and float(r.maps.min()) >= 0
    up = normalize_maps(r.raw.clamp(min=0), (SIZE, SIZE), "none")  # ReLU first, as per_map
    assert torch.allclose(r.maps, up / up.max(), atol=1e-6)


# --------------------------------------------------------------------------- model state


def _hooks(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules()
    )


def test_model_state_is_restored(models):
    model = copy.deepcopy(models[("resnet18", "trained")])
    model.train()
    model.layer1.eval()  # a mixed state must come back exactly
    model.conv1.weight.requires_grad_(False)
    modes = [m.training for m in model.modules()]
    flags = [p.requires_grad for p in model.parameters()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = _images(2, seed=18)
    for method in ("gradcam", "gradcam++"):
        compute_cams(model, x, model.layer4[-1], method=method)  # analytic path
        compute_cams(model, x, model.layer3, method=method)  # autograd path
    assert [m.training for m in model.modules()] == modes
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert _hooks(model) == 0
    after = model.state_dict()
    assert all(torch.equal(state[k], after[k]) for k in state), "BN statistics must not move"


def test_works_under_no_grad_and_inference_mode(models):
    model = models[("shallow", "trained")]
    layer = target_layer(model, "shallow")
    x = _images(2, seed=19)
    ref = compute_cams(model, x, layer, method="gradcam++")
    with torch.no_grad():
        a = compute_cams(model, x, layer, method="gradcam++")
    with torch.inference_mode():
        xi = x.clone()
        b = compute_cams(model, xi, layer, method="gradcam++")
    assert torch.equal(ref.maps, a.maps)
    assert torch.allclose(ref.maps, b.maps, atol=1e-6)
    with torch.no_grad():
        compute_cams(model, x, layer)
        assert not torch.is_grad_enabled()


# --------------------------------------------------------------------------- bad input


def test_bad_inputs_raise_clear_errors(models):
    model = models[("shallow", "random")]
    layer = target_layer(model, "shallow")
    x = _images(1, seed=20)
    other = build_model("shallow", 2)
    with pytest.raises(BadArgument, match="not part of the model"):
        compute_cams(model, x, target_layer(other, "shallow"))
    with pytest.raises(BadArgument, match="4-D"):
        compute_cams(model, x, model.classifier[1])
    assert _hooks(model) == 0
    with pytest.raises(BadArgument, match=r"\(B, 3, H, W\)"):
        compute_cams(model, x[0], layer)
    with pytest.raises(BadArgument, match=r"\(B, 3, H, W\)"):
        compute_cams(model, x[:, :1], layer)
    with pytest.raises(BadArgument, match="floating point"):
        compute_cams(model, (x * 10).to(torch.uint8), layer)
    bad = x.clone()
    bad[0, 1, 3, 3] = float("nan")
    with pytest.raises(BadArgument, match="NaN"):
        compute_cams(model, bad, layer)
    with pytest.raises(BadArgument, match="Unknown CAM method"):
        compute_cams(model, x, layer, method="eigencam")
    with pytest.raises(BadArgument, match="normalisation"):
        compute_cams(model, x, layer, normalize="global")
    with pytest.raises(BadArgument, match="out of range"):
        compute_cams(model, x, layer, classes=[2])
    class WithSpare(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = model
            self.spare = nn.Conv2d(3, 3, 1)  # part of the model, never called

        def forward(self, t):
            return self.net(t)

    unused = WithSpare()
    with pytest.raises(BadArgument, match="did not run"):
        compute_cams(unused, x, unused.spare)

    class SideBranch(WithSpare):
        def forward(self, t):
            self.spare(t)  # runs, but the logits do not depend on it
            return self.net(t)

    side = SideBranch()
    for classes in (None, [1]):
        with pytest.raises(BadArgument, match="does not depend on the explained layer"):
            compute_cams(side, x, side.spare, classes=classes)
    assert _hooks(model) == 0 and all(p.grad is None for p in model.parameters())


# --------------------------------------------------------------------------- convenience


def test_explain_on_uint8_images_and_probabilities(models):
    model = models[("vgg11", "trained")]
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(2, SIZE, SIZE, 3), dtype=np.uint8)
    r = explain(model, "vgg11", imgs, method="gradcam", normalize="per_map", device="cpu")
    assert isinstance(r, CamResult) and r.maps.device.type == "cpu"
    direct = compute_cams(model, preprocess(imgs), target_layer(model, "vgg11"))
    assert torch.allclose(r.maps, direct.maps, atol=1e-6)
    single = explain(model, "vgg11", imgs[0])
    assert single.maps.shape == (1, 2, SIZE, SIZE)
    p = class_probabilities(r.logits)
    assert p.dtype == np.float32 and p.shape == (2, 2) and np.allclose(p.sum(1), 1, atol=1e-6)
    assert np.allclose(class_probabilities(np.array([[0.0, np.log(3.0)]])), [[0.25, 0.75]], atol=1e-6)
    with pytest.raises(BadArgument, match="uint8"):
        explain(model, "vgg11", imgs.astype(np.float32))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu(models):
    for name in MODEL_NAMES:
        model = models[(name, "trained")]
        x = _images(2, seed=21)
        cpu = compute_cams(model, x, target_layer(model, name))
        gpu_model = copy.deepcopy(model).cuda()
        gpu = compute_cams(gpu_model, x.cuda(), target_layer(gpu_model, name))
        assert gpu.maps.device.type == "cuda"
        assert (gpu.maps.cpu() - cpu.maps).abs().max() <= 1e-3
