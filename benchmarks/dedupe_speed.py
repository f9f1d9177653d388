"""How long the near-duplicate search takes, against comparing all pairs and against decoding.

The hashes are random 64-bit values (plus 10 % planted near copies), the best case for the
banded search; hashes of real photos are more alike and fill the bands' buckets more (the search
stops with a sentence after ``dedupe.MAX_CANDIDATES`` candidate pairs). References, same run:

- all pairs compared with numpy (chunked XOR + popcount), on ``--brute`` hashes, scaled by N^2;
- decoding + 32 px thumbnail + pHash of one 640x480 JPEG (what ``verify all`` costs per file).

    python benchmarks/dedupe_speed.py --images 100000 --brute 20000
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from geocam_gui.core.data import dedupe, images  # noqa: E402


def hashes(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h = rng.integers(0, 2**63, size=n, dtype=np.int64).astype(np.uint64) << np.uint64(1)
    k = n // 10
    flips = np.zeros(k, dtype=np.uint64)
    for _ in range(6):
        flips |= np.uint64(1) << rng.integers(0, 64, size=k).astype(np.uint64)
    return np.concatenate([h, h[:k] ^ flips])


def brute(h: np.ndarray, threshold: int) -> int:
    found = 0
    for i in range(0, len(h), 512):
        block = h[i:i + 512]
        d = dedupe.popcount((block[:, None] ^ h[None, :]).ravel()).reshape(len(block), -1)
        rows, cols = np.nonzero(d <= threshold)
        found += int((cols > rows + i).sum())
    return found


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--brute", type=int, default=20_000)
    args = ap.parse_args()
    h = hashes(args.images * 10 // 11)
    t = time.perf_counter()
    pairs = dedupe.near_pairs(h)
    groups = dedupe.components(len(h), pairs)
    banded = time.perf_counter() - t
    small = hashes(args.brute * 10 // 11, seed=1)
    t = time.perf_counter()
    n_brute = brute(small, dedupe.THRESHOLD)
    brute_s = time.perf_counter() - t
    assert n_brute == len(dedupe.near_pairs(small)), "banded search disagrees with all pairs"
    scaled = brute_s * (len(h) / len(small)) ** 2
    from PIL import Image

    rng = np.random.default_rng(2)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.jpg"
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
        path.write_bytes(buf.getvalue())
        t = time.perf_counter()
        for _ in range(50):
            dedupe.phash(images.load_resized(path, 32))
        per_file = (time.perf_counter() - t) / 50
    print(f"{len(h):,} hashes: banded search + union-find {banded:.1f} s ({len(pairs):,} pairs, {len(groups):,} sets)")
    print(f"all pairs of {len(small):,}: {brute_s:.1f} s -> scaled to {len(h):,}: {scaled:.0f} s "
          f"(banded is {scaled / banded:.0f}x faster)")
    print(f"decode + thumbnail + pHash of a 640x480 JPEG: {1000 * per_file:.1f} ms -> {len(h):,} files: "
          f"{per_file * len(h):.0f} s on one core (the search adds {100 * banded / (per_file * len(h)):.0f} %)")


if __name__ == "__main__":
    main()
