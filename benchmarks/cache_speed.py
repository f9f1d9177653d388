"""Cached loader vs decoding the files every epoch, in images per second.

Writes ``--images`` 640x480 JPEGs (street-view size) into a temp folder, then at each size:

- reference: one epoch that decodes + resizes every file with ``images.load_resized`` on a
  thread pool of ``--workers`` threads (what a loader without a cache does every epoch);
- the cache: ``decoded_split`` once (timed: the one-off build), then ``--epochs`` epochs read
  the way training reads them: the shuffled order of ``train.loader.epoch_order`` over the
  decodable rows, batches from ``BatchFeeder.iterate`` (gathered from the memory map) and
  ``BatchFeeder.batch`` (normalised float NCHW on the CPU), the work done before the model.
  The reference ends with the same normalisation (``models.preprocess``), so both sides
  produce the same tensors.

    python benchmarks/cache_speed.py --images 400 --sizes 128 224
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_jpegs(folder: Path, n: int) -> list[str]:
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:480, 0:640]
    paths = []
    for i in range(n):
        base = np.stack([(xx * (i % 7 + 1)) % 256, (yy * (i % 5 + 1)) % 256, (xx + yy + 13 * i) % 256], -1)
        noise = rng.integers(0, 40, (480, 640, 3))
        p = folder / f"{i:05d}_pitch1_yaw{i % 12 + 1}.jpg"
        Image.fromarray((base + noise).clip(0, 255).astype(np.uint8)).save(p, quality=90)
        paths.append(str(p))
    return paths


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 224])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="decode threads")
    ap.add_argument("--feeder-workers", type=int, default=0,
                    help="BatchFeeder prefetch threads (TrainConfig.workers; default 0 as in training)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="geocam_cache_bench_"))
    os.environ["GEOCAM_HOME"] = str(tmp / "home")  # a fresh cache: the build is really timed
    import torch

    from geocam_gui.core.data import cache
    from geocam_gui.core.data import images
    from geocam_gui.core.data.datasets import Sample
    from geocam_gui.core.models import preprocess
    from geocam_gui.core.train.loader import BatchFeeder, epoch_order

    try:
        t = time.perf_counter()
        paths = make_jpegs(tmp, args.images)
        print(f"wrote {len(paths)} JPEGs of 640x480 in {time.perf_counter() - t:.1f} s; "
              f"{args.workers} decode threads; batch {args.batch}")
        samples = [Sample(p, "pittsburgh" if i % 2 else "tokyo", p, "train", {}) for i, p in enumerate(paths)]
        for size in args.sizes:
            t = time.perf_counter()
            with ThreadPoolExecutor(args.workers) as pool:
                for start in range(0, len(paths), args.batch):
                    batch = np.stack(list(pool.map(lambda p: images.load_resized(p, size), paths[start:start + args.batch])))
                    preprocess(batch)
            ref = len(paths) / (time.perf_counter() - t)

            t = time.perf_counter()
            arrays = cache.decoded_split(samples, size, workers=args.workers)
            build = len(paths) / (time.perf_counter() - t)
            assert arrays.ok.all()

            t = time.perf_counter()
            n = 0
            feeder = BatchFeeder(arrays.images, arrays.labels, torch.device("cpu"))
            positions = torch.from_numpy(np.flatnonzero(np.asarray(arrays.ok)).astype(np.int64))
            for epoch in range(args.epochs):
                order = positions[epoch_order(len(positions), seed=0, epoch=epoch)]
                for _pos, idx, staged in feeder.iterate(order, args.batch, workers=args.feeder_workers):
                    x, _y = feeder.batch(idx, staged)
                    n += len(x)
            cached = n / (time.perf_counter() - t)
            print(f"{size:4d} px  decode every epoch: {ref:8.0f} img/s | cache build (once): {build:8.0f} img/s | "
                  f"cached epochs: {cached:9.0f} img/s | ratio {cached / ref:6.1f}x "
                  f"({'PASS' if cached >= 10 * ref else 'FAIL'} >= 10x)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
