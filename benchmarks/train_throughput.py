"""Training throughput: GeoCAM's engine end to end vs a bare PyTorch loop, same run.

Engine: ``Trainer.run`` on a generated demo set - decoded uint8 cache, batches gathered by
index, augmentation (random resized crop + flip) and normalisation on the device, AdamW step,
metrics; its own ``images_per_s`` of a warm epoch (validation and checkpoint writes excluded).
Reference: the same model, batch, size, optimiser and device on float tensors already in memory
(already normalised, no augmentation): forward, cross-entropy, backward, step, with torch's
default optimiser implementation. On CUDA both use bf16 autocast and channels_last; on a CPU the
bare loop is float32 NCHW, while the engine uses channels_last, fused optimiser steps, and bf16
autocast where the CPU computes bf16 natively (``device.bf16_native``; ``GEOCAM_CPU_BF16=0``
turns it off for a float32 comparison). Prints img/s of both (best of ``--repeats`` alternating
runs, so a burst of load from other jobs on a shared machine does not decide the ratio) and the
ratio (goal >= 0.9).

    python benchmarks/train_throughput.py                      # CPU defaults: 64 px, batch 32
    python benchmarks/train_throughput.py --device cuda --image-size 224 --batch-size 128 --batches 60
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import tempfile
import time
from pathlib import Path


def bare_loop(model_name: str, batch: int, size: int, batches: int, warmup: int, device, lr: float,
              amp: bool = True) -> float:
    """img/s of forward + loss + backward + AdamW step on in-memory tensors."""
    import torch
    import torch.nn.functional as F

    from geocam_gui.core.device import gpu_path
    from geocam_gui.core.models import build_model

    torch.manual_seed(0)
    cuda = gpu_path(device)  # the engine's settings: also on the CPU inside device.cuda_twin()
    model = build_model(model_name, 2).to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    x = torch.randn(batch, 3, size, size, device=device)
    if cuda:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (batch,), device=device)
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if cuda and amp else contextlib.nullcontext()
    model.train()
    t0 = 0.0
    for i in range(warmup + batches):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
        with amp:
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return batches * batch / (time.perf_counter() - t0)


def engine(model_name: str, data, batch: int, size: int, batches: int, device, lr: float, out: Path,
           amp: bool = True) -> float:
    """img/s the engine reports for its second (warm) epoch of ``batches`` batches."""
    from geocam_gui.core.train.config import TrainConfig
    from geocam_gui.core.train.engine import Trainer
    from geocam_gui.core.train.events import Epoch

    cfg = TrainConfig(model=model_name, epochs=2, batch_size=batch, lr=lr, image_size=size,
                      device=str(device), seed=0, max_batches_per_epoch=batches, schedule="none", amp=amp)
    rates = []
    Trainer(cfg, data, out, lambda e: rates.append(e.images_per_s) if isinstance(e, Epoch) else None).run()
    return rates[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="shallow,vgg11,resnet18")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--image-size", type=int, default=None, help="default: 64 on CPU, 224 on GPU")
    parser.add_argument("--batch-size", type=int, default=None, help="default: 32 on CPU, 128 on GPU")
    parser.add_argument("--batches", type=int, default=24, help="timed batches per measurement")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches of the bare loop")
    parser.add_argument("--repeats", type=int, default=3,
                        help="alternate bare/engine this many times; the best of each is kept (least disturbed)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)

    os.environ.setdefault("GEOCAM_HOME", tempfile.mkdtemp(prefix="geocam-bench-"))
    import torch

    from geocam_gui.core.data.datasets import open_data
    from geocam_gui.core.device import describe_device, resolve_device
    from geocam_gui.core.data.demo import generate_demo

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    size = args.image_size or (224 if gpu else 64)
    batch = args.batch_size or (128 if gpu else 32)
    lr = 1e-4
    # The demo's train split is 60 %: enough images for one epoch of `batches` full batches.
    per_class = max(20, math.ceil(args.batches * batch / (2 * 0.55)))
    with tempfile.TemporaryDirectory(prefix="geocam-bench-") as tmp:
        tmp = Path(tmp)
        data = open_data(generate_demo(tmp / "demo", per_class=per_class, size=size, seed=0))
        print(f"device {describe_device(device)}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
              f"{size} px, batch {batch}, {args.batches} batches, {len(data.split('train'))} train images",
              flush=True)
        print(f"{'model':10s} {'bare img/s':>11s} {'engine img/s':>13s} {'ratio':>6s}")
        for name in [m.strip() for m in args.models.split(",") if m.strip()]:
            bare, eng = [], []
            for r in range(args.repeats):
                bare.append(bare_loop(name, batch, size, args.batches, args.warmup, device, lr))
                eng.append(engine(name, data, batch, size, args.batches, device, lr, tmp / f"run{r}"))
            b, e = max(bare), max(eng)
            print(f"{name:10s} {b:11.1f} {e:13.1f} {e / b:6.2f}   (bare {', '.join(f'{v:.1f}' for v in bare)}; "
                  f"engine {', '.join(f'{v:.1f}' for v in eng)})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
