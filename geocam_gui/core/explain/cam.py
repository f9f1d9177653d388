"""The CAM engine: class activation maps for every class of a batch in one forward pass.

(Long because this docstring, about 60 lines, is the reference for the six methods, the two
gradient paths and the normalisations; the code itself is one engine that splits no further.)

``compute_cams`` explains the output of one layer (``models.target_layer`` gives the paper's
choice) for several classes at once:

* **One forward for all classes.** A forward hook replaces the layer's output ``A`` by a
  detached leaf that requires grad (and hands a *copy* of it to the rest of the network, so
  in-place ops downstream, such as torchvision's ``ReLU(inplace=True)``, can neither modify the
  stored activation nor break autograd). The gradients ``d logit_k / d A`` of every requested
  class come from one batched ``torch.autograd.grad(..., is_grads_batched=True)`` call. Nothing
  before the layer is recorded by autograd and parameter ``.grad`` is never filled: the
  parameters' ``requires_grad`` flags are switched off during the call and restored after.
* **No backward at all for a global-average-pool + linear head** (torchvision's ResNet with the
  last residual block as the layer): ``logit_k = sum_c W[k, c] * mean_ij A[c, i, j] + b_k``, so
  ``d logit_k / d A[c, i, j] = W[k, c] / (h * w)``, constant over space. The head is recognised
  structurally (``model.avgpool`` is ``AdaptiveAvgPool2d(1)``, ``model.fc`` is ``Linear`` and the
  layer is the last block before the pool) and confirmed at run time (the pool received exactly
  the hooked tensor, ``fc`` read the pool's output and produced the model's output); otherwise
  the autograd path is used. Both paths give the same maps (tested).
* The model runs in eval mode (as grad-cam does); every module's train/eval flag is restored.

Methods (``A``: activations (n, h, w) of one image, ``G``: ``d logit_k / d A``):

* ``gradcam`` (Selvaraju et al.): ``sum_c mean_ij(G[c]) * A[c]``.
* ``hirescam`` (Draelos & Carin): ``sum_c G[c] * A[c]`` (element-wise, no spatial averaging).
* ``layercam`` (Jiang et al.): ``sum_c relu(G[c]) * A[c]``.
* ``xgradcam`` (Fu et al.): weights ``sum_ij G * A / (sum_ij A + 1e-7)``.
* ``gradcam++`` (Chattopadhay et al., eq. 19, closed form for an exponential output as in
  grad-cam): ``alpha = G^2 / (2 G^2 + sum_ij(A) G^3 + 1e-6)`` (0 where ``G == 0``),
  weights ``sum_ij alpha * relu(G)``.
* ``scorecam`` (Wang et al.): each channel, bilinearly upsampled to the input (corner-aligned,
  as grad-cam's ``UpsamplingBilinear2d``) and min-max scaled (``/(max - min + 1e-8)``), masks the
  input; the weights are the softmax over channels of the masked inputs' logits. All classes
  come from the same masked forwards, run in chunks of ``SCORECAM_BATCH``.

The small constants inside ``xgradcam``, ``gradcam++`` and ``scorecam`` are part of those
methods' definitions in grad-cam 1.5.7 and are kept so the maps agree with it.

Normalisation (``normalize``):

* ``"per_map"`` (grad-cam's convention): ReLU, then each map is min-max scaled to [0, 1] at the
  layer's resolution, upsampled bilinearly (``align_corners=False``, like ``cv2.resize``) to the
  input size and min-max scaled again. grad-cam divides by ``max + 1e-7`` instead of ``max``;
  that absolute epsilon visibly dims maps whose values are small (untrained models), so here the
  scaling is exactly scale-free and a constant map becomes zeros. Otherwise the maps equal
  grad-cam's (its second min-max after resizing is the second step here).
* ``"shared"``: ReLU, upsample, then one division by the largest value over all the maps of
  the call (all images and classes), so maps can be compared on one colour scale.
* ``"none"``: the raw maps upsampled, without ReLU (not limited to [0, 1]).

On CUDA nothing inside the computation waits for the device; the only synchronisation is the
final check that the images held no NaN/inf.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from geocam_gui.core.device import gpu_path
from geocam_gui.core.errors import BadArgument

METHODS: tuple[str, ...] = ("gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "scorecam")
NORMALIZATIONS: tuple[str, ...] = ("per_map", "shared", "none")
METHOD_LABELS = {
    "gradcam": "Grad-CAM",
    "gradcam++": "Grad-CAM++",
    "xgradcam": "XGrad-CAM",
    "layercam": "LayerCAM",
    "hirescam": "HiResCAM",
    "scorecam": "Score-CAM",
}
#: Masked images per forward pass in Score-CAM (memory vs. speed).
SCORECAM_BATCH = 32


@dataclass
class CamResult:
    """Maps of one ``compute_cams`` call. Tensors live on the model's device (see ``cpu()``).

    ``maps[b, j]`` is the map of image ``b`` for class ``classes[j]`` at the input size,
    ``raw[b, j]`` the same map at the layer's resolution before any normalisation,
    ``logits[b]`` the model's output for image ``b``.
    """

    maps: torch.Tensor
    raw: torch.Tensor
    logits: torch.Tensor
    classes: list[int]
    method: str
    normalize: str = "per_map"

    def cpu(self) -> "CamResult":
        """The same result with every tensor on the CPU."""
        return replace(self, maps=self.maps.cpu(), raw=self.raw.cpu(), logits=self.logits.cpu())

    def map_for(self, image: int, class_index: int) -> np.ndarray:
        """The (H, W) float32 map of image ``image`` for class index ``class_index`` (a class id,
        not a position in ``classes``)."""
        if class_index not in self.classes:
            raise BadArgument(f"Class {class_index} was not computed; this result has classes {self.classes}.")
        j = self.classes.index(class_index)
        return self.maps[image, j].detach().float().cpu().numpy()

    def probabilities(self) -> np.ndarray:
        """Softmax of the logits, (B, K) float32 numpy."""
        return class_probabilities(self.logits)


def class_probabilities(logits: torch.Tensor | np.ndarray) -> np.ndarray:
    """Softmax over the last axis, as a float32 numpy array (rows sum to 1)."""
    t = torch.as_tensor(logits).detach().float().cpu()
    if t.ndim == 0:
        raise BadArgument("Logits must have at least one axis (the classes).")
    return torch.softmax(t, dim=-1).numpy()


# --------------------------------------------------------------------------- validation


def _check_args(model, images, layer, method, normalize) -> None:
    if not isinstance(model, nn.Module):
        raise BadArgument(f"The model must be a torch nn.Module, got {type(model).__name__}.")
    if method not in METHODS:
        raise BadArgument(f"Unknown CAM method {method!r}: choose one of {', '.join(METHODS)}.")
    if normalize not in NORMALIZATIONS:
        raise BadArgument(f"Unknown normalisation {normalize!r}: choose one of {', '.join(NORMALIZATIONS)}.")
    if not isinstance(layer, nn.Module) or not any(m is layer for m in model.modules()):
        raise BadArgument("The layer to explain is not part of the model (pass one of its own modules).")
    if not isinstance(images, torch.Tensor):
        raise BadArgument(f"Images must be a float tensor (B, 3, H, W), got {type(images).__name__}.")
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[0] == 0:
        raise BadArgument(f"Images must be a float tensor of shape (B, 3, H, W) with B >= 1, got {tuple(images.shape)}.")
    if not images.is_floating_point():
        raise BadArgument(f"Images must be floating point (normalised), got {images.dtype}; use models.preprocess.")


def _check_classes(classes, num_classes: int) -> list[int]:
    if classes is None:
        return list(range(num_classes))
    if isinstance(classes, (int, np.integer)):
        classes = [classes]
    out = [int(c) for c in classes]
    if not out:
        raise BadArgument("Ask for at least one class.")
    bad = [c for c in out if not 0 <= c < num_classes]
    if bad:
        raise BadArgument(f"Class index {bad[0]} is out of range: the model has {num_classes} classes.")
    return out


# --------------------------------------------------------------------------- model state


class _Frozen:
    """Eval mode and no parameter gradients for the duration; restores both exactly."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __enter__(self):
        self.modes = [(m, m.training) for m in self.model.modules()]
        self.flags = [(p, p.requires_grad) for p in self.model.parameters()]
        self.model.eval()
        for p, _ in self.flags:
            p.requires_grad_(False)
        return self

    def __exit__(self, *exc):
        for p, flag in self.flags:
            p.requires_grad_(flag)
        for m, mode in self.modes:
            m.training = mode
        return False


class _Capture:
    """Forward hook on the explained layer (first call only) plus, for a ResNet-like head,
    probes that confirm the pool -> flatten -> fc -> output structure at run time."""

    def __init__(self, model: nn.Module, layer: nn.Module, with_grad: bool, head: nn.Linear | None):
        self.activation: torch.Tensor | None = None
        self.passed: torch.Tensor | None = None
        self.error: str | None = None
        self.with_grad = with_grad
        self.head = head
        self.pool_ok = False
        self.fc_ok_input = False
        self.pool_out: torch.Tensor | None = None
        self.fc_out: torch.Tensor | None = None
        self.handles = [layer.register_forward_hook(self._hook)]
        if head is not None:
            self.handles.append(model.avgpool.register_forward_hook(self._pool_hook))
            self.handles.append(head.register_forward_hook(self._fc_hook))

    def _hook(self, module, inputs, output):
        if self.activation is not None or self.error is not None:
            return None
        if not isinstance(output, torch.Tensor) or output.ndim != 4:
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
            self.error = f"The explained layer must output a 4-D tensor (B, C, h, w), but it gives {shape}."
            raise _LayerError(self.error)
        a = output.detach()
        if self.with_grad:
            a.requires_grad_(True)
        self.activation = a
        # Later layers get a copy: in-place ops downstream must not touch the stored activation.
        self.passed = a.clone()
        return self.passed

    def _pool_hook(self, module, inputs, output):
        self.pool_ok = inputs[0] is self.passed and self.passed is not None
        self.pool_out = output

    def _fc_hook(self, module, inputs, output):
        x = inputs[0]
        p = self.pool_out
        self.fc_ok_input = (
            p is not None and x.ndim == 2 and x.data_ptr() == p.data_ptr() and x.numel() == p.numel()
        )
        self.fc_out = output

    def analytic_ok(self, logits: torch.Tensor) -> bool:
        return bool(self.head is not None and self.pool_ok and self.fc_ok_input and logits is self.fc_out)

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()


class _LayerError(RuntimeError):
    pass


def _gap_linear_head(model: nn.Module, layer: nn.Module) -> nn.Linear | None:
    """``model.fc`` when the layer feeds ``avgpool`` (AdaptiveAvgPool2d(1)) -> flatten -> ``fc``
    (torchvision's ResNet layout): structurally, ``layer`` is the last child module before
    ``avgpool`` or that child's last block."""
    pool = getattr(model, "avgpool", None)
    fc = getattr(model, "fc", None)
    if not isinstance(pool, nn.AdaptiveAvgPool2d) or not isinstance(fc, nn.Linear):
        return None
    if pool.output_size not in (1, (1, 1), [1, 1]):
        return None
    names = [n for n, _ in model.named_children()]
    if names[-2:] != ["avgpool", "fc"] or len(names) < 3:
        return None
    before = getattr(model, names[-3])
    last = before
    while isinstance(last, nn.Sequential) and len(last) > 0:
        last = last[-1]
        if last is layer:
            return fc
    return fc if before is layer else None


# --------------------------------------------------------------------------- methods


def _select(t: torch.Tensor, dim: int, classes: list[int]) -> torch.Tensor:
    """``t`` indexed by ``classes`` along ``dim`` without building an index tensor from a
    Python list (on CUDA that would be a host-to-device copy and a synchronisation)."""
    start = classes[0]
    if classes == list(range(start, start + len(classes))):
        return t.narrow(dim, start, len(classes))
    return torch.stack([t.select(dim, k) for k in classes], dim)


def _cams_from_gradients(method: str, A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """A (B, n, h, w), G (C, B, n, h, w) -> raw maps (B, C, h, w)."""
    if method == "gradcam":
        w = G.mean(dim=(3, 4))
        return torch.einsum("cbn,bnhw->bchw", w, A)
    if method == "hirescam":
        return (G * A.unsqueeze(0)).sum(dim=2).transpose(0, 1)
    if method == "layercam":
        return (G.clamp(min=0) * A.unsqueeze(0)).sum(dim=2).transpose(0, 1)
    sum_a = A.sum(dim=(2, 3), keepdim=True).unsqueeze(0)  # (1, B, n, 1, 1)
    if method == "xgradcam":
        w = (G * A.unsqueeze(0) / (sum_a + 1e-7)).sum(dim=(3, 4))
    elif method == "gradcam++":
        g2 = G * G
        g3 = g2 * G
        alpha = g2 / (2 * g2 + sum_a * g3 + 1e-6)
        alpha = torch.where(G != 0, alpha, torch.zeros((), dtype=G.dtype, device=G.device))
        w = (G.clamp(min=0) * alpha).sum(dim=(3, 4))
    else:  # pragma: no cover - guarded by _check_args
        raise BadArgument(f"Unknown CAM method {method!r}.")
    return torch.einsum("cbn,bnhw->bchw", w, A)


def _scorecam(model: nn.Module, x: torch.Tensor, A: torch.Tensor, classes: list[int]) -> torch.Tensor:
    """Score-CAM raw maps (B, C, h, w); all classes from one set of masked forwards."""
    B, n = A.shape[:2]
    up = F.interpolate(A, size=x.shape[-2:], mode="bilinear", align_corners=True)
    flat = up.flatten(2)
    lo = flat.amin(dim=2)[..., None, None]
    hi = flat.amax(dim=2)[..., None, None]
    masks = (up - lo) / (hi - lo + 1e-8)  # (B, n, H, W)
    scores = []
    with torch.no_grad():
        for b in range(B):
            per_image = []
            for s in range(0, n, SCORECAM_BATCH):
                m = masks[b, s : s + SCORECAM_BATCH].unsqueeze(1)  # (k, 1, H, W)
                out = model(x[b : b + 1] * m)
                per_image.append(_select(out, 1, classes))
            scores.append(torch.cat(per_image, 0))  # (n, C)
    w = torch.softmax(torch.stack(scores, 0), dim=1)  # (B, n, C), softmax over channels
    return torch.einsum("bnc,bnhw->bchw", w, A)


# --------------------------------------------------------------------------- normalisation


def _minmax(x: torch.Tensor) -> torch.Tensor:
    """Per-map min-max over the last two axes; a map with no range becomes zeros."""
    flat = x.flatten(-2)
    lo = flat.amin(dim=-1)[..., None, None]
    hi = flat.amax(dim=-1)[..., None, None]
    rng = hi - lo
    safe = torch.where(rng > 0, rng, torch.ones_like(rng))
    return torch.where(rng > 0, (x - lo) / safe, torch.zeros_like(x))


def normalize_maps(raw: torch.Tensor, size: tuple[int, int], mode: str = "per_map") -> torch.Tensor:
    """Raw maps (..., h, w) -> maps (..., H, W) at ``size`` under ``mode`` (see the module
    docstring: "per_map", "shared" or "none")."""
    if mode not in NORMALIZATIONS:
        raise BadArgument(f"Unknown normalisation {mode!r}: choose one of {', '.join(NORMALIZATIONS)}.")
    lead = raw.shape[:-2]
    r = raw.reshape(-1, 1, *raw.shape[-2:]).float()

    def up(t: torch.Tensor) -> torch.Tensor:
        if tuple(t.shape[-2:]) == tuple(size):
            return t
        return F.interpolate(t, size=size, mode="bilinear", align_corners=False)

    if mode == "none":
        out = up(r)
    elif mode == "per_map":
        out = _minmax(up(_minmax(r.clamp(min=0)))).clamp_(0, 1)
    else:
        u = up(r.clamp(min=0))
        top = u.amax()
        out = torch.where(top > 0, u / torch.where(top > 0, top, torch.ones_like(top)), torch.zeros_like(u))
        out = out.clamp_(0, 1)
    return out.reshape(*lead, *size)


# --------------------------------------------------------------------------- public API


def compute_cams(
    model: nn.Module,
    images: torch.Tensor,
    layer: nn.Module,
    *,
    method: str = "gradcam",
    classes: Sequence[int] | int | None = None,
    normalize: str = "per_map",
) -> CamResult:
    """Class activation maps of ``layer`` for every class in ``classes`` (default: all) of
    every image, from one forward pass.

    ``images``: float (B, 3, H, W), already normalised for the model (``models.preprocess``);
    moved to the model's device. ``layer``: a module of ``model`` whose output is 4-D
    (``models.target_layer``). ``method``: one of ``METHODS``; ``normalize``: ``"per_map"``,
    ``"shared"`` or ``"none"`` (module docstring). Works inside ``torch.no_grad()``; leaves the
    model's modes, ``requires_grad`` flags and ``.grad`` as they were. Raises ``BadArgument`` for
    a layer outside the model or with a non 4-D output, images of the wrong shape or with
    NaN/inf, unknown methods, normalisations or classes.
    """
    _check_args(model, images, layer, method, normalize)
    param = next(model.parameters(), None)
    device = param.device if param is not None else images.device
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    head = _gap_linear_head(model, layer) if method != "scorecam" else None
    needs_grad = method != "scorecam"
    with torch.inference_mode(False):
        x = images.to(device=device, dtype=dtype)
        if x.is_inference():
            x = x.clone()
        finite = torch.isfinite(x).all()
        deferred = gpu_path(device) or device.type != "cpu"  # CUDA/MPS (or the CPU twin): no early sync
        if not deferred and not bool(finite):
            raise BadArgument("The images contain NaN or infinite values.")
        with _Frozen(model), torch.set_grad_enabled(needs_grad):
            cap = _Capture(model, layer, with_grad=needs_grad, head=head)
            try:
                try:
                    logits = model(x)
                except _LayerError:
                    raise BadArgument(cap.error) from None
                if cap.activation is None:
                    raise BadArgument("The layer to explain did not run during the model's forward pass.")
            finally:
                cap.remove()
            if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
                raise BadArgument("The model must return logits of shape (B, num_classes).")
            cls = _check_classes(classes, logits.shape[1])
            A = cap.activation.detach()
            if method == "scorecam":
                raw = _scorecam(model, x, A, cls)
            elif cap.analytic_ok(logits):
                G = _analytic_gradients(head, cls, A)
                raw = _cams_from_gradients(method, A, G)
            else:
                G = _autograd_gradients(logits, cap.activation, cls)
                raw = _cams_from_gradients(method, A, G)
        raw = raw.detach()
        maps = normalize_maps(raw, tuple(x.shape[-2:]), normalize)
        if deferred and not bool(finite):  # the one device sync, after all the work
            raise BadArgument("The images contain NaN or infinite values.")
    return CamResult(maps=maps, raw=raw, logits=logits.detach(), classes=cls, method=method, normalize=normalize)


def _analytic_gradients(fc: nn.Linear, classes: list[int], A: torch.Tensor) -> torch.Tensor:
    """d logit_k / d A for GAP + linear: W[k] / (h*w) at every position, (C, B, n, h, w)."""
    B, n, h, w = A.shape
    W = _select(fc.weight.detach(), 0, classes).to(A.dtype) / (h * w)  # (C, n)
    return W[:, None, :, None, None].expand(len(classes), B, n, h, w)


def _autograd_gradients(logits: torch.Tensor, activation: torch.Tensor, classes: list[int]) -> torch.Tensor:
    """All classes' gradients w.r.t. the hooked activation in one batched backward."""
    C = len(classes)
    onehot = torch.zeros(C, *logits.shape, dtype=logits.dtype, device=logits.device)
    for c, k in enumerate(classes):  # fills on the device, no host-to-device copy
        onehot[c, :, k] = 1
    try:
        if C == 1:
            (g,) = torch.autograd.grad(logits, activation, onehot[0], allow_unused=True)
            g = None if g is None else g.unsqueeze(0)
        else:
            try:
                (g,) = torch.autograd.grad(
                    logits, activation, onehot, is_grads_batched=True, retain_graph=True, allow_unused=True
                )
            except RuntimeError:
                # An op without a vmap batching rule: one backward per class instead.
                gs = [torch.autograd.grad(logits, activation, onehot[c], retain_graph=True, allow_unused=True)[0]
                      for c in range(C)]
                g = None if gs[0] is None else torch.stack(gs, 0)
    except RuntimeError as exc:
        if "does not require grad" in str(exc) or "does not have a grad_fn" in str(exc):
            g = None
        else:
            raise
    if g is None:
        raise BadArgument("The model's output does not depend on the explained layer (it runs on a side branch).")
    return g


def explain(
    model: nn.Module,
    model_name: str,
    images_uint8,
    *,
    method: str = "gradcam",
    normalize: str = "per_map",
    device: str | torch.device | None = None,
    classes: Sequence[int] | int | None = None,
) -> CamResult:
    """CAMs of ``model`` (one of ``models.MODEL_NAMES``) at its documented target layer for
    uint8 RGB images (N, H, W, 3) or one (H, W, 3) image (numpy or tensor).

    ``device``: where to compute ("auto", "cpu", "cuda:0", ...; default: the model's device).
    The model is moved there (``nn.Module.to`` works in place). Returns the result on the CPU.
    """
    from geocam_gui.core.device import resolve_device
    from geocam_gui.core.models import preprocess, target_layer

    arr = images_uint8
    shape = tuple(getattr(arr, "shape", ()))
    dt = getattr(arr, "dtype", None)
    if len(shape) not in (3, 4) or shape[-1] != 3:
        raise BadArgument(f"Images must be uint8 RGB of shape (N, H, W, 3) or (H, W, 3), got {shape}.")
    if dt not in (np.uint8, torch.uint8):
        raise BadArgument(f"Images must be uint8 RGB, got dtype {dt}.")
    if device is not None:
        dev = resolve_device(device)
        model.to(dev)
    else:
        p = next(model.parameters(), None)
        dev = p.device if p is not None else torch.device("cpu")
    x = preprocess(arr, device=dev)
    layer = target_layer(model, model_name)
    return compute_cams(model, x, layer, method=method, classes=classes, normalize=normalize).cpu()
