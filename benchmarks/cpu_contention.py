"""Training beside a busy program: the GUI's training child with and without its thread governor.

The GUI trains in a child process at ``SCHED_IDLE`` (``core.background``). This runs that child as
the GUI does (``core.train.child.run_queue`` in a spawned process, CPU, the model's CPU defaults
with capped epochs) on a generated demo set, once with the child's ``ThreadGovernor``
(``core.cpu_share``) and once without (the reference: a fixed thread count), alternating, each
both on a quiet machine and while ``--busy`` other processes (``while True: pass`` at normal
priority) each keep a core busy. Reported: the warm epoch's images/s (the last epoch's
``images_per_s``), and the ratio governed / fixed.

    python benchmarks/cpu_contention.py                       # shallow and ResNet18, one busy core
    python benchmarks/cpu_contention.py --models vgg11 --batches 6
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import queue
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def child_run(model: str, index, out: Path, *, govern: bool, epochs: int, batches: int) -> dict:
    from geocam_gui.core.train import child
    from geocam_gui.core.train.config import default_config

    cfg = default_config(model, "cpu")
    cfg.epochs, cfg.max_batches_per_epoch, cfg.val_limit = epochs, batches, 64
    ctx = mp.get_context("spawn")
    events, cancel, pause = ctx.Queue(), ctx.Event(), ctx.Event()
    proc = ctx.Process(target=child.run_queue, args=([cfg], index, str(out), events, cancel, pause),
                       kwargs={"govern_threads": govern}, daemon=True)
    proc.start()
    rates, changes, failed = [], [], None
    while True:
        try:
            msg = events.get(timeout=600)
        except queue.Empty:
            failed = "no message for 10 minutes"
            break
        if isinstance(msg, child.Done):
            break
        if isinstance(msg, child.ModelFailed):
            failed = msg.message
        if isinstance(msg, child.ModelEvent):
            if msg.event.kind == "epoch":
                rates.append(msg.event.data["images_per_s"])
            elif msg.event.kind == "log" and "threads" in msg.event.data:
                changes.append(msg.event.data["message"])
    proc.join(30)
    if failed:
        raise SystemExit(f"{model}: {failed}")
    return {"images_per_s": rates[-1], "epochs": rates, "governor": changes}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["shallow", "resnet18"])
    ap.add_argument("--busy", type=int, default=1, help="busy processes beside the training (default 1)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batches", type=int, default=40, help="batches per epoch (default 40)")
    ap.add_argument("--per-class", type=int, default=200)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)

    from geocam_gui.core.data.datasets import open_data
    from geocam_gui.core.data.demo import generate_demo

    results = []
    with tempfile.TemporaryDirectory(prefix="geocam-bench-") as tmp:
        data = generate_demo(Path(tmp) / "demo", per_class=args.per_class, size=64, seed=0)
        index = open_data(data)
        for load in ("quiet", "busy"):
            hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                    for _ in range(args.busy if load == "busy" else 0)]
            try:
                time.sleep(0.5)
                for model in args.models:
                    row = {"model": model, "load": load}
                    for govern in (False, True):
                        r = child_run(model, index, Path(tmp) / f"{model}-{load}-{govern}", govern=govern,
                                      epochs=args.epochs, batches=args.batches)
                        row["governed" if govern else "fixed"] = r
                    row["ratio"] = row["governed"]["images_per_s"] / row["fixed"]["images_per_s"]
                    results.append(row)
                    print(f"{model:9s} {load:5s} fixed {row['fixed']['images_per_s']:7.1f} img/s  governed "
                          f"{row['governed']['images_per_s']:7.1f} img/s  ratio {row['ratio']:.2f}  "
                          f"{row['governed']['governor']}", flush=True)
            finally:
                for h in hogs:
                    h.kill()
                    h.wait()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
