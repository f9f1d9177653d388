"""Speed of the demo-data generator (core/data/demo/__init__.py) against the goal of issue 3:
2,000 images of 128 px (with their two masks and label map) in at most 15 s on one core.

There is no reference library for this, so the reference is the goal itself: 2000 / 15 =
133 images/s. The generator is single-threaded; CPU time of this process is reported beside
wall time because shared machines stretch wall time.

    python benchmarks/synthetic_speed.py [--images 2000] [--size 128] [--views 4] [--repeat 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from geocam_gui.core.data import demo as synthetic

GOAL_IMAGES, GOAL_SECONDS = 2000, 15.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2000, help="images in all (half per class)")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--views", type=int, default=4, help="views per place")
    ap.add_argument("--repeat", type=int, default=1, help="runs; the best one is reported")
    args = ap.parse_args()
    best = None
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            wall, cpu = time.perf_counter(), time.process_time()
            synthetic.generate_demo(Path(tmp) / "demo", per_class=args.images // 2, size=args.size,
                                    views_per_place=args.views, seed=0)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if best is None or cpu < best[1]:
            best = (wall, cpu)
    wall, cpu = best
    n = args.images // 2 * 2
    goal_rate = GOAL_IMAGES / GOAL_SECONDS
    rate = n / cpu
    print(f"demo data, {n} images of {args.size} px + 2 masks and a label map each, {args.views} views per place:")
    print(f"  wall {wall:.2f} s ({n / wall:.0f} images/s), CPU {cpu:.2f} s ({rate:.0f} images/s on one core)")
    print(f"  goal: {GOAL_IMAGES} images in {GOAL_SECONDS:.0f} s = {goal_rate:.0f} images/s")
    print(f"  ratio (CPU rate / goal rate): {rate / goal_rate:.2f}x"
          f"  -> {GOAL_IMAGES} images would take {GOAL_IMAGES / rate:.1f} s of one core")


if __name__ == "__main__":
    main()
