"""Run every benchmark in this folder, one after another, each in its own process (``make bench``).

Each script prints its own measurement against its reference; this runner only chooses sizes and
reports which scripts failed. Sizes:

* default: small sizes, minutes in all on a laptop - enough to see every ratio;
* ``--quick``: the smallest sizes, a smoke test that every script still runs (the numbers mean
  little);
* ``--full``: each script's own defaults, the sizes ``RESULTS.md`` reports (long: the GUI
  benchmark alone builds a 100,000-image folder).

A script in this folder that the table below does not know runs with its own defaults, so a new
benchmark is never skipped silently. Results are printed, not written: copy the lines worth
keeping into ``benchmarks/RESULTS.md`` with the command that produced them.

    python benchmarks/run_all.py [--quick | --full] [--only cache_speed render_speed] [--list]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# script stem -> (small arguments, smoke-test arguments)
SIZES: dict[str, tuple[list[str], list[str]]] = {
    "cache_speed": (["--images", "200", "--sizes", "128", "224", "--epochs", "2"],
                    ["--images", "24", "--sizes", "64", "--epochs", "1", "--workers", "1"]),
    "cam_speed": (["--repeats", "3"],
                  ["--repeats", "1", "--models", "shallow", "--size", "64", "--no-cuda", "--threads", "1"]),
    "gui_responsiveness": (["--n", "10000"], ["--n", "200"]),
    "index_speed": (["--files", "20000", "--repeat", "1"], ["--files", "300", "--repeat", "1"]),
    "render_speed": (["--rounds", "5", "--calls", "10"], ["--rounds", "1", "--calls", "2"]),
    "synthetic_speed": (["--images", "400"], ["--images", "20", "--size", "64"]),  # at least 10 per class
    "units_speed": (["--repeats", "1"], ["--repeats", "1", "--models", "shallow", "--limit", "16", "--per-class", "20"]),
    "train_throughput": (["--batches", "8", "--repeats", "1"],
                         ["--models", "shallow", "--batches", "2", "--warmup", "1", "--repeats", "1",
                          "--image-size", "32", "--batch-size", "8", "--device", "cpu"]),
}


def scripts() -> list[Path]:
    """Every benchmark script here (all ``*.py`` but this runner), in name order."""
    return sorted(p for p in HERE.glob("*.py") if p.name != Path(__file__).name and not p.name.startswith("_"))


def command(script: Path, mode: str) -> list[str]:
    small, quick = SIZES.get(script.stem, ([], []))
    args = {"small": small, "quick": quick, "full": []}[mode]
    return [sys.executable, str(script), *args]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smallest sizes: check that every script runs")
    size.add_argument("--full", action="store_true", help="each script's own defaults (the RESULTS.md sizes)")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="run only these scripts (file stems)")
    ap.add_argument("--list", action="store_true", help="print the commands and run nothing")
    args = ap.parse_args(argv)
    mode = "quick" if args.quick else "full" if args.full else "small"
    todo = scripts()
    if args.only:
        unknown = sorted(set(args.only) - {p.stem for p in todo})
        if unknown:
            ap.error(f"no benchmark named {', '.join(unknown)} (have: {', '.join(p.stem for p in todo)})")
        todo = [p for p in todo if p.stem in args.only]
    env = {**os.environ, "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "offscreen"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    print(f"{len(todo)} benchmark(s), {mode} sizes; results are printed below - keep the ones worth "
          f"keeping in {HERE / 'RESULTS.md'}, with their command.", flush=True)
    failed = []
    for script in todo:
        cmd = command(script, mode)
        shown = " ".join([Path(cmd[0]).name, *[os.path.relpath(c, ROOT) if c == str(script) else c for c in cmd[1:]]])
        print(f"\n=== {shown}", flush=True)
        if args.list:
            continue
        t = time.perf_counter()
        rc = subprocess.run(cmd, cwd=ROOT, env=env).returncode
        print(f"--- {script.stem}: {'ok' if rc == 0 else f'FAILED (exit {rc})'} in {time.perf_counter() - t:.0f} s",
              flush=True)
        if rc != 0:
            failed.append(script.stem)
    if failed:
        print(f"\n{len(failed)} benchmark(s) failed: {', '.join(failed)}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
