"""Near-duplicate photos: a perceptual hash per image, near-duplicates joined into one group.

Two files of one photo (a re-encode, a resize, a slightly shifted or trimmed crop, a colour
tweak) must never sit in two splits, whatever folders they are in: the test score would then
measure memory, not skill. The index groups by panorama id, subfolder or file name
(:mod:`~geocam_gui.core.data.layouts`); this module adds a content rule on top.

* **Hash**: a 64-bit DCT perceptual hash (pHash) of the 32 x 32 grey thumbnail the audit
  already decodes: the 8 x 8 lowest DCT frequencies, each bit = coefficient above their median
  (the DC term left out of the median).
* **Near-duplicate**: Hamming distance <= :data:`THRESHOLD` (8 of 64 bits). Measured on two
  natural photos (scikit-learn's samples): crops keeping 95 % of each side differ by 2-14
  bits, 90 % crops by 8-22, unrelated photos (and distant parts of one photo) by 20 or more. On
  the synthetic demo scenes re-encodes, resizes and brightness changes differ by 0-2 bits, trims
  of 2-3 % by 2-10, other views of the same place by 4-8 (134 of 300 such pairs caught), and no
  two of 44,550 pairs of *different* places came within 8 bits (the closest: 10).
  So re-encodes, resizes, colour tweaks and light trims are caught; *heavy* crops (keeping 90 %
  of a side or less) mostly are not: a hash of the whole image cannot see that two crops share a
  region. Keep such crops of one photo in one subfolder and give each class at least
  ``MIN_SUBFOLDER_GROUPS`` subfolders, or write a manifest with a group column.
* **Bounded cost**: no all-pairs comparison. The hash is cut into 4 bands of 16 bits; by
  pigeonhole two hashes within 8 bits agree within 2 bits on at least one band, so candidates are
  found by looking up each band and its 136 neighbours within 2 bits in a 65,536-entry table
  (numpy, linear in N per probe), then checked on all 64 bits; groups form by union-find.
"""

from __future__ import annotations

import numpy as np

#: Largest Hamming distance (of 64 bits) at which two images count as the same photo.
THRESHOLD = 8
_BANDS = 4
_BAND_BITS = 16
_THUMB = 32


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m


_DCT = _dct_matrix(_THUMB)
_LUMA = np.array([0.299, 0.587, 0.114])
_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def phash(thumb: np.ndarray) -> int:
    """The 64-bit pHash of an RGB (or grey) uint8 thumbnail of exactly 32 x 32 pixels."""
    arr = np.asarray(thumb, dtype=np.float64)
    if arr.ndim == 3:
        arr = arr[..., :3] @ _LUMA
    if arr.shape != (_THUMB, _THUMB):
        raise ValueError(f"pHash needs a {_THUMB}x{_THUMB} thumbnail, got {arr.shape}")
    coeffs = (_DCT @ arr @ _DCT.T)[:8, :8].ravel()
    bits = coeffs > np.median(coeffs[1:])
    return int(np.packbits(bits).view(">u8")[0])


def popcount(values: np.ndarray) -> np.ndarray:
    """Set bits of each uint64 (works on numpy < 2, which lacks ``bitwise_count``)."""
    v = np.ascontiguousarray(values, dtype=np.uint64)
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(v).astype(np.int64)
    return _POPCOUNT8[v.view(np.uint8)].reshape(-1, 8).sum(axis=1, dtype=np.int64)


def _masks(bits: int, radius: int) -> np.ndarray:
    out = [0]
    if radius >= 1:
        out += [1 << i for i in range(bits)]
    if radius >= 2:
        out += [(1 << i) | (1 << j) for i in range(bits) for j in range(i + 1, bits)]
    return np.array(out, dtype=np.int64)


#: Most candidate pairs :func:`near_pairs` checks before giving up (bounds time and memory when
#: hashes are unusually alike; uniform hashes of 100k images need ~1e8).
MAX_CANDIDATES = 400_000_000


class TooAlike(Exception):
    """The hashes are too alike for the banded search to stay cheap."""


def near_pairs(hashes: np.ndarray, threshold: int = THRESHOLD, *,
               max_candidates: int = MAX_CANDIDATES) -> np.ndarray:
    """All index pairs ``(i, j)``, ``i < j``, whose hashes differ in at most ``threshold`` bits.

    Exact for ``threshold`` <= 11 (4 bands, probes within ``threshold // 4`` bits of each band);
    returns an ``(M, 2)`` int64 array. Raises :class:`TooAlike` once more than
    ``max_candidates`` candidate pairs would have to be checked.
    """
    h = np.asarray(hashes, dtype=np.uint64).ravel()
    n = len(h)
    if n < 2:
        return np.zeros((0, 2), dtype=np.int64)
    if not 0 <= threshold <= 11:
        raise ValueError("near_pairs is exact for thresholds 0..11 only")
    radius = threshold // _BANDS
    masks = _masks(_BAND_BITS, radius)
    found = []
    checked = 0
    for b in range(_BANDS):
        band = ((h >> np.uint64(b * _BAND_BITS)) & np.uint64(0xFFFF)).astype(np.int64)
        order = np.argsort(band, kind="stable")
        table_count = np.bincount(band, minlength=1 << _BAND_BITS)
        table_start = np.cumsum(table_count) - table_count
        for mask in masks:
            probe = band ^ mask
            lo = table_start[probe]
            count = table_count[probe]
            has = np.nonzero(count)[0]
            if not len(has):
                continue
            reps = count[has]
            checked += int(reps.sum())
            if checked > max_candidates:
                raise TooAlike(f"more than {max_candidates:,} candidate pairs")
            left = np.repeat(has, reps)
            starts = np.repeat(lo[has], reps)
            offsets = np.arange(int(reps.sum())) - np.repeat(np.cumsum(reps) - reps, reps)
            right = order[starts + offsets]
            keep = left < right  # each unordered pair once, never an image with itself
            left, right = left[keep], right[keep]
            close = popcount(h[left] ^ h[right]) <= threshold
            if close.any():
                found.append(np.stack([left[close], right[close]], axis=1))
    if not found:
        return np.zeros((0, 2), dtype=np.int64)
    return np.unique(np.concatenate(found), axis=0)


def components(n: int, pairs: np.ndarray) -> list[list[int]]:
    """Connected components (union-find) of ``n`` items joined by ``pairs``; only those of size > 1."""
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a, b in np.asarray(pairs, dtype=np.int64).tolist():
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    return [g for g in groups.values() if len(g) > 1]


class NearDuplicates:
    """The hashed records of an index and their near-duplicate pairs (see :func:`find`)."""

    def __init__(self, items: list, pairs: np.ndarray, threshold: int):
        self.items, self.pairs, self.threshold = items, pairs, threshold

    def _same_label(self) -> np.ndarray:
        if not len(self.pairs):
            return np.zeros(0, dtype=bool)
        labels = np.array([f.label for f in self.items], dtype=object)
        return labels[self.pairs[:, 0]] == labels[self.pairs[:, 1]]

    def sets(self) -> list[list]:
        """Sets (records) of near-duplicates of one class, joined transitively."""
        return [[self.items[i] for i in c] for c in components(len(self.items), self.pairs[self._same_label()])]

    def merge_groups(self) -> dict:
        """Give every group holding a near-duplicate of another group's file one shared name (the
        alphabetically first), so that the split keeps them together. Records whose split a
        manifest already gave are left as they are. Returns the audit's summary."""
        sets = self.sets()
        parent: dict[tuple[str, str], tuple[str, str]] = {}

        def find(k):
            while parent.setdefault(k, k) != k:
                parent[k] = parent[parent[k]]
                k = parent[k]
            return k

        for members in sets:
            keys = sorted({(f.label, f.group) for f in members if f.split is None})
            for k in keys[1:]:
                a, b = find(keys[0]), find(k)
                if a != b:
                    parent[max(a, b)] = min(a, b)
        roots = {find(k) for k in list(parent)}
        for f in self.items:
            if f.split is None and (f.label, f.group) in parent:
                f.group = find((f.label, f.group))[1]
        return {"checked": True, "threshold": self.threshold, "hashed_files": len(self.items),
                "pairs": int(len(self.pairs)), "sets": len(sets), "files": sum(len(m) for m in sets),
                "groups_merged": len(parent) - len(roots), "largest_set": max(map(len, sets), default=0),
                "across_classes": int((~self._same_label()).sum()),
                "examples": [sorted(f.path for f in m)[:4] for m in sets[:10]]}

    def across_splits(self) -> int:
        """How many near-duplicate sets of one class have files in more than one split."""
        return sum(len({f.split for f in m}) > 1 for m in self.sets())


def find(found: list, hashes: dict[str, int], threshold: int = THRESHOLD) -> NearDuplicates:
    """The near-duplicate pairs among the records of ``found`` that have a hash in ``hashes``."""
    items = [f for f in found if f.path in hashes]
    pairs = near_pairs(np.array([hashes[f.path] for f in items], dtype=np.uint64), threshold)
    return NearDuplicates(items, pairs, threshold)


def merge_near_duplicates(found: list, inspected: dict, verify: str) -> dict:
    """The index's step: merge the groups of near-duplicate photos when every file was decoded
    (their hashes come free with the audit's thumbnails, ``inspected[path][4]``), or say why not.

    The returned summary holds the :class:`NearDuplicates` under ``"_found"`` until the caller
    has split the data and replaced it by ``across_splits``.
    """
    if verify == "none":
        return {"checked": False, "reason": "no file was decoded (verify none)"}
    hashes = {p: r[4] for p, r in inspected.items() if len(r) > 4}
    if len(hashes) < len(found):
        return {"checked": False, "reason": f"only {len(hashes)} of {len(found)} files were decoded "
                                            "(a sample); index with verify all to check every file"}
    try:
        near = find(found, hashes)
    except TooAlike as exc:
        return {"checked": False, "reason": f"the images' hashes are too alike to compare cheaply ({exc})"}
    info = near.merge_groups()
    info["_found"] = near
    return info
