"""Units: what the learned filters and a layer's channels detect (the paper's "visualized filters").

* ``filter_grid(model)``: the first convolution's kernels as one RGB image (every 3 x k x k
  kernel scaled by the layer's largest absolute weight, so all share one range; grey = 0).
* ``scan_layer(...)``: one streaming pass over a split that keeps, per channel (unit), the top-k
  images by their maximum activation, the peak's position and the unit's whole map on each of
  them (``(U, k, h, w)``: bounded whatever the number of images), and a ``StreamingQuantile``.
  With label maps a second pass does Network Dissection (``dissection``): the second pass reads
  the activations back from a float16 spool file in the cache folder when it fits
  ``SPOOL_LIMIT`` bytes (removed at the end, also on cancel or error), else it recomputes them. Forward passes stop at the dissected layer.
* ``receptive_field(model, layer)``: size, jump and first centre of a layer's units (input px),
  for the patch around each peak.
* ``randomised_copy(model)``: every parameter group re-initialised (the sanity cascade's last
  step), for the check that a trained model has far more detectors than a random one.

``run_units`` (in ``units_run``) ties these together with the cache; this module is Qt-free and
knows nothing of files but the spool.
"""

from __future__ import annotations

import copy
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from geocam_gui.core import paths
from geocam_gui.core.analysis import dissection as nd
from geocam_gui.core.analysis.model_pass import cascade_groups
from geocam_gui.core.errors import BadArgument, Cancelled
from geocam_gui.core.models import preprocess, target_layer

BATCH = 32
SPOOL_LIMIT = 4 * 1024**3  # bytes of float16 activations kept on disk between the two passes
SEED = 1234


# --------------------------------------------------------------------------- layers


def layer_choices(model: nn.Module, name: str) -> list[str]:
    """Selectable layers: every Conv2d, every ReLU of a ``features`` stack, every residual block;
    the model's CAM layer first."""
    cam = cam_layer_name(model, name)
    out = [cam]
    for n, m in model.named_modules():
        block = n.startswith("layer") and n.count(".") == 1
        if n != cam and (isinstance(m, nn.Conv2d) or block or (n.startswith("features.") and isinstance(m, nn.ReLU))):
            out.append(n)
    return out


def cam_layer_name(model: nn.Module, name: str) -> str:
    layer = target_layer(model, name)
    return next(n for n, m in model.named_modules() if m is layer)


def get_layer(model: nn.Module, layer: str) -> nn.Module:
    modules = dict(model.named_modules())
    if not layer or layer not in modules:
        raise BadArgument(f"The model has no layer {layer!r}; choose one of: "
                          f"{', '.join(n for n, _ in model.named_modules() if n)[:600]}.")
    return modules[layer]


class _Stop(Exception):
    pass


@torch.no_grad()
def activations(model: nn.Module, x: torch.Tensor, layer: nn.Module) -> torch.Tensor:
    """The output of ``layer`` for the normalised batch ``x``; the forward pass stops there."""
    box: list[torch.Tensor] = []

    def hook(_m, _i, out):
        box.append(out)
        raise _Stop

    handle = layer.register_forward_hook(hook)
    try:
        model(x)
    except _Stop:
        pass
    finally:
        handle.remove()
    if not box or not isinstance(box[0], torch.Tensor) or box[0].ndim != 4:
        raise BadArgument("The chosen layer does not give a (batch, channels, height, width) map.")
    return box[0].float()


def receptive_field(model: nn.Module, layer: str) -> dict:
    """``{"size", "jump", "start"}`` in input pixels of a unit of ``layer``: the theoretical
    receptive field walked through the convolutions and poolings up to it (a residual block's
    shortcut branch is skipped: it sees less than the main branch)."""
    r, j, start = 1.0, 1.0, 0.5
    names = [n for n, _ in model.named_modules()]
    end = None
    for i, n in enumerate(names):
        if n == layer or n.startswith(layer + "."):
            end = i
    for i, (n, m) in enumerate(model.named_modules()):
        if end is not None and i > end:
            break
        if "downsample" in n or not isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            continue
        k, s, p, d = (m.kernel_size, m.stride, m.padding, getattr(m, "dilation", 1))
        k, s, p, d = (v[0] if isinstance(v, tuple) else v for v in (k, s, p, d))
        r += (k - 1) * d * j
        start += ((k - 1) / 2 * d - p) * j
        j *= s
    return {"size": r, "jump": j, "start": start}


def filter_grid(model: nn.Module, zoom: int = 6, gap: int = 1) -> np.ndarray:
    """uint8 (H, W, 3): the first convolution's kernels (RGB), scaled by the largest |weight|."""
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None or conv.weight.shape[1] != 3:
        raise BadArgument("The model's first layer is not a convolution over RGB.")
    w = conv.weight.detach().float().cpu().numpy()  # (O, 3, k, k)
    scale = float(np.abs(w).max()) or 1.0
    tiles = np.clip(w / scale * 0.5 + 0.5, 0, 1).transpose(0, 2, 3, 1)
    n, k = len(tiles), tiles.shape[1]
    cols = int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    side = k * zoom
    out = np.full((rows * (side + gap) + gap, cols * (side + gap) + gap, 3), 255, np.uint8)
    for i, t in enumerate(tiles):
        y, x = divmod(i, cols)
        big = np.kron(t, np.ones((zoom, zoom, 1)))
        y0, x0 = gap + y * (side + gap), gap + x * (side + gap)
        out[y0 : y0 + side, x0 : x0 + side] = np.round(big * 255).astype(np.uint8)
    return out


def randomised_copy(model: nn.Module, seed: int = SEED) -> nn.Module:
    """A copy with every parameter group re-initialised (fixed seed), in eval mode."""
    work = copy.deepcopy(model).eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _label, modules in cascade_groups(work):
            for m in modules:
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
                if hasattr(m, "reset_running_stats"):
                    m.reset_running_stats()
    return work


# --------------------------------------------------------------------------- the pass


@dataclass
class TopK:
    """Per unit, the k best images by maximum activation (descending)."""

    score: np.ndarray  # (U, k) float32, -inf where fewer than k images
    image: np.ndarray  # (U, k) int64 row in the split, -1 where none
    peak: np.ndarray  # (U, k, 2) int64 (y, x) at the layer's resolution
    maps: np.ndarray  # (U, k, h, w) float16, the unit's map on that image


@dataclass
class LayerScan:
    units: int
    shape: tuple[int, int]
    images: int
    top: TopK
    thresholds: np.ndarray  # (U,) top-0.5 % quantile
    threshold_error: np.ndarray  # (U,) bound on |threshold - numpy.quantile|
    ious: np.ndarray | None = None  # (U, C)
    labelled: int = 0
    label_pixels: np.ndarray | None = None  # (C,) labelled pixels of each kind
    mask_pixels: np.ndarray | None = None  # (U,) pixels above each unit's threshold
    label_problems: list = field(default_factory=list)  # [(path, reason)]
    stats_bytes: int = 0


def _merge(top: dict | None, acts: torch.Tensor, start: int, k: int) -> dict:
    B, U, h, w = acts.shape
    flat = acts.flatten(2)  # (B, U, hw)
    score, where = flat.max(2)  # (B, U)
    cand = {"score": score.T, "image": torch.arange(start, start + B).expand(U, B),
            "pos": where.T, "maps": flat.permute(1, 0, 2).half()}
    if top is not None:
        cand = {key: torch.cat([top[key], cand[key]], 1) for key in cand}
    kk = min(k, cand["score"].shape[1])
    best = torch.topk(cand["score"], kk, dim=1, sorted=True).indices
    return {"score": cand["score"].gather(1, best), "image": cand["image"].gather(1, best),
            "pos": cand["pos"].gather(1, best),
            "maps": cand["maps"].gather(1, best[..., None].expand(-1, -1, cand["maps"].shape[2]))}


def _check(cancel) -> None:
    if cancel is not None and cancel():
        raise Cancelled("The units scan was cancelled.")


def scan_layer(model: nn.Module, layer: str, images, *, k: int = 9, labels_for: Callable | None = None,
               device="cpu", batch: int = BATCH, cancel=None, tick: Callable[[int, int], None] | None = None,
               spool_limit: int = SPOOL_LIMIT, bins: int = nd.BINS) -> LayerScan:
    """Scan ``images`` (N, S, S, 3) uint8 (array or memmap) at ``layer`` of ``model``.

    ``labels_for(rows) -> (labels (b, S, S) uint8 | None, has (b,) bool)`` gives the label maps
    of image rows (the ones with ``has`` False are left out of the IoU) and ``labels_for.kinds``
    the number of kinds (``dissection.LabelSource``); ``None`` skips the dissection. ``tick(done, total)`` counts batches of both passes.
    """
    if k < 1:
        raise BadArgument(f"--top must be at least 1, got {k}.")
    N = len(images)
    if N == 0:
        raise BadArgument("There are no images to scan.")
    model = model.to(device).eval()
    module = get_layer(model, layer)
    steps = math.ceil(N / batch) * (2 if labels_for is not None else 1)
    spool = _Spool()
    try:
        return _passes(model, module, images, k, labels_for, device, batch, cancel, tick,
                       spool if labels_for is not None else None, spool_limit, bins, steps)
    finally:
        spool.remove()


class _Spool:
    """A float16 memmap of the layer's activations in the cache folder, removed after the scan."""

    def __init__(self):
        self.array, self.path = None, None

    def create(self, shape) -> np.ndarray:
        folder = paths.cache_dir() / "units"
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".spool-", suffix=".f16", dir=folder)
        os.close(fd)
        self.path = name
        self.array = np.memmap(name, np.float16, "w+", shape=shape)
        return self.array

    def remove(self) -> None:
        self.array = None
        if self.path is not None:
            try:
                os.unlink(self.path)
            except OSError:
                pass
            self.path = None


def _passes(model, module, images, k, labels_for, device, batch, cancel, tick, spool_holder, spool_limit, bins,
            steps) -> LayerScan:
    N = len(images)
    done = 0
    quant: nd.StreamingQuantile | None = None
    top = None
    spool = None
    shape = (0, 0)
    for s in range(0, N, batch):
        _check(cancel)
        x = preprocess(np.ascontiguousarray(images[s : s + batch]), device=device)
        acts = activations(model, x, module)
        B, U, h, w = acts.shape
        if quant is None:
            shape = (h, w)
            quant = nd.StreamingQuantile(U, bins)
            if spool_holder is not None and N * U * h * w * 2 <= spool_limit:
                spool = spool_holder.create((N, U, h, w))
        quant.add(acts.transpose(0, 1).reshape(U, -1))
        top = _merge(top, acts.cpu(), s, k)
        if spool is not None:
            spool[s : s + B] = acts.cpu().half().numpy()
        done += 1
        if tick is not None:
            tick(done, steps)
    thresholds, errors = quant.quantile(nd.QUANTILE)
    scan = LayerScan(units=quant.units, shape=shape, images=N, top=_topk(top, shape), thresholds=thresholds,
                     threshold_error=errors, stats_bytes=quant.nbytes())
    if labels_for is None:
        return scan
    counter = None
    for s in range(0, N, batch):
        _check(cancel)
        rows = np.arange(s, min(N, s + batch))
        labs, has = labels_for(rows)
        if labs is not None and has.any():
            if spool is not None:
                acts = torch.from_numpy(np.asarray(spool[rows[has]], np.float32))
            else:
                x = preprocess(np.ascontiguousarray(images[rows[has]]), device=device)
                acts = activations(model, x, module)
            if counter is None:
                counter = nd.IoUCounter(thresholds, labels_for.kinds, device=device)
            counter.add(acts, labs[has])
        done += 1
        if tick is not None:
            tick(done, steps)
    if counter is not None:
        scan.ious, scan.labelled = counter.ious(), counter.images
        scan.label_pixels, scan.mask_pixels = counter.lab.numpy(), counter.act.numpy()
        scan.stats_bytes += (counter.inter.numel() + counter.act.numel() + counter.lab.numel()) * 8
    return scan


def _topk(top: dict, shape: tuple[int, int]) -> TopK:
    U, k, _ = top["maps"].shape
    pos = top["pos"].numpy().astype(np.int64)
    return TopK(score=top["score"].numpy().astype(np.float32), image=top["image"].numpy().astype(np.int64),
                peak=np.stack([pos // shape[1], pos % shape[1]], -1), maps=top["maps"].numpy().reshape(U, k, *shape))


def unit_map(model: nn.Module, layer: str, image: np.ndarray, unit: int, scale: float) -> np.ndarray:
    """Unit ``unit``'s map of ``layer`` on ``image`` (S, S, 3) uint8, upsampled bilinearly to
    (S, S) and divided by ``scale`` (the unit's best score on the split), clipped to [0, 1]."""
    import torch.nn.functional as F

    acts = activations(model.eval(), preprocess(np.ascontiguousarray(image)), get_layer(model, layer))
    if not 0 <= unit < acts.shape[1]:
        raise BadArgument(f"The layer has {acts.shape[1]} units; there is no unit {unit}.")
    up = F.interpolate(acts[:, unit : unit + 1].cpu(), size=image.shape[:2], mode="bilinear", align_corners=False)
    return np.clip(up[0, 0].numpy() / (scale if scale > 0 else 1.0), 0.0, 1.0)
