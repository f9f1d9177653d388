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
    parser.add_argument("--out", metavar="DIR",
                        help="run folder: DIR/<model>/best.*, last.*, metrics.jsonl and DIR/index/ (default: "
                             "the dataset's run folder under GEOCAM_CHECKPOINTS or the user data folder, "
                             "where the GUI finds it)")
    parser.add_argument("--epochs", type=int, metavar="E", help="number of epochs (default: per model)")
    parser.add_argument("--batch-size", type=int, metavar="B",
                        help="images per batch and per process (default: 32 on CPU, 16 for the shallow net; 128 on GPU)")
    parser.add_argument("--lr", type=float, metavar="LR",
                        help="learning rate for every model trained (default: per model: 1e-3, VGG11 3e-4)")
    parser.add_argument("--image-size", type=int, metavar="PX",
                        help="square input size in pixels (default: 64 on CPU, 96 for ResNet18; 224 on GPU)")
    parser.add_argument("--device", default=None, metavar="DEV", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    parser.add_argument("--workers", type=int, metavar="W", help="threads assembling batches ahead (default: 0)")
    parser.add_argument("--seed", type=int, metavar="S", help="random seed (default: 0)")
    parser.add_argument("--optimizer", choices=("sgd", "adamw"), help="optimiser (default: adamw)")
    parser.add_argument("--schedule", choices=("cosine", "step", "none"), help="learning-rate schedule (default: cosine)")
    parser.add_argument("--warmup", type=float, metavar="E",
                        help="linear learning-rate warm-up over the first E epochs, batch by batch (default: 0)")
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
    parser.add_argument("--float32", action="store_true",
                        help="compute in float32 throughout (default: bf16 autocast on GPUs and on CPUs that compute "
                             "bf16 natively - AVX512-BF16 or AMX - about twice as fast; weights stay float32)")
    parser.add_argument("--max-batches", type=int, metavar="N", help="stop each epoch after N batches (smoke tests)")
    parser.add_argument("--val-limit", type=int, metavar="N",
                        help="validate each epoch on a fixed sample of N val images, each class keeping its share "
                             "(large collections; default: the whole val split; the test split is always whole)")
    parser.add_argument("--resume", action="store_true",
                        help="continue each model from its last complete epoch in --out (same settings)")
    parser.add_argument("--save-dtype", choices=("float32", "float16"),
                        help="float16 also writes DIR/<model>/best_float16.* after the run: half the size, for "
                             "viewing and sharing (maps match float32 to about 0.001, 99 %% of images within 0.01; the "
                             "training weights stay float32)")
    parser.add_argument("--overwrite", action="store_true",
                        help="train from scratch over a run already in --out (replaces its best.*, last.* and "
                             "metrics.jsonl; without it such a run is refused)")
    parser.add_argument("--metrics-jsonl", metavar="FILE", help="also append one JSON object per epoch to FILE")


_OVERRIDES = {  # argparse dest -> TrainConfig field
    "epochs": "epochs", "batch_size": "batch_size", "lr": "lr", "image_size": "image_size",
    "workers": "workers", "seed": "seed", "optimizer": "optimizer",
    "schedule": "schedule", "warmup": "warmup_epochs", "weight_decay": "weight_decay", "balance": "balance",
    "weights": "weights", "pretrained": "pretrained", "max_batches": "max_batches_per_epoch",
    "val_limit": "val_limit", "save_dtype": "save_dtype",
}


def overrides_of(args: argparse.Namespace) -> dict:
    """The settings the user gave on the command line (``config_for``'s ``overrides``)."""
    out = {name: getattr(args, dest) for dest, name in _OVERRIDES.items() if getattr(args, dest) is not None}
    if args.no_augment:
        out["augment"] = False
    elif args.no_flip:
        from geocam_gui.core.train.loader import AugmentConfig

        out["augment"] = AugmentConfig(hflip=False)
    if args.deterministic:
        out["deterministic"] = True
    if args.float32:
        out["amp"] = False
    return out


def build_configs(args: argparse.Namespace, out: Path | None = None) -> list:
    """One validated ``TrainConfig`` per model asked for (``BadArgument`` on the first problem):
    ``config_for`` with the options given, or with ``--resume`` the run's saved settings in
    ``out`` (default ``args.out``) with the options given applied on top."""
    from geocam_gui.core.train.config import apply_overrides, config_for, resume_config

    models = list(MODEL_NAMES) if args.model == "all" else [args.model]
    overrides = overrides_of(args)
    out = out if out is not None else (Path(args.out) if args.out else None)
    configs = []
    for model in models:
        own = overrides
        if model == "shallow" and overrides.get("pretrained") and args.model == "all":
            own = {k: v for k, v in overrides.items() if k != "pretrained"}  # the paper's net has no ImageNet weights
            print("shallow: no ImageNet weights exist for the shallow CNN; it trains from scratch.", file=sys.stderr)
        saved = resume_config(out, model) if args.resume and out is not None else None
        if saved is not None:
            configs.append(apply_overrides(saved, {**own, "device": args.device}))
        else:
            configs.append(config_for(model, args.device or "auto", own))
    return configs


def _printer(quiet: bool):
    """Epoch and result lines on stdout; within an epoch and while the images are decoded into
    the cache, a progress bar on a terminal, a few plain lines otherwise (stderr)."""
    from geocam_gui.commands.common import progress_printer
    from geocam_gui.core.train import events as ev

    batches = progress_printer(steps=4, transient=True)
    decoding = progress_printer(steps=4)
    model = [""]

    def show(event) -> None:
        if quiet:
            return
        if isinstance(event, ev.Batch):
            batches(event.batch, event.batches, f"{model[0]} epoch {event.epoch}/{event.epochs}: loss "
                                                f"{event.loss:.4f} acc {event.acc:.3f}, {event.images_per_s:.0f} img/s")
            return
        if isinstance(event, ev.Log) and {"split", "done", "total"} <= set(event.extra):
            x = event.extra
            decoding(x["done"] or 0, x["total"] or 0, f"decoding the {x['split']} images into the cache")
            return
        if isinstance(event, ev.Start):
            model[0] = event.model
            print(f"{event.model}: {event.n_train} train / {event.n_val} val / {event.n_test} test images on "
                  f"{event.device}" + (f" x{event.world} processes" if event.world > 1 else "")
                  + (f", resuming after epoch {event.start_epoch}" if event.start_epoch else ""), flush=True)
        elif isinstance(event, ev.Epoch):
            mark = " *" if event.improved else ""
            print(f"{event.model} epoch {event.epoch}/{event.epochs}: train loss {event.train_loss:.4f} "
                  f"acc {event.train_acc:.3f} | val loss {event.val_loss:.4f} acc {event.val_acc:.3f}{mark} | "
                  f"{event.images_per_s:.0f} img/s, {event.seconds:.1f} s", flush=True)
        elif isinstance(event, ev.Log):
            print(f"  {event.message}", file=sys.stderr, flush=True)
        elif isinstance(event, ev.Finished) and event.test:
            t = event.test
            print(f"{event.model}: best epoch {event.best_epoch}, test accuracy {t['accuracy']:.4f} "
                  f"on {t['n']} images -> {event.best_checkpoint}", flush=True)
            from geocam_gui.core.chance import chance_from_metrics

            verdict = chance_from_metrics(t)
            if verdict:
                print(f"  {verdict['message']}", flush=True)

    return show


def run(args: argparse.Namespace) -> int:
    from geocam_gui.core.data.datasets import open_data
    from geocam_gui.core.train.config import check_resumable, resume_config
    from geocam_gui.core.train.engine import Trainer

    out = Path(args.out) if args.out else None
    if out is not None and out.exists() and not out.is_dir():
        raise BadArgument(f"--out {out} is a file, not a folder.")
    if args.metrics_jsonl and Path(args.metrics_jsonl).is_dir():
        raise BadArgument(f"--metrics-jsonl {args.metrics_jsonl} is a folder, not a file.")
    build_configs(args, out)  # a bad option is reported before the data is read
    if args.resume and args.overwrite:
        raise BadArgument("Give either --resume (continue the run in --out) or --overwrite (replace it), not both.")
    index = open_data(args.data)
    if out is None:  # where the GUI looks for this dataset's runs
        from geocam_gui.core.workspace import default_run_dir

        out = default_run_dir(index)
    configs = build_configs(args, out)
    if not args.resume and not args.overwrite:
        from geocam_gui.core.train.config import existing_run

        for cfg in configs:
            found = existing_run(out, cfg.model)
            if found:
                raise BadArgument(f"{out / cfg.model} already holds a {cfg.model} run ({', '.join(found)}); pass "
                                  "--resume to continue it or --overwrite to replace it.")
    import os

    quiet = int(os.environ.get("RANK", "0")) != 0
    if not args.out and not quiet:
        print(f"  Training into {out} (the dataset's run folder, where the window finds it).",
              file=sys.stderr, flush=True)
    if args.resume:
        for cfg in configs:
            saved = resume_config(out, cfg.model)
            if saved is not None:
                try:
                    check_resumable(saved, cfg)
                except CheckpointError as exc:
                    raise BadArgument(str(exc)) from exc
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
