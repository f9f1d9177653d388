"""How fast ``index_dataset`` reads a large collection (no decoding), against a bare os.walk.

Generates a Pittsburgh-250k-like tree (folders 000..010, 24 views per panorama) and a Tokyo
24/7-like tree (folders 03814..03829, 12 views per panorama) of tiny files, then times:

- the reference: ``os.walk`` + ``os.stat`` of every file (the least any index must do);
- ``index_dataset(..., verify="none")``: scan, groups, seeded grouped split, audit of counts;
- the same with ``balance="weighted"``;
- with every file stat'ed and the duplicate search on (``verify="sample"`` without decoding).

The files hold a few distinct bytes, so the duplicate search hashes many of them: a worst case.

    python benchmarks/index_speed.py --files 100000
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from geocam_gui.core.data.datasets import index_dataset  # noqa: E402


def make_tree(base: Path, files: int) -> tuple[Path, Path]:
    pitts, tokyo = base / "Pittsburgh", base / "Tokyo247"
    half = files // 2
    n = 0
    for i in range(half):
        pano, view = divmod(i, 24)
        folder = pitts / f"{min(pano // 1000, 10):03d}"
        if view == 0:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{pano:06d}_pitch{1 + view // 12}_yaw{1 + view % 12}.jpg").write_bytes(b"\xff\xd8" + bytes([i % 251]))
        n += 1
    for i in range(files - half):
        pano, view = divmod(i, 12)
        folder = tokyo / f"{3814 + min(pano // 300, 15):05d}"
        if view == 0:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"pano{pano:018d}_012_{30 * view:03d}.png").write_bytes(b"\x89PNG" + bytes([i % 251]))
    return pitts, tokyo


def bare_walk(roots) -> int:
    count = 0
    for root in roots:
        for folder, _dirs, names in os.walk(root):
            for name in names:
                os.stat(os.path.join(folder, name))
                count += 1
    return count


def best_of(fn, repeat: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", help="where to build (or reuse) the tree; kept afterwards (default: a temp dir, removed)")
    args = ap.parse_args()

    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="geocam_index_bench_"))
    try:
        t = time.perf_counter()
        roots = (base / "Pittsburgh", base / "Tokyo247")
        if args.dir and roots[0].is_dir():
            print(f"reusing the tree under {base}")
        else:
            roots = make_tree(base, args.files)
            print(f"generated {args.files} files in {time.perf_counter() - t:.1f} s under {base}")
        bare_walk(roots)  # warm the directory cache for every measurement alike
        t_ref, n_ref = best_of(lambda: bare_walk(roots), args.repeat)
        kw = dict(labels=["pittsburgh", "tokyo"], verify="none")
        t_idx, index = best_of(lambda: index_dataset(list(roots), **kw), args.repeat)
        t_w, _ = best_of(lambda: index_dataset(list(roots), balance="weighted", **kw), args.repeat)
        t_stat, _ = best_of(lambda: index_dataset(list(roots), verify="sample", audit_per_class=0,
                                                  labels=kw["labels"]), args.repeat)
        assert len(index.samples) == n_ref == args.files, (len(index.samples), n_ref)
        counts = index.counts()
        print(f"reference os.walk + stat : {t_ref:6.3f} s  ({n_ref / t_ref:,.0f} files/s)")
        print(f"index_dataset            : {t_idx:6.3f} s  ({len(index.samples) / t_idx:,.0f} files/s)  "
              f"ratio {t_idx / t_ref:.2f}x the bare walk")
        print(f"index_dataset weighted   : {t_w:6.3f} s")
        print(f"index_dataset + stat and duplicate search (verify=sample, 0 decoded): {t_stat:6.3f} s")
        print("split: " + "; ".join(f"{s} " + ", ".join(f"{c} {n}" for c, n in counts[s].items()) for s in counts))
        verdict = "PASS" if t_idx <= 2.0 else "FAIL"
        print(f"target <= 2 s for {args.files} files: {verdict} ({t_idx:.2f} s)")
    finally:
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
