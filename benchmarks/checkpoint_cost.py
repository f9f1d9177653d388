"""Checkpoint cost: epoch time of the engine with and without its per-epoch state saves.

For each model, ``Trainer.run`` on a generated demo set twice in the same process, alternating:
once as shipped (each epoch's weights + optimiser moments written by the background writer, best
hard-linked), once with ``StateWriter.save`` replaced by a no-op (the reference: no checkpoint at
all). The epoch time is the wall time from the run's "start" event to its last "epoch" event (the
last save handed to the writer), divided by the epochs: training, validation, the state copy at
each epoch end, and any wait for a previous write still running are all inside it. The last
save's write, which no later epoch hides, is reported apart ("final flush": once per run). Best of ``--repeats`` per mode (a burst
of load from other jobs on a shared machine should not decide the ratio). The final best
re-save with test metrics (once per run, not per epoch) is outside the timed span.

On a machine shared with other jobs wall time swings with their load, so the same span is also
measured in CPU seconds of this process (all threads: training, the state copy, the writer thread),
which the other jobs do not change: the work checkpointing adds, whatever the load.

``--save-only`` measures one epoch-end save by itself instead (no training running beside it): the
state copy on the calling thread, then the write (background thread, waited for), in wall and CPU
seconds per model, best of ``--repeats``: the work a save adds, without the noise of training. Its
reference, same run: the previous version's save of an improved epoch, on the training thread
(``save_checkpoint`` of best and of last, then ``torch.save`` of ``last_state.pt`` with the weights
again and the optimiser).

    python benchmarks/checkpoint_cost.py                          # CPU defaults (64 px), 3 models
    python benchmarks/checkpoint_cost.py --save-only              # one save, by itself
    python benchmarks/checkpoint_cost.py --device cuda --image-size 224 --per-class 2000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def one_run(model: str, index, out: Path, *, save: bool, epochs: int, device: str, image_size: int | None,
            batch_size: int | None) -> tuple[float, float, float, int]:
    """(wall s per epoch, CPU s per epoch, final flush s, bytes of state written per epoch) of one run."""
    from geocam_gui.core.train import loop as tl
    from geocam_gui.core.train import saver
    from geocam_gui.core.train.config import default_config
    from geocam_gui.core.train.engine import Trainer

    cfg = default_config(model, device)
    cfg.epochs = epochs
    cfg.image_size = image_size or cfg.image_size
    cfg.batch_size = batch_size or cfg.batch_size
    marks: dict[str, float] = {}
    written: list[int] = []
    real_save, real_close, real_write = saver.StateWriter.save, tl.TrainingLoop._close_writer, saver.StateWriter._write

    def close(self):
        real_close(self)
        marks.setdefault("end", time.perf_counter())
        marks.setdefault("cpu_end", time.process_time())

    def write(self, snap, job):
        events = real_write(self, snap, job)
        written.append(self.bytes_written)
        return events

    def callback(event):
        if event.kind == "start":
            marks["start"] = time.perf_counter()
            marks["cpu_start"] = time.process_time()
        elif event.kind == "epoch":
            marks["last_epoch"] = time.perf_counter()

    saver.StateWriter.save = real_save if save else (lambda self, net, opt, job: None)
    saver.StateWriter._write = write
    tl.TrainingLoop._close_writer = close
    try:
        Trainer(cfg, index, out, callback).run()
    finally:
        saver.StateWriter.save, tl.TrainingLoop._close_writer, saver.StateWriter._write = real_save, real_close, real_write
    return ((marks["last_epoch"] - marks["start"]) / epochs, (marks["cpu_end"] - marks["cpu_start"]) / epochs,
            marks["end"] - marks["last_epoch"], (sum(written) // len(written) if written else 0))


def save_only(models: list[str], repeats: int) -> None:
    """Wall and CPU seconds of ``StateWriter.save`` + ``wait`` for AdamW state of each model."""
    import torch

    from geocam_gui.core import checkpoints as ckpt
    from geocam_gui.core.models import build_model
    from geocam_gui.core.train.saver import EpochSave, StateWriter, save_train_state

    print(f"{'model':<9} {'copy (wall)':>11} {'write+fsync (wall)':>18} {'total CPU':>10} {'state':>10} | "
          f"previous: {'wall (training thread)':>22} {'CPU':>8} {'written':>10}")
    for model in models:
        net = build_model(model, 2)
        opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
        net(torch.randn(2, 3, 64, 64)).sum().backward()
        opt.step()  # AdamW's moments exist from the first step
        meta = ckpt.base_meta(model, ["a", "b"], 64, epoch=1)
        with tempfile.TemporaryDirectory(prefix="geocam-save-only-") as tmp:
            writer = StateWriter(Path(tmp), torch.device("cpu"))
            best = (float("inf"), float("inf"), float("inf"))
            for r in range(repeats + 1):  # the first save also allocates the host buffers
                job = EpochSave(r + 1, meta, True, {}, [], {"epoch": r + 1}, "x")
                t0, c0 = time.perf_counter(), time.process_time()
                writer.save(net, opt, job)
                t1 = time.perf_counter()
                writer.wait()
                t2, c2 = time.perf_counter(), time.process_time()
                if r:
                    best = min(best, (t1 - t0, t2 - t1, c2 - c0))
            old = (float("inf"), float("inf"))
            for r in range(repeats):
                t0, c0 = time.perf_counter(), time.process_time()
                ckpt.save_checkpoint(Path(tmp) / "old" / "best", net, meta)
                ckpt.save_checkpoint(Path(tmp) / "old" / "last", net, meta)
                save_train_state(Path(tmp) / "old" / "last_state.pt", {
                    "epoch": 1, "model": {k: v.detach().clone() for k, v in net.state_dict().items()},
                    "optimizer": opt.state_dict(), "config": "{}", "history": "[]", "best": "{}", "fingerprint": "x"})
                old = min(old, (time.perf_counter() - t0, time.process_time() - c0))
            old_bytes = sum(f.stat().st_size for f in (Path(tmp) / "old").iterdir())
            print(f"{model:<9} {best[0]:>9.3f} s {best[1]:>16.3f} s {best[2]:>8.3f} s "
                  f"{writer.bytes_written / 1e6:>7.1f} MB | {'':>10}{old[0]:>20.3f} s {old[1]:>6.3f} s "
                  f"{old_bytes / 1e6:>7.1f} MB", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["shallow", "resnet18", "vgg11"])
    parser.add_argument("--per-class", type=int, default=80, help="demo images per class (split 60/20/20)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--image-size", type=int, default=None, help="default: the device default (64 px on a CPU)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the device default per model")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--save-only", action="store_true", help="time one save by itself (see above)")
    args = parser.parse_args(argv)

    import torch

    if args.save_only:
        if args.threads:
            torch.set_num_threads(args.threads)
        save_only(args.models, args.repeats)
        return 0

    from geocam_gui.core.data.datasets import open_data
    from geocam_gui.core.data.demo import generate_demo

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="geocam-ckpt-bench-") as tmp:
        data = generate_demo(Path(tmp) / "demo", per_class=args.per_class, size=args.image_size or 64, seed=0)
        index = open_data(data)
        n_train = len(index.split("train"))
        print(f"{n_train} train / {len(index.split('val'))} val images, {args.epochs} epochs, "
              f"device {args.device}, torch threads {torch.get_num_threads()}")
        print("per epoch, best of repeats: wall seconds | CPU seconds (all threads of this process)")
        print(f"{'model':<9} {'wall: none':>10} {'ckpt':>8} {'added':>7} | {'CPU: none':>9} {'ckpt':>8} {'added':>7} "
              f"| {'final flush':>11} | {'state/epoch':>11}")
        for model in args.models:
            wall = {True: float("inf"), False: float("inf")}
            cpu = {True: float("inf"), False: float("inf")}
            nbytes, flush = 0, float("inf")
            for r in range(args.repeats):
                for save in ((False, True) if r % 2 == 0 else (True, False)):
                    out = Path(tmp) / f"{model}-{r}-{int(save)}"
                    w, c, f, n = one_run(model, index, out, save=save, epochs=args.epochs, device=args.device,
                                      image_size=args.image_size, batch_size=args.batch_size)
                    wall[save], cpu[save] = min(wall[save], w), min(cpu[save], c)
                    nbytes = max(nbytes, n)
                    flush = min(flush, f) if save else flush
            print(f"{model:<9} {wall[False]:>8.2f} s {wall[True]:>6.2f} s {wall[True] / wall[False] - 1:>+7.1%} | "
                  f"{cpu[False]:>7.2f} s {cpu[True]:>6.2f} s {cpu[True] / cpu[False] - 1:>+7.1%} | "
                  f"{flush:>9.2f} s | {nbytes / 1e6:>8.1f} MB", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
