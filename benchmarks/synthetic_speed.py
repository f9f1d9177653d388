"""Speed of the demo-data generator (core/data/demo/__init__.py) against the goal of issue 3:
2,000 images of 128 px (with their two masks and label map) in at most 15 s on one core, and the
wall-time speed-up of its worker processes over one process in the same run.

There is no reference library for this, so the one-core reference is the goal itself: 2000 / 15
= 133 images/s; the parallel run's reference is the one-process run. CPU time of the one-process
run is reported beside wall time because shared machines stretch wall time.

    python benchmarks/synthetic_speed.py [--images 2000] [--size 128] [--views 1] [--workers N] [--repeat 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from geocam_gui.core.data import demo as synthetic

GOAL_IMAGES, GOAL_SECONDS = 2000, 15.0


def _run(args, workers: int) -> tuple[float, float]:
    """Best (wall, CPU of this process) over ``args.repeat`` runs with ``workers`` processes."""
    best = None
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            wall, cpu = time.perf_counter(), time.process_time()
            synthetic.generate_demo(Path(tmp) / "demo", per_class=args.images // 2, size=args.size,
                                    views_per_place=args.views, seed=0, workers=workers)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if best is None or wall < best[0]:
            best = (wall, cpu)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2000, help="images in all (half per class)")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--views", type=int, default=synthetic.DEFAULTS["views_per_place"], help="views per place")
    ap.add_argument("--workers", type=int, default=None, help="processes of the parallel run (default: as the app)")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each; the fastest is reported")
    args = ap.parse_args()
    n = args.images // 2 * 2
    workers = args.workers or synthetic.default_workers(n)
    wall, cpu = _run(args, 1)
    goal_rate = GOAL_IMAGES / GOAL_SECONDS
    rate = n / cpu
    print(f"demo data, {n} images of {args.size} px + 2 masks and a label map each, {args.views} view(s) per place:")
    print(f"  one process: wall {wall:.2f} s ({n / wall:.0f} images/s), CPU {cpu:.2f} s ({rate:.0f} images/s on one core)")
    print(f"  goal: {GOAL_IMAGES} images in {GOAL_SECONDS:.0f} s = {goal_rate:.0f} images/s")
    print(f"  ratio (CPU rate / goal rate): {rate / goal_rate:.2f}x"
          f"  -> {GOAL_IMAGES} images would take {GOAL_IMAGES / rate:.1f} s of one core")
    if workers > 1:
        par, _ = _run(args, workers)
        print(f"  {workers} worker processes: wall {par:.2f} s ({n / par:.0f} images/s), "
              f"speed-up over one process {wall / par:.2f}x")


if __name__ == "__main__":
    main()
