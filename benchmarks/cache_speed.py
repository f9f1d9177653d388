"""Cached loader vs decoding the files every epoch, in images per second.

Writes ``--images`` 640x480 JPEGs (street-view size) into a temp folder, then at each size:

- reference: one epoch that decodes + resizes every file with ``images.load_resized`` on a
  thread pool of ``--workers`` threads (what a loader without a cache does every epoch);
- the cache: ``decoded_split`` once (timed: the one-off build), then ``--epochs`` epochs read
  the way training reads them: the shuffled order of ``train.loader.epoch_order`` over the
  decodable rows, batches from ``BatchFeeder.iterate`` / ``gather_uint8`` (from the memory map).

Two ratios: uint8 batches (what the cache replaces: decoding), and with the normalisation to
float NCHW added on both sides (``models.preprocess`` / ``BatchFeeder.batch``), which a CPU
training loop also pays; on a GPU the normalisation runs on the device.

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
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
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

    if args.threads:
        torch.set_num_threads(args.threads)

    try:
        t = time.perf_counter()
        paths = make_jpegs(tmp, args.images)
        print(f"wrote {len(paths)} JPEGs of 640x480 in {time.perf_counter() - t:.1f} s; "
              f"{args.workers} decode threads; {torch.get_num_threads()} torch threads; batch {args.batch}")
        samples = [Sample(p, "pittsburgh" if i % 2 else "tokyo", p, "train", {}) for i, p in enumerate(paths)]
        for size in args.sizes:
            # reference: decode + resize every file every epoch (uint8 batch), then normalise
            t_dec = t_norm = 0.0
            with ThreadPoolExecutor(args.workers) as pool:
                for start in range(0, len(paths), args.batch):
                    t = time.perf_counter()
                    batch = np.stack(list(pool.map(lambda p: images.load_resized(p, size), paths[start:start + args.batch])))
                    t_dec += time.perf_counter() - t
                    t = time.perf_counter()
                    preprocess(batch)
                    t_norm += time.perf_counter() - t

            t = time.perf_counter()
            arrays = cache.decoded_split(samples, size, workers=args.workers)
            build = len(paths) / (time.perf_counter() - t)
            assert arrays.ok.all()

            # the cache, read as training reads it: BatchFeeder.iterate -> gather_uint8 -> batch
            c_gather = c_norm = 0.0
            n = 0
            feeder = BatchFeeder(arrays.images, arrays.labels, torch.device("cpu"))
            positions = torch.from_numpy(np.flatnonzero(np.asarray(arrays.ok)).astype(np.int64))
            for epoch in range(args.epochs):
                order = positions[epoch_order(len(positions), seed=0, epoch=epoch)]
                t = time.perf_counter()
                for _pos, idx, staged in feeder.iterate(order, args.batch, workers=args.feeder_workers):
                    staged = staged if staged is not None else feeder.gather_uint8(idx)
                    t1 = time.perf_counter()
                    c_gather += t1 - t
                    x, _y = feeder.batch(idx, staged)
                    t = time.perf_counter()
                    c_norm += t - t1
                    n += len(x)
            ref_u8, cached_u8 = len(paths) / t_dec, n / c_gather
            ref_f, cached_f = len(paths) / (t_dec + t_norm), n / (c_gather + c_norm)
            print(f"{size:4d} px  uint8 batches: decode every epoch {ref_u8:7.0f} img/s | cache build (once) "
                  f"{build:6.0f} img/s | cached {cached_u8:9.0f} img/s | ratio {cached_u8 / ref_u8:7.1f}x "
                  f"({'PASS' if cached_u8 >= 10 * ref_u8 else 'FAIL'} >= 10x)")
            print(f"{size:4d} px  + normalised float NCHW (what the CPU loop gets): decode every epoch "
                  f"{ref_f:7.0f} img/s | cached {cached_f:9.0f} img/s | ratio {cached_f / ref_f:5.1f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
