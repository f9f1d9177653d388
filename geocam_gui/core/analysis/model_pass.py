"""The torch side of ``core.analysis``: one pass of a model over a split (CAMs, predictions,
localisation, deletion/insertion, peak features) and the cascading randomisation check.

Everything here works on decoded uint8 images (N, S, S, 3) at the model's input size; maps
are Grad-CAM-style maps from ``core.cam.compute_cams`` normalised per map to [0, 1] at S x S,
the maps the viewer shows.

Faithfulness (Petsiuk et al. 2018, RISE): pixels are ordered by the map of the predicted class
(highest first; pixels with equal values - a map clipped at zero leaves many - in a seeded random
order per image, not in raster order, which would remove the top rows (the sky) first). **Deletion** replaces the first ``t/T`` of them by the
ImageNet mean colour (zero after normalisation) and tracks the predicted class's probability;
**insertion** starts from a Gaussian-blurred copy (sigma = S/16) and puts the original pixels
back in the same order. ``T = FAITHFULNESS_STEPS``; both curves have T + 1 points (0 % ... 100 %)
and their areas are trapezoids over [0, 1]. A random pixel order (seeded) is the reference: a
faithful map deletes faster (lower deletion area) and inserts faster (higher insertion area).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from geocam_gui.core.analysis import measures as am
from geocam_gui.core.analysis.kinds import per_kind
from geocam_gui.core.explain.cam import compute_cams
from geocam_gui.core.errors import Cancelled
from geocam_gui.core.models import preprocess, target_layer

FAITHFULNESS_STEPS = 12
#: Images per forward pass of CAMs, and masked images per forward of the curves.
CAM_BATCH = 32
CURVE_CHUNK = 96
SEED = 1234
#: Peaks per image kept for discriminative elements, and the lowest peak kept relative to the
#: image's strongest one.
PEAKS_PER_IMAGE = 3
PEAK_MIN_RELATIVE = 0.5
#: Side of a mined patch as a fraction of the image side.
PATCH_FRACTION = 0.25
#: Maps kept per image for the agreement between models (resized to this side).
AGREEMENT_SIZE = 32

Check = Callable[[], None]


@dataclass
class PassResult:
    """Per-image arrays of one model's pass over the selected images (length N)."""

    logits: np.ndarray  # (N, K) float32
    hit: np.ndarray  # (N,) bool, pointing game on the true class map
    hit_defined: np.ndarray  # (N,) bool
    evidence_share: np.ndarray  # (N,) float, NaN where no mask or empty map
    sky_share: np.ndarray  # (N,) float
    sky_share_predicted: np.ndarray  # (N,) float, the predicted class's map on the sky
    random_hit: np.ndarray
    random_evidence_share: np.ndarray
    random_sky_share: np.ndarray
    deletion: np.ndarray  # (N, T + 1)
    insertion: np.ndarray
    random_deletion: np.ndarray
    random_insertion: np.ndarray
    agreement_maps: np.ndarray  # (N, A, A) float16, true-class maps
    peaks: list[dict] = field(default_factory=list)  # {"i", "y", "x", "score", "feature"}
    kind_hit: np.ndarray | None = None  # (N, K) pointing game per drawn kind (NaN: absent); see kinds.py
    kind_energy: np.ndarray | None = None  # (N, K) energy share per drawn kind
    half_area: np.ndarray | None = None  # (N,) share of the true-class map at >= half its peak
    layer_shape: tuple[int, int] = (0, 0)


def _check(cancel: Callable[[], bool] | None) -> None:
    if cancel is not None and cancel():
        raise Cancelled("The analysis was cancelled.")


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W) with reflected borders."""
    radius = int(min(max(1, round(3 * sigma)), x.shape[-1] - 1, x.shape[-2] - 1))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-(t * t) / (2 * sigma * sigma))
    k = k / k.sum()
    c = x.shape[1]
    y = F.pad(x, (radius, radius, 0, 0), mode="reflect")
    y = F.conv2d(y, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    y = F.pad(y, (0, 0, radius, radius), mode="reflect")
    return F.conv2d(y, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


TIE_ORDER = "seeded random permutation per image"


def _ranks(order_maps: np.ndarray, tie_seeds=None) -> np.ndarray:
    """(B, H, W) maps -> (B, P) position of each pixel in descending order. Ties are broken by a
    random permutation of the pixels from ``np.random.default_rng([SEED, 1, tie_seeds[b]])``
    (``tie_seeds`` defaults to 0..B-1), so they go in no spatial order and the same maps give the
    same ranks."""
    flat = order_maps.reshape(order_maps.shape[0], -1)
    seeds = range(len(flat)) if tie_seeds is None else tie_seeds
    tie = np.stack([np.random.default_rng([SEED, 1, int(t)]).permutation(flat.shape[1]) for t in seeds]) \
        if len(flat) else np.zeros((0, flat.shape[1]), np.int64)
    order = np.lexsort((tie, -flat), axis=1)
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(flat.shape[1])[None].repeat(len(flat), 0), axis=1)
    return ranks


@torch.no_grad()
def perturbation_curves(model: nn.Module, x: torch.Tensor, ranks: np.ndarray, cls: np.ndarray,
                        p0: np.ndarray, steps: int = FAITHFULNESS_STEPS,
                        cancel: Callable[[], bool] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Deletion and insertion curves (B, steps + 1) of the probability of class ``cls[b]``.

    ``x``: normalised images (B, 3, S, S); ``ranks`` (B, S*S): the order pixels go in;
    ``p0``: the probabilities on the unmodified images (the first deletion point and the last
    insertion point, so they are not recomputed).
    """
    B, _, H, W = x.shape
    P = H * W
    counts = np.round(np.linspace(0, 1, steps + 1) * P).astype(np.int64)
    blurred = gaussian_blur(x, max(1.0, H / 16))
    rk = torch.as_tensor(ranks, device=x.device).view(B, 1, H, W)
    jobs = [(b, t, "del") for b in range(B) for t in range(1, steps + 1)]
    jobs += [(b, t, "ins") for b in range(B) for t in range(0, steps)]
    deletion = np.zeros((B, steps + 1), np.float64)
    insertion = np.zeros((B, steps + 1), np.float64)
    deletion[:, 0] = p0
    insertion[:, steps] = p0
    for s in range(0, len(jobs), CURVE_CHUNK):
        _check(cancel)
        chunk = jobs[s : s + CURVE_CHUNK]
        idx = torch.as_tensor([b for b, _, _ in chunk], device=x.device)
        n = torch.as_tensor([counts[t] for _, t, _ in chunk], device=x.device).view(-1, 1, 1, 1)
        moved = rk[idx] < n  # pixels already removed (deletion) or revealed (insertion)
        is_del = torch.as_tensor([k == "del" for _, _, k in chunk], device=x.device).view(-1, 1, 1, 1)
        orig, blur = x[idx], blurred[idx]
        deleted = torch.where(moved, torch.zeros_like(orig), orig)
        inserted = torch.where(moved, orig, blur)
        batch = torch.where(is_del, deleted, inserted)
        prob = torch.softmax(model(batch).float(), dim=1)
        c = torch.as_tensor([int(cls[b]) for b, _, _ in chunk], device=x.device)
        p = prob.gather(1, c.view(-1, 1)).squeeze(1).cpu().numpy()
        for (b, t, kind), v in zip(chunk, p):
            (deletion if kind == "del" else insertion)[b, t] = v
    return deletion, insertion


def find_peaks(map_: np.ndarray, *, max_peaks: int = PEAKS_PER_IMAGE,
               min_relative: float = PEAK_MIN_RELATIVE, radius: int = 4) -> list[tuple[int, int, float]]:
    """Up to ``max_peaks`` local maxima (y, x, value) of a 2-D map by greedy non-maximum
    suppression (a square of ``radius`` px around each chosen peak is cleared); peaks below
    ``min_relative`` times the strongest are dropped. A constant map has no peaks."""
    m = np.array(map_, dtype=np.float64)
    top, low = m.max(), m.min()
    if not top > low:
        return []
    out = []
    for _ in range(max_peaks):
        flat = int(m.argmax())
        y, x = divmod(flat, m.shape[1])
        v = m[y, x]
        if not np.isfinite(v) or v < low + min_relative * (top - low) or (out and v <= low):
            break
        out.append((y, x, float(v)))
        m[max(0, y - radius) : y + radius + 1, max(0, x - radius) : x + radius + 1] = -np.inf
    return out


class _FirstOutput:
    """Forward hook keeping the first output of a layer (the activations of the batch)."""

    def __init__(self, layer: nn.Module):
        self.value: torch.Tensor | None = None
        self.handle = layer.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        if self.value is None and isinstance(output, torch.Tensor):
            self.value = output.detach().clone()

    def remove(self) -> None:
        self.handle.remove()


def model_pass(model: nn.Module, name: str, images: np.ndarray, labels: np.ndarray, *,
               method: str, evidence: np.ndarray, sky: np.ndarray, has_evidence: np.ndarray,
               has_sky: np.ndarray, device: torch.device, cancel: Callable[[], bool] | None = None,
               tick: Callable[[str], None] | None = None, parts: np.ndarray | None = None,
               n_kinds: int = 0) -> PassResult:
    """Run ``model`` over ``images`` (N, S, S, 3) uint8 with true ``labels`` and measure
    everything that needs the model's maps (see the module docstring).

    ``evidence``/``sky``: (N, S, S) bool masks; ``has_*``: which images have them. ``parts``:
    optional (N, S, S) label maps with ``n_kinds`` kinds (per-kind pointing game and energy).
    """
    N, S = len(images), images.shape[1]
    layer = target_layer(model, name)
    tol = am.pointing_tolerance(S)
    radius = max(1, int(round(PATCH_FRACTION * S / 2)))
    rng_maps = np.random.default_rng(SEED)
    nan = np.full(N, np.nan)
    out = dict(logits=[], hit=np.zeros(N, bool), hit_defined=np.zeros(N, bool), evidence_share=nan.copy(),
               sky_share=nan.copy(), sky_share_predicted=nan.copy(), random_hit=np.zeros(N, bool), random_evidence_share=nan.copy(),
               random_sky_share=nan.copy(), deletion=[], insertion=[], random_deletion=[], random_insertion=[],
               agreement_maps=[], half_area=[])
    peaks: list[dict] = []
    layer_shape = (0, 0)
    kinds = parts is not None and n_kinds > 1
    kind_hit, kind_energy = (np.full((N, n_kinds), np.nan) for _ in range(2)) if kinds else (None, None)
    for s in range(0, N, CAM_BATCH):
        _check(cancel)
        sl = slice(s, min(N, s + CAM_BATCH))
        x = preprocess(np.ascontiguousarray(images[sl]), device=device)
        cap = _FirstOutput(layer)
        try:
            res = compute_cams(model, x, layer, method=method, normalize="per_map")
        finally:
            cap.remove()
        maps = res.maps.float().cpu().numpy()  # (B, K, S, S)
        logits = res.logits.float().cpu()
        prob = res.probabilities()
        B = maps.shape[0]
        y = labels[sl]
        pred = prob.argmax(1)
        true_maps = maps[np.arange(B), y]
        pred_maps = maps[np.arange(B), pred]
        out["logits"].append(logits.numpy())
        out["half_area"].append(am.area_above(true_maps, 0.5))
        _localise(out, sl, true_maps, evidence[sl], sky[sl], has_evidence[sl], has_sky[sl], tol, rng_maps)
        if kinds:
            kind_hit[sl], kind_energy[sl] = per_kind(true_maps, parts[sl], n_kinds, tol)
        if has_sky[sl].any():
            k = np.flatnonzero(has_sky[sl])
            out["sky_share_predicted"][s + k] = am.energy_share(pred_maps[k], sky[sl][k])
        small = F.interpolate(torch.from_numpy(true_maps)[:, None], size=(AGREEMENT_SIZE,) * 2,
                              mode="bilinear", align_corners=False, antialias=S > AGREEMENT_SIZE)
        out["agreement_maps"].append(small[:, 0].numpy().astype(np.float16))
        p0 = prob[np.arange(B), pred]
        d, i = perturbation_curves(model, x, _ranks(pred_maps, range(s, s + B)), pred, p0, cancel=cancel)
        out["deletion"].append(d)
        out["insertion"].append(i)
        rr = np.stack([np.random.default_rng([SEED, s + b]).permutation(S * S) for b in range(B)])
        d, i = perturbation_curves(model, x, rr, pred, p0, cancel=cancel)
        out["random_deletion"].append(d)
        out["random_insertion"].append(i)
        acts = cap.value
        if acts is not None and acts.ndim == 4:
            layer_shape = tuple(acts.shape[-2:])
            _collect_peaks(peaks, acts.float().cpu().numpy(), true_maps, y, pred, s, radius)
        if tick is not None:
            tick(f"{name}: {sl.stop}/{N} images")
    cat = {k: np.concatenate(v) for k, v in out.items() if isinstance(v, list)}
    return PassResult(
        logits=cat["logits"], hit=out["hit"], hit_defined=out["hit_defined"],
        evidence_share=out["evidence_share"], sky_share=out["sky_share"],
        sky_share_predicted=out["sky_share_predicted"], random_hit=out["random_hit"],
        random_evidence_share=out["random_evidence_share"], random_sky_share=out["random_sky_share"],
        deletion=cat["deletion"], insertion=cat["insertion"], random_deletion=cat["random_deletion"],
        random_insertion=cat["random_insertion"], agreement_maps=cat["agreement_maps"], peaks=peaks,
        layer_shape=layer_shape, kind_hit=kind_hit, kind_energy=kind_energy, half_area=cat["half_area"])


def _localise(out: dict, sl: slice, maps, ev, sk, has_ev, has_sk, tol: int, rng) -> None:
    """Pointing game and energy shares of one batch, for the CAMs and for uniform-random maps."""
    random_maps = rng.random(maps.shape)
    idx = np.arange(sl.start, sl.stop)
    if has_ev.any():
        e = has_ev
        hit, defined = am.pointing_game(maps[e], ev[e], tol)
        out["hit"][idx[e]], out["hit_defined"][idx[e]] = hit, defined
        out["evidence_share"][idx[e]] = am.energy_share(maps[e], ev[e])
        rhit, _ = am.pointing_game(random_maps[e], ev[e], tol)
        out["random_hit"][idx[e]] = rhit
        out["random_evidence_share"][idx[e]] = am.energy_share(random_maps[e], ev[e])
    if has_sk.any():
        k = has_sk
        out["sky_share"][idx[k]] = am.energy_share(maps[k], sk[k])
        out["random_sky_share"][idx[k]] = am.energy_share(random_maps[k], sk[k])


def _collect_peaks(peaks: list, acts: np.ndarray, maps: np.ndarray, y, pred, start: int, radius: int) -> None:
    """Peaks of correctly classified images with the layer's feature vector under each peak."""
    S = maps.shape[-1]
    h, w = acts.shape[-2:]
    for b in range(len(maps)):
        if y[b] != pred[b]:
            continue
        for py, px, v in find_peaks(maps[b], radius=radius):
            fy, fx = min(h - 1, py * h // S), min(w - 1, px * w // S)
            feat = acts[b, :, fy, fx].astype(np.float64)
            norm = np.linalg.norm(feat)
            peaks.append({"i": start + b, "y": (py + 0.5) / S, "x": (px + 0.5) / S, "score": v,
                          "feature": (feat / norm if norm > 0 else feat).astype(np.float32)})


# --------------------------------------------------------------------------- sanity check


def cascade_groups(model: nn.Module) -> list[tuple[str, list[nn.Module]]]:
    """Parameterised modules grouped for cascading randomisation, top (output) layer first.

    Modules come in definition order, which is the forward order of the three models here; a
    residual block (``layerX.Y``) is one group, every other module with parameters is its own.
    """
    groups: dict[str, list[nn.Module]] = {}
    for mod_name, module in model.named_modules():
        if not any(True for _ in module.parameters(recurse=False)):
            continue
        parts = mod_name.split(".")
        key = ".".join(parts[:2]) if parts[0].startswith("layer") and len(parts) > 2 else mod_name
        groups.setdefault(key, []).append(module)
    return list(reversed(list(groups.items())))


def _reinit(modules: list[nn.Module], seed: int) -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in modules:
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
            else:  # pragma: no cover - every parameterised torchvision leaf has it
                for p in m.parameters(recurse=False):
                    nn.init.normal_(p, std=0.02)


def _maps(model: nn.Module, name: str, x: torch.Tensor, y: np.ndarray, method: str) -> np.ndarray:
    res = compute_cams(model, x, target_layer(model, name), method=method, normalize="per_map")
    m = res.maps.float().cpu().numpy()
    return m[np.arange(len(y)), y]


def sanity_cascade(model: nn.Module, name: str, images: np.ndarray, labels: np.ndarray, *, method: str,
                   device: torch.device, cancel: Callable[[], bool] | None = None,
                   tick: Callable[[str], None] | None = None) -> dict:
    """Adebayo et al. (2018) cascading parameter randomisation on ``images`` (n, S, S, 3).

    The trained model's true-class maps are compared with those of copies whose groups (see
    ``cascade_groups``) are re-initialised one more at a time from the top, each with a fixed
    seed. Returns ``{"steps": [{"randomised", "spearman", "ssim", "constant_maps"}...], "n"}``;
    step 0 is the trained model against itself. A map that became constant has no ranking: its
    Spearman correlation counts as 0 (it shares no order with the trained map).
    """
    x = preprocess(np.ascontiguousarray(images), device=device)
    y = np.asarray(labels)
    base = _maps(model, name, x, y, method)
    keep = np.ptp(base.reshape(len(base), -1), axis=1) > 0
    steps = [{"randomised": "(none)", "spearman": am.nan_stats(np.ones(int(keep.sum()))),
              "ssim": am.nan_stats(np.ones(int(keep.sum()))), "constant_maps": 0}]
    work = copy.deepcopy(model).to(device).eval()
    for k, (label, modules) in enumerate(cascade_groups(work), 1):
        _check(cancel)
        if not keep.any():  # every trained map is constant (an untrained model): nothing to rank
            steps.append({"randomised": label, "spearman": am.nan_stats(np.ones(0)),
                          "ssim": am.nan_stats(np.ones(0)), "constant_maps": 0})
            continue
        _reinit(modules, SEED + k)
        maps = _maps(work, name, x, y, method)
        b, m = base[keep], maps[keep]
        const = np.ptp(m.reshape(len(m), -1), axis=1) == 0
        rho = np.nan_to_num(am.spearman(b, m), nan=0.0)
        steps.append({"randomised": label, "spearman": am.nan_stats(rho), "ssim": am.nan_stats(am.ssim(b, m)),
                      "constant_maps": int(const.sum())})
        if tick is not None:
            tick(f"{name}: sanity check, randomised {label}")
    del work
    return {"n": int(keep.sum()), "n_constant_trained": int((~keep).sum()), "steps": steps}
