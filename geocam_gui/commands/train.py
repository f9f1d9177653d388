"""``geocam train``: train the shallow CNN, VGG11 and/or ResNet18 on a dataset, headless.

Under ``torchrun --nproc_per_node=N -m geocam_gui.cli train ...`` the same command trains with
DistributedDataParallel; only rank 0 prints and writes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from geocam_gui.core.errors import BadArgument, CheckpointError
from geocam_gui.core.models import MODEL_NAMES

NAME = "train"
HELP = "train city classifiers (shallow CNN, VGG11, ResNet18) with checkpoints and metrics"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", metavar="DATA",
                        help="a dataset folder, a demo set, or an index folder written by `geocam index`")
    parser.add_argument("--model", required=True, choices=(*MODEL_NAMES, "all"),
                        help="architecture to train ('all' trains the three one after the other)")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="run folder: DIR/<model>/best.*, last.*, metrics.jsonl and DIR/index/")
    parser.add_argument("--epochs", type=int, metavar="E", help="number of epochs (default: per model)")
    parser.add_argument("--batch-size", type=int, metavar="B",
                        help="images per batch and per process (default: 32 on CPU, 128 on GPU)")
    parser.add_argument("--lr", type=float, metavar="LR", help="learning rate (default: 1e-3, VGG11 1e-4)")
    parser.add_argument("--image-size", type=int, metavar="PX",
                        help="square input size in pixels (default: 64 on CPU, 224 on GPU)")
    parser.add_argument("--device", default=None, metavar="DEV", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    parser.add_argument("--workers", type=int, metavar="W", help="threads assembling batches ahead (default: 0)")
    parser.add_argument("--seed", type=int, metavar="S", help="random seed (default: 0)")
    parser.add_argument("--optimizer", choices=("sgd", "adamw"), help="optimiser (default: adamw)")
    parser.add_argument("--schedule", choices=("cosine", "step", "none"), help="learning-rate schedule (default: cosine)")
    parser.add_argument("--weight-decay", type=float, metavar="WD", help="weight decay (default: 1e-4)")
    parser.add_argument("--balance", choices=("none", "loss", "sample"),
                        help="class balancing: weighted loss or balanced sampling (default: none)")
    parser.add_argument("--no-augment", action="store_true", help="no random resized crop and no flips")
    parser.add_argument("--no-flip", action="store_true", help="no horizontal flips")
    parser.add_argument("--deterministic", action="store_true",
                        help="deterministic algorithms (bit-exact reruns on the CPU; slower)")
    parser.add_argument("--weights", metavar="FILE",
                        help="local ImageNet state dict to start from (the last layer is re-made)")
    parser.add_argument("--pretrained", choices=("imagenet",),
                        help="start VGG11/ResNet18 from torchvision's ImageNet weights (its hub cache, downloaded "
                             "once with a checksum; the shallow CNN has none). Default: from scratch, as the paper")
    parser.add_argument("--max-batches", type=int, metavar="N", help="stop each epoch after N batches (smoke tests)")
    parser.add_argument("--resume", action="store_true",
                        help="continue each model from its last complete epoch in --out (same settings)")
    parser.add_argument("--metrics-jsonl", metavar="FILE", help="also append one JSON object per epoch to FILE")


_OVERRIDES = {  # argparse dest -> TrainConfig field
    "epochs": "epochs", "batch_size": "batch_size", "lr": "lr", "image_size": "image_size",
    "device": "device", "workers": "workers", "seed": "seed", "optimizer": "optimizer",
    "schedule": "schedule", "weight_decay": "weight_decay", "balance": "balance",
    "weights": "weights", "pretrained": "pretrained", "max_batches": "max_batches_per_epoch",
}


def build_configs(args: argparse.Namespace) -> list:
    """One validated ``TrainConfig`` per model asked for (``BadArgument`` on the first problem)."""
    from geocam_gui.core.train.config import default_config, resume_config

    models = list(MODEL_NAMES) if args.model == "all" else [args.model]
    configs = []
    for model in models:
        saved = resume_config(args.out, model) if args.resume else None
        cfg = saved if saved is not None else default_config(model, args.device or "auto")
        for dest, name in _OVERRIDES.items():
            value = getattr(args, dest)
            if value is not None:
                setattr(cfg, name, value)
        if args.model == "all" and model == "shallow" and args.pretrained:
            cfg.pretrained = None  # the paper's own net has no ImageNet weights: it starts from scratch
            print("shallow: no ImageNet weights exist for the shallow CNN; it trains from scratch.", file=sys.stderr)
        if args.no_augment:
            cfg.augment.crop = cfg.augment.hflip = False
        if args.no_flip:
            cfg.augment.hflip = False
        if args.deterministic:
            cfg.deterministic = True
        configs.append(cfg.validate())
    return configs


def _printer(quiet: bool):
    def show(event) -> None:
        d = event.data
        if quiet:
            return
        if event.kind == "start":
            print(f"{d['model']}: {d['n_train']} train / {d['n_val']} val / {d['n_test']} test images on "
                  f"{d['device']}" + (f" x{d['world']} processes" if d["world"] > 1 else "")
                  + (f", resuming after epoch {d['start_epoch']}" if d["start_epoch"] else ""), flush=True)
        elif event.kind == "epoch":
            mark = " *" if d["improved"] else ""
            print(f"{d['model']} epoch {d['epoch']}/{d['epochs']}: train loss {d['train_loss']:.4f} "
                  f"acc {d['train_acc']:.3f} | val loss {d['val_loss']:.4f} acc {d['val_acc']:.3f}{mark} | "
                  f"{d['images_per_s']:.0f} img/s, {d['seconds']:.1f} s", flush=True)
        elif event.kind == "log":
            print(f"  {d['message']}", file=sys.stderr, flush=True)
        elif event.kind == "finished" and d.get("test"):
            t = d["test"]
            print(f"{d['model']}: best epoch {d['best_epoch']}, test accuracy {t['accuracy']:.4f} "
                  f"on {t['n']} images -> {d['best_checkpoint']}", flush=True)
            from geocam_gui.core.chance import chance_from_metrics

            verdict = chance_from_metrics(t)
            if verdict:
                print(f"  {verdict['message']}", flush=True)

    return show


def run(args: argparse.Namespace) -> int:
    from geocam_gui.core.data.datasets import open_data
    from geocam_gui.core.train.config import check_resumable, resume_config
    from geocam_gui.core.train.engine import Trainer

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise BadArgument(f"--out {out} is a file, not a folder.")
    if args.metrics_jsonl and Path(args.metrics_jsonl).is_dir():
        raise BadArgument(f"--metrics-jsonl {args.metrics_jsonl} is a folder, not a file.")
    configs = build_configs(args)
    if args.resume:
        for cfg in configs:
            saved = resume_config(out, cfg.model)
            if saved is not None:
                try:
                    check_resumable(saved, cfg)
                except CheckpointError as exc:
                    raise BadArgument(str(exc)) from exc
    index = open_data(args.data)
    import os

    quiet = int(os.environ.get("RANK", "0")) != 0
    results = []
    for cfg in configs:
        trainer = Trainer(cfg, index, out, _printer(quiet), resume=args.resume, metrics_jsonl=args.metrics_jsonl)
        result = trainer.run()
        results.append(result)
        if result.status != "finished":
            return 130
    if not quiet and len(results) > 1:
        summary = {r.model: (r.test or {}).get("accuracy") for r in results}
        print("test accuracy: " + json.dumps(summary))
    return 0
