"""Re-blending an overlay: geocam's render.overlay against two common ways, in the same run.

What the viewer does on every opacity/colormap change: colour a 224 x 224 map (also from a
7 x 7 layer-resolution map, which needs a resize first) and blend it over a 224 x 224 RGB image.
References: a naive float64 pipeline (matplotlib colormap call + float blend) and matplotlib's
``ScalarMappable.to_rgba(bytes=True)`` + a float32 blend. Calls are interleaved, the median of
several rounds is reported in ms per call. The budget for a 60 Hz slider is 16 ms.

    .venv/bin/python benchmarks/render_speed.py [--rounds 15] [--calls 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

import matplotlib
import numpy as np

from geocam_gui.core.explain.render import colorize, overlay, resize_map


def naive_float64(image: np.ndarray, m: np.ndarray, opacity: float, cmap: str) -> np.ndarray:
    colour = matplotlib.colormaps[cmap](np.clip(m, 0, 1))[..., :3]  # float64 RGBA per call
    out = (1 - opacity) * image.astype(np.float64) / 255 + opacity * colour
    return (out * 255 + 0.5).astype(np.uint8)


def scalar_mappable(image: np.ndarray, m: np.ndarray, opacity: float, cmap: str) -> np.ndarray:
    sm = matplotlib.cm.ScalarMappable(cmap=cmap, norm=matplotlib.colors.Normalize(0, 1))
    colour = sm.to_rgba(m, bytes=True)[..., :3].astype(np.float32)
    out = (1 - opacity) * image.astype(np.float32) + opacity * colour
    return (out + 0.5).astype(np.uint8)


def _time(fn, calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return 1000 * (time.perf_counter() - t0) / calls


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--calls", type=int, default=20)
    p.add_argument("--size", type=int, default=224)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    n = args.size
    image = rng.integers(0, 256, (n, n, 3), dtype=np.uint8)
    small = rng.random((7, 7), dtype=np.float32)
    full = resize_map(small, (n, n))
    cases = {
        "geocam overlay (map at image size)": lambda: overlay(image, full, opacity=0.6, cmap="jet"),
        "geocam overlay (7x7 map, resized inside)": lambda: overlay(image, small, opacity=0.6, cmap="jet"),
        "geocam colorize only": lambda: colorize(full, "jet"),
        "naive float64 (matplotlib cmap call + blend)": lambda: naive_float64(image, full, 0.6, "jet"),
        "ScalarMappable.to_rgba + float32 blend": lambda: scalar_mappable(image, full, 0.6, "jet"),
    }
    ours = overlay(image, full, opacity=0.6, cmap="jet").astype(int)
    for name in ("naive float64 (matplotlib cmap call + blend)", "ScalarMappable.to_rgba + float32 blend"):
        assert np.abs(cases[name]().astype(int) - ours).max() <= 2, name  # same picture
    for fn in cases.values():  # warm-up: LUT cache, interpolation matrices
        fn()
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.rounds):
        for name, fn in cases.items():
            times[name].append(_time(fn, args.calls))
    base = statistics.median(times["geocam overlay (map at image size)"])
    print(f"{n} x {n} overlay, median of {args.rounds} rounds x {args.calls} calls")
    print("| pipeline | ms per call | vs geocam overlay |")
    print("|---|---:|---:|")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"| {name} | {med:.3f} | {med / base:.1f}x |")


if __name__ == "__main__":
    main()
