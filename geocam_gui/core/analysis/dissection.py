"""Network Dissection (Bau et al., CVPR 2017) on data with per-pixel label maps.

For one layer of a model and one split:

* every unit's activation threshold ``T_u`` is its top ``QUANTILE`` (0.5 %) quantile over all
  spatial positions of all images (at the layer's own resolution), estimated in one streaming
  pass by ``StreamingQuantile``;
* each unit's map is upsampled bilinearly (``align_corners=False``) to the label resolution and
  thresholded, ``M_u = up(A_u) > T_u``;
* ``IoU(u, c) = sum |M_u & L_c| / sum |M_u | L_c|``, the sums running over every labelled image of
  the split; a unit is a detector of its best concept when that IoU exceeds ``IOU_THRESHOLD``
  (0.04).

Label maps (the demo generator's format): ``OUT/_masks/<class>/<stem>_parts.png``, an 8-bit
single-channel PNG (mode "P" or "L") of the image's size whose pixel value is a kind id, and
``OUT/parts_legend.json`` = ``{"kinds": ["unlabelled", "sky", ...]}`` (index = pixel value,
0 = unlabelled, never a concept). They are hostile input: a legend that is not a short list of
short names, or a map of the wrong mode, size or with values outside the legend, is skipped with
a reason, never guessed at.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from geocam_gui.core.data import demo as synthetic
from geocam_gui.core.files import publish_folder
from geocam_gui.core.errors import DataError

QUANTILE = 0.995  # top 0.5 %
IOU_THRESHOLD = 0.04
BINS = 2048
MAX_KINDS = 255
_EPS32 = float(np.finfo(np.float32).eps)
_SLACK = 1e-5  # share of a unit's range added to the error bound for float rounding at bin edges


class StreamingQuantile:
    """Quantiles per unit of a stream of activations, in ``units * bins`` counters (int64).

    Each unit has a histogram of ``bins`` equal bins over ``[lo, lo + span)``, set by the first
    batch; when a later value falls outside, the unit's range doubles towards it (pairs of bins
    merge), so the bins never get wider than twice the unit's final range / ``bins``.
    ``quantile(q)`` returns, per unit, the estimate and a guaranteed bound on its distance to
    ``numpy.quantile(all values, q)`` (linear interpolation): both lie between the left edge of
    the bin holding order statistic ``floor(r)`` and the right edge of the bin holding
    ``ceil(r)``, ``r = q (n - 1)``; that interval's width (usually one bin) is the bound.
    """

    def __init__(self, units: int, bins: int = BINS):
        if units < 1 or bins < 2 or bins % 2:
            raise ValueError("StreamingQuantile needs units >= 1 and an even number of bins >= 2")
        self.units, self.bins = int(units), int(bins)
        self.counts = torch.zeros(self.units * self.bins, dtype=torch.int64)
        self.lo: torch.Tensor | None = None  # float64 (U,)
        self.span: torch.Tensor | None = None
        self.n = 0

    def nbytes(self) -> int:
        return self.counts.numel() * 8 + 2 * self.units * 8

    def add(self, values: torch.Tensor) -> None:
        """``values`` (units, n) of any float dtype and device; NaNs are not allowed."""
        v = values.detach().to(torch.float32)  # binned where the values are (a GPU stays busy)
        if v.ndim != 2 or v.shape[0] != self.units:
            raise ValueError(f"expected ({self.units}, n) values, got {tuple(v.shape)}")
        if v.shape[1] == 0:
            return
        mn, mx = v.min(1).values.cpu().double(), v.max(1).values.cpu().double()
        if self.lo is None:
            span = mx - mn
            tiny = torch.clamp(mn.abs() * 1e-6, min=1e-12)
            self.lo, self.span = mn.clone(), torch.where(span > 0, span * (1 + 1e-6), tiny)
        self._grow(mn, mx)
        scale = (self.bins / self.span).float().to(v.device)[:, None]
        # values >= lo, so truncation is the floor; the clamp keeps rounding at the top edge in
        idx = ((v - self.lo.float().to(v.device)[:, None]) * scale).clamp_(0, self.bins - 1).long()
        idx += torch.arange(self.units, device=v.device)[:, None] * self.bins
        self.counts += torch.bincount(idx.reshape(-1), minlength=self.units * self.bins).cpu()
        self.n += v.shape[1]

    def _grow(self, mn: torch.Tensor, mx: torch.Tensor) -> None:
        counts = self.counts.view(self.units, self.bins)
        half = self.bins // 2
        for u in torch.nonzero((mn < self.lo) | (mx >= self.lo + self.span)).flatten().tolist():
            while True:
                c = counts[u]
                merged = c[0::2] + c[1::2]
                if mx[u] >= self.lo[u] + self.span[u]:
                    c.zero_()
                    c[:half] = merged
                elif mn[u] < self.lo[u]:
                    c.zero_()
                    c[half:] = merged
                    self.lo[u] -= self.span[u]
                else:
                    break
                self.span[u] *= 2

    def quantile(self, q: float) -> tuple[np.ndarray, np.ndarray]:
        """(estimate (U,), error bound (U,)) of the ``q`` quantile of every unit's values."""
        if self.n == 0 or self.lo is None:
            raise ValueError("no values were added")
        counts = self.counts.view(self.units, self.bins).numpy()
        cum = np.cumsum(counts, axis=1)
        r = q * (self.n - 1)
        k_lo, k_hi = math.floor(r), math.ceil(r)
        w = (self.span / self.bins).numpy()
        lo = self.lo.numpy()
        est, err = np.empty(self.units), np.empty(self.units)
        for u in range(self.units):
            b_lo = int(np.searchsorted(cum[u], k_lo, side="right"))
            b_hi = int(np.searchsorted(cum[u], k_hi, side="right"))

            def at(k, b):  # rank k spread evenly inside its bin b
                before = cum[u, b - 1] if b else 0
                return lo[u] + (b + (k - before + 0.5) / counts[u, b]) * w[u]

            v_lo, v_hi = at(k_lo, b_lo), at(k_hi, b_hi)
            est[u] = v_lo + (r - k_lo) * (v_hi - v_lo)
            # + float32 rounding in the binning: values near a bin edge may land in its neighbour
            edge = max(abs(lo[u]), abs(lo[u] + self.span[u].item()))
            err[u] = (b_hi + 1 - b_lo) * w[u] + _SLACK * self.span[u].item() + 8 * _EPS32 * edge
        return est, err


# --------------------------------------------------------------------------- label maps


def read_legend(roots) -> tuple[list[str] | None, str]:
    """The kinds of ``parts_legend.json`` in the first of ``roots`` that has one (read by the
    demo generator's own reader), or (None, why not)."""
    for root in roots:
        p = Path(root) / synthetic.LEGEND
        if not p.is_file():
            continue
        try:
            kinds = synthetic.parts_legend(root)
        except DataError as exc:
            return None, str(exc)
        if not 2 <= len(kinds) <= MAX_KINDS or len(set(kinds)) != len(kinds):
            return None, f"{p} must name 2 to {MAX_KINDS} distinct kinds."
        return kinds, ""
    return None, ("The data has no per-pixel label maps (no parts_legend.json), so there is no Network "
                  "Dissection: only the filters and the top-activating patches are shown.")


def parts_path(image_path: str | Path) -> Path:
    """Where the label map of an image lives: ``<root>/_masks/<class>/<stem>_parts.png``."""
    return synthetic.mask_paths(image_path)["parts"]


def load_label_map(image_path: str | Path, size: int, n_kinds: int) -> tuple[np.ndarray | None, str]:
    """The label map of an image resized (nearest) to ``size`` x ``size`` as uint8, or
    (None, reason). The map must be mode P or L, the image's size, values below ``n_kinds``."""
    mp = parts_path(image_path)
    if not mp.is_file():
        return None, "no label map"
    try:
        with Image.open(mp) as im:
            if im.mode not in ("P", "L"):
                return None, f"label map mode {im.mode} (P or L expected)"
            with Image.open(image_path) as src:
                if src.size != im.size:
                    return None, f"label map size {im.size} differs from the image's {src.size}"
            arr = np.asarray(im.resize((size, size), Image.Resampling.NEAREST), dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        return None, f"unreadable label map ({exc})"
    if arr.size and int(arr.max()) >= n_kinds:
        return None, f"label value {int(arr.max())} is not in the legend ({n_kinds} kinds)"
    return arr, ""


# --------------------------------------------------------------------------- IoU


@lru_cache(maxsize=32)
def interpolation_matrix(n_in: int, n_out: int, device="cpu") -> torch.Tensor:
    """(n_out, n_in) weights of 1-D linear interpolation with ``align_corners=False`` and clamped
    edges: ``R_h @ A @ R_w.T`` is ``F.interpolate(A, mode="bilinear", align_corners=False)``."""
    src = ((torch.arange(n_out, dtype=torch.float64) + 0.5) * n_in / n_out - 0.5).clamp(min=0)
    i0 = src.floor().long().clamp(max=n_in - 1)
    i1 = (i0 + 1).clamp(max=n_in - 1)
    frac = src - i0
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    rows = torch.arange(n_out)
    m.index_put_((rows, i0), 1 - frac, accumulate=True)
    m.index_put_((rows, i1), frac, accumulate=True)
    return m.float().to(device)


def upsample(maps: torch.Tensor, size: int) -> torch.Tensor:
    """(P, h, w) -> (P, size, size) bilinear (align_corners=False) as two matrix products
    (about 3x faster than ``F.interpolate`` on one channel per map on a CPU)."""
    rh = interpolation_matrix(maps.shape[-2], size, maps.device)
    rw = interpolation_matrix(maps.shape[-1], size, maps.device)
    return rh @ maps @ rw.T


@lru_cache(maxsize=32)
def window_rows(n_in: int, n_out: int, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """For each input index c, the output indices whose linear interpolation uses c (with a
    non-zero weight), padded to one length: ``(index (n_in, L) long, valid (n_in, L) bool)``."""
    m = interpolation_matrix(n_in, n_out) > 0  # (n_out, n_in)
    lists = [torch.nonzero(m[:, c]).flatten() for c in range(n_in)]
    L = max(1, max(len(x) for x in lists))
    index = torch.zeros(n_in, L, dtype=torch.long)
    valid = torch.zeros(n_in, L, dtype=torch.bool)
    for c, x in enumerate(lists):
        index[c, : len(x)], valid[c, : len(x)] = x, True
    return index.to(device), valid.to(device)


class IoUCounter:
    """Sums over labelled images of ``|M_u & L_c|``, ``|M_u|`` and ``|L_c|`` (float64 counts).

    Bilinear interpolation never exceeds the largest of the values it mixes, so a unit whose map
    on an image has no value above its threshold has an empty mask there: only the (image, unit)
    pairs with a value above the threshold are upsampled (about 0.5 % of the positions are, so
    usually a small share of the pairs).
    """

    def __init__(self, thresholds: np.ndarray, n_kinds: int, *, device="cpu", chunk: int = 256):
        self.t = torch.as_tensor(np.asarray(thresholds), dtype=torch.float32, device=device)
        self.units, self.kinds = len(thresholds), int(n_kinds)
        self.inter = torch.zeros(self.units, self.kinds, dtype=torch.float64)
        self.act = torch.zeros(self.units, dtype=torch.float64)
        self.lab = torch.zeros(self.kinds, dtype=torch.float64)
        self.images = 0
        self.device, self.chunk = device, chunk

    def add(self, acts: torch.Tensor, labels: np.ndarray) -> None:
        """``acts`` (B, U, h, w) of B labelled images, ``labels`` (B, S, S) uint8 kind ids."""
        if len(labels) == 0:
            return
        S = labels.shape[-1]
        lab = torch.as_tensor(np.ascontiguousarray(labels), device=self.device).long().view(len(labels), -1)
        self.lab += torch.bincount(lab.view(-1), minlength=self.kinds).double().cpu()
        acts = acts.to(self.device, torch.float32)
        hot = acts > self.t.view(1, -1, 1, 1)
        n_hot = hot.flatten(2).sum(2)  # (B, U)
        # one hot cell: the mask lies in the output pixels that have that cell as a neighbour
        b1, u1 = torch.nonzero(n_hot == 1, as_tuple=True)
        for s in range(0, len(b1), 4 * self.chunk):
            b, u = b1[s : s + 4 * self.chunk], u1[s : s + 4 * self.chunk]
            self._window(acts[b, u], hot[b, u], b, u, lab, S)
        b_idx, u_idx = torch.nonzero(n_hot > 1, as_tuple=True)
        for s in range(0, len(b_idx), self.chunk):
            b, u = b_idx[s : s + self.chunk], u_idx[s : s + self.chunk]
            up = upsample(acts[b, u], S)  # (P, S, S)
            pair, pix = torch.nonzero(up.view(len(b), -1) > self.t[u][:, None], as_tuple=True)  # the masks, sparse
            self._count(u[pair], lab[b[pair], pix])
        self.images += len(labels)

    def _count(self, unit: torch.Tensor, kind: torch.Tensor) -> None:
        self.inter += torch.bincount(unit * self.kinds + kind,
                                     minlength=self.units * self.kinds).view(self.units, self.kinds).double().cpu()
        self.act += torch.bincount(unit, minlength=self.units).double().cpu()

    def _window(self, maps, hot, b, u, lab, S: int) -> None:
        """Masks of maps with exactly one cell above the threshold, computed only on the output
        rows and columns that interpolate from that cell (``window_rows``)."""
        h, w = maps.shape[-2:]
        flat = hot.flatten(1).float().argmax(1)
        cy, cx = flat // w, flat % w
        rows_of, rvalid = window_rows(h, S, maps.device)
        cols_of, cvalid = window_rows(w, S, maps.device)
        ri, ci = rows_of[cy], cols_of[cx]  # (P, L) output rows / columns (clamped), validity below
        rh = interpolation_matrix(h, S, maps.device)[ri]  # (P, Lr, h)
        rw = interpolation_matrix(w, S, maps.device)[ci]  # (P, Lc, w)
        up = rh @ maps @ rw.transpose(1, 2)  # (P, Lr, Lc)
        inside = (up > self.t[u].view(-1, 1, 1)) & rvalid[cy][:, :, None] & cvalid[cx][:, None, :]
        pair, y, x = torch.nonzero(inside, as_tuple=True)
        pix = ri[pair, y] * S + ci[pair, x]
        self._count(u[pair], lab[b[pair], pix])

    def ious(self) -> np.ndarray:
        """(U, C) IoU; 0 where the union is empty. Column 0 (unlabelled) is left at 0."""
        union = self.act[:, None] + self.lab[None, :] - self.inter
        iou = torch.where(union > 0, self.inter / union.clamp(min=1), torch.zeros_like(union)).numpy()
        iou[:, 0] = 0.0
        return iou


def summarise(ious: np.ndarray, kinds: list[str], iou_threshold: float = IOU_THRESHOLD) -> dict:
    """Per-unit best concept, detectors and unique concepts, and the IoU ranking per concept."""
    if ious.shape[1] != len(kinds):
        raise DataError("IoU table and legend disagree")
    best = ious.argmax(1)
    best_iou = ious[np.arange(len(ious)), best]
    detector = best_iou > iou_threshold
    by_concept: dict[str, int] = {}
    for u in np.flatnonzero(detector):
        by_concept[kinds[best[u]]] = by_concept.get(kinds[best[u]], 0) + 1
    ranking = {}
    for c in range(1, len(kinds)):
        order = np.argsort(-ious[:, c], kind="stable")[:20]
        ranking[kinds[c]] = [[int(u), float(ious[u, c])] for u in order if ious[u, c] > 0]
    return {
        "iou_threshold": iou_threshold,
        "detectors": int(detector.sum()),
        "unique_concepts": len(by_concept),
        "by_concept": dict(sorted(by_concept.items(), key=lambda kv: (-kv[1], kv[0]))),
        "ranking": ranking,
        "best": [kinds[b] if d else None for b, d in zip(best, detector)],
        "best_iou": best_iou.astype(float).tolist(),
    }


class LabelSource:
    """Label maps of a list of image paths at ``size``: ``source(rows) -> (labels, has)``.

    ``prepare()`` decodes every map once into ``cache_dir()/labels/<key>/`` (a uint8 memmap
    ``(N, size, size)``, ``has.npy``, ``problems.json``; the key hashes the paths, the maps' sizes
    and times, ``size`` and the legend), so a second scan (the randomised model, another layer)
    reads arrays; without ``prepare()`` maps are decoded as asked. Problems are collected in
    ``problems`` as ``(path, reason)``; images without a map are counted in ``missing``.
    """

    def __init__(self, image_paths: list[str], size: int, legend: list[str]):
        self.paths, self.size, self.legend, self.kinds = list(image_paths), int(size), list(legend), len(legend)
        self.problems: list[tuple[str, str]] = []
        self.missing = 0
        self._labels: np.ndarray | None = None
        self._has: np.ndarray | None = None

    def _key(self) -> str:
        h = hashlib.sha256(json.dumps([self.size, self.legend]).encode())
        for p in self.paths:
            try:
                st = parts_path(p).stat()
                h.update(f"{p}:{st.st_size}:{st.st_mtime_ns}\n".encode())
            except OSError:
                h.update(f"{p}:-\n".encode())
        return h.hexdigest()[:32]

    def prepare(self, cancel=None) -> None:
        from geocam_gui.core import paths as gpaths
        from geocam_gui.core.errors import Cancelled

        entry = gpaths.cache_dir() / "labels" / self._key()
        if not (entry / "has.npy").is_file():
            tmp = entry.parent / f".{entry.name}.tmp-{os.getpid()}-{id(self)}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            try:
                arr = np.lib.format.open_memmap(tmp / "labels.npy", "w+", np.uint8, (len(self.paths), self.size, self.size))
                has = np.zeros(len(self.paths), bool)
                for s in range(0, len(self.paths), 64):
                    if cancel is not None and cancel():
                        raise Cancelled("Reading the label maps was cancelled.")
                    rows = np.arange(s, min(len(self.paths), s + 64))
                    arr[rows], has[rows] = self._decode(rows)
                arr.flush()
                del arr
                (tmp / "problems.json").write_text(json.dumps([self.missing, self.problems]), encoding="utf-8")
                np.save(tmp / "has.npy", has)
                publish_folder(tmp, entry)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        self._labels = np.load(entry / "labels.npy", mmap_mode="r")
        self._has = np.load(entry / "has.npy")
        self.missing, problems = json.loads((entry / "problems.json").read_text(encoding="utf-8"))
        self.problems = [tuple(p) for p in problems]

    def __call__(self, rows) -> tuple[np.ndarray, np.ndarray]:
        rows = np.asarray(rows)
        if self._labels is not None:
            return np.asarray(self._labels[rows]), self._has[rows]
        return self._decode(rows)

    def _decode(self, rows) -> tuple[np.ndarray, np.ndarray]:
        labels = np.zeros((len(rows), self.size, self.size), np.uint8)
        has = np.zeros(len(rows), bool)
        for i, r in enumerate(rows):
            arr, why = load_label_map(self.paths[int(r)], self.size, self.kinds)
            if arr is not None:
                labels[i], has[i] = arr, True
            elif why == "no label map":
                self.missing += 1
            else:
                self.problems.append((self.paths[int(r)], why))
        return labels, has
