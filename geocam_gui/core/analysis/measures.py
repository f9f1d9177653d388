"""Numpy measures behind ``core.analysis``: ranks, Spearman, SSIM, pointing game, energy shares,
top-k IoU, curve areas and a seeded k-means. No scipy, no sklearn: each is a few lines here
and tested against its definition.

All batch functions take maps as ``(B, H, W)`` (or ``(B, P)`` flattened) float arrays and
return one value per row; a value that is undefined for a row (a constant map has no ranking,
an empty map has no energy) is ``NaN`` and is counted, never silently treated as a number.
"""

from __future__ import annotations

import numpy as np

#: Pointing-game tolerance as a fraction of the image side: Zhang et al. (2016) count a hit
#: within 15 px of the mask at 224 px input; the same fraction at any input size.
POINTING_TOLERANCE = 15 / 224
#: SSIM constants of Wang et al. (2004) for data in [0, 1], and the side of the uniform window
#: (scikit-image's default of 7).
SSIM_K1, SSIM_K2, SSIM_WINDOW = 0.01, 0.03, 7


def _rows(x) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[None]
    return a.reshape(a.shape[0], -1)


def rankdata(values) -> np.ndarray:
    """1-based ranks of a 1-D array, ties getting the average of their positions (like
    ``scipy.stats.rankdata(method="average")``)."""
    a = np.asarray(values, dtype=np.float64).ravel()
    order = np.argsort(a, kind="mergesort")
    s = a[order]
    new = np.empty(s.size, dtype=bool)
    if s.size:
        new[0] = True
        new[1:] = s[1:] != s[:-1]
    group = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    counts = np.diff(np.append(starts, s.size))
    average = starts + (counts - 1) / 2.0 + 1.0
    ranks = np.empty(s.size, dtype=np.float64)
    ranks[order] = average[group]
    return ranks


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    num = (a * b).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return np.clip(r, -1.0, 1.0)


def spearman(a, b) -> np.ndarray:
    """Spearman rank correlation of each row of ``a`` with the same row of ``b`` (maps of any
    shape, flattened per row). NaN where a row is constant (no ranking exists)."""
    A, B = _rows(a), _rows(b)
    if A.shape != B.shape:
        raise ValueError(f"spearman needs arrays of one shape, got {A.shape} and {B.shape}")
    ra = np.stack([rankdata(r) for r in A]) if len(A) else A
    rb = np.stack([rankdata(r) for r in B]) if len(B) else B
    return _pearson_rows(ra, rb)


def _box_mean(x: np.ndarray, w: int) -> np.ndarray:
    """Mean over every ``w x w`` window that fits ("valid" positions), batched (B, H, W)."""
    c = np.cumsum(np.cumsum(x, axis=1), axis=2)
    c = np.pad(c, ((0, 0), (1, 0), (1, 0)))
    s = c[:, w:, w:] - c[:, :-w, w:] - c[:, w:, :-w] + c[:, :-w, :-w]
    return s / (w * w)


def ssim(a, b, *, data_range: float = 1.0, window: int = SSIM_WINDOW) -> np.ndarray:
    """Mean structural similarity (Wang et al. 2004) of each map pair, (B, H, W) -> (B,).

    Uniform ``window x window`` windows (shrunk to the map's side if smaller), sample
    covariance (N / (N - 1), as scikit-image), constants ``(0.01 L)^2`` and ``(0.03 L)^2``.
    Identical maps give 1; a structured map against a constant one gives about 0.
    """
    A = np.asarray(a, dtype=np.float64)
    B = np.asarray(b, dtype=np.float64)
    if A.ndim == 2:
        A, B = A[None], B[None]
    if A.shape != B.shape or A.ndim != 3:
        raise ValueError(f"ssim needs two (B, H, W) arrays of one shape, got {A.shape} and {B.shape}")
    w = min(window, A.shape[1], A.shape[2])
    if w < 1:
        raise ValueError("ssim needs non-empty maps")
    n = w * w
    cov = n / (n - 1) if n > 1 else 1.0
    ux, uy = _box_mean(A, w), _box_mean(B, w)
    vx = (_box_mean(A * A, w) - ux * ux) * cov
    vy = (_box_mean(B * B, w) - uy * uy) * cov
    vxy = (_box_mean(A * B, w) - ux * uy) * cov
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.reshape(s.shape[0], -1).mean(axis=1)


def disk_offsets(radius: int) -> list[tuple[int, int]]:
    """Integer offsets (dy, dx) with dy^2 + dx^2 <= radius^2."""
    r = max(0, int(radius))
    return [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if dy * dy + dx * dx <= r * r]


def dilate(masks, radius: int) -> np.ndarray:
    """Binary dilation of (B, H, W) or (H, W) masks by a disk of ``radius`` pixels."""
    m = np.asarray(masks, dtype=bool)
    if radius <= 0:
        return m.copy()
    single = m.ndim == 2
    if single:
        m = m[None]
    r = int(radius)
    padded = np.pad(m, ((0, 0), (r, r), (r, r)))
    out = np.zeros_like(m)
    H, W = m.shape[1:]
    for dy, dx in disk_offsets(r):
        out |= padded[:, r + dy : r + dy + H, r + dx : r + dx + W]
    return out[0] if single else out


def pointing_tolerance(size: int) -> int:
    """The pointing-game tolerance in pixels for a ``size`` x ``size`` input (at least 1)."""
    return max(1, int(round(POINTING_TOLERANCE * size)))


def pointing_game(maps, masks, tolerance: int) -> tuple[np.ndarray, np.ndarray]:
    """(hit, defined) per map: ``hit`` is True when the map's maximum lies inside the mask
    dilated by ``tolerance`` px. ``defined`` is False for empty masks (nothing to point at;
    callers leave them out) and for constant maps (no maximum: they point nowhere, so ``hit``
    is False and callers count them as misses)."""
    M = np.asarray(maps, dtype=np.float64)
    K = np.asarray(masks, dtype=bool)
    if M.shape != K.shape or M.ndim != 3:
        raise ValueError(f"pointing_game needs (B, H, W) maps and masks of one shape, got {M.shape}, {K.shape}")
    flat = M.reshape(M.shape[0], -1)
    peak = flat.argmax(axis=1)
    defined = (flat.max(axis=1) > flat.min(axis=1)) & K.reshape(K.shape[0], -1).any(axis=1)
    grown = dilate(K, tolerance).reshape(K.shape[0], -1)
    hit = grown[np.arange(len(peak)), peak] & defined
    return hit, defined


def energy_share(maps, masks) -> np.ndarray:
    """Share of each map's total (non-negative) value inside its mask; NaN for an all-zero map."""
    M = np.clip(np.asarray(maps, dtype=np.float64), 0, None)
    K = np.asarray(masks, dtype=bool)
    if M.shape != K.shape:
        raise ValueError(f"energy_share needs maps and masks of one shape, got {M.shape}, {K.shape}")
    M = M.reshape(M.shape[0], -1)
    K = K.reshape(K.shape[0], -1)
    total = M.sum(axis=1)
    inside = (M * K).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / np.where(total > 0, total, 1.0), np.nan)


def area_above(maps, level: float = 0.5) -> np.ndarray:
    """Fraction of each map's pixels at or above ``level`` times its maximum: how much of the
    image an explanation covers (small: selective, large: wide regions); NaN for a map whose
    maximum is not positive."""
    M = np.asarray(maps, dtype=np.float64)
    M = M.reshape(M.shape[0], -1)
    peak = M.max(axis=1)
    with np.errstate(invalid="ignore"):
        covered = (M >= level * peak[:, None]).mean(axis=1)
    return np.where(peak > 0, covered, np.nan)


def top_fraction(maps, fraction: float = 0.2) -> np.ndarray:
    """Boolean masks of each map's ``fraction`` highest pixels (exactly ``round(fraction * P)``
    pixels; ties broken by position, deterministically). Shape as ``maps``."""
    M = np.asarray(maps, dtype=np.float64)
    flat = M.reshape(M.shape[0], -1)
    k = max(1, int(round(fraction * flat.shape[1])))
    order = np.argsort(-flat, axis=1, kind="stable")[:, :k]
    out = np.zeros(flat.shape, dtype=bool)
    np.put_along_axis(out, order, True, axis=1)
    return out.reshape(M.shape)


def iou(a, b) -> np.ndarray:
    """Intersection over union of boolean masks, per row; NaN where both are empty."""
    A = np.asarray(a, dtype=bool).reshape(len(a), -1)
    B = np.asarray(b, dtype=bool).reshape(len(b), -1)
    inter = (A & B).sum(axis=1)
    union = (A | B).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), np.nan)


def curve_area(y, x=None) -> np.ndarray:
    """Trapezoidal area under each row of ``y`` over ``x`` (default: evenly from 0 to 1),
    divided by the x range, so a constant curve at p has area p."""
    Y = np.asarray(y, dtype=np.float64)
    if Y.ndim == 1:
        Y = Y[None]
    X = np.linspace(0.0, 1.0, Y.shape[1]) if x is None else np.asarray(x, dtype=np.float64)
    span = X[-1] - X[0]
    if span <= 0:
        raise ValueError("curve_area needs increasing x")
    return (np.diff(X) * (Y[:, 1:] + Y[:, :-1]) / 2).sum(axis=1) / span


def nan_stats(values) -> dict:
    """``{"mean", "std", "n"}`` over the finite values (mean/std None when there are none)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std()), "n": int(v.size)}


def kmeans(x, k: int, *, seed: int = 0, iters: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means with k-means++ seeding from ``np.random.default_rng(seed)``.

    ``x`` (N, D) -> (labels (N,) int, centres (k, D)). ``k`` is capped at the number of
    distinct points; an emptied cluster is re-seeded with the point farthest from its centre.
    Same input and seed give the same result.
    """
    X = np.asarray(x, dtype=np.float64)
    if X.ndim != 2 or len(X) == 0:
        raise ValueError(f"kmeans needs a non-empty (N, D) array, got shape {X.shape}")
    k = int(max(1, min(k, len(np.unique(X, axis=0)))))
    rng = np.random.default_rng(seed)
    centres = [X[rng.integers(len(X))]]
    d2 = ((X - centres[0]) ** 2).sum(axis=1)
    for _ in range(1, k):
        p = d2 / d2.sum() if d2.sum() > 0 else np.full(len(X), 1 / len(X))
        c = X[rng.choice(len(X), p=p)]
        centres.append(c)
        d2 = np.minimum(d2, ((X - c) ** 2).sum(axis=1))
    C = np.stack(centres)
    labels = np.full(len(X), -1)
    for _ in range(iters):
        dist = ((X[:, None, :] - C[None]) ** 2).sum(axis=2)
        new = dist.argmin(axis=1)
        for j in range(k):
            if not (new == j).any():
                far = int(dist[np.arange(len(X)), new].argmax())
                new[far] = j
        if np.array_equal(new, labels):
            break
        labels = new
        C = np.stack([X[labels == j].mean(axis=0) for j in range(k)])
    return labels, C
