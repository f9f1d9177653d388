"""``geocam eval``: accuracy, per-class precision/recall and confusion of a checkpoint, as JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from geocam_gui.core.errors import BadArgument

NAME = "eval"
HELP = ("evaluate a checkpoint on a split of a dataset and print JSON metrics, with an exact binomial "
        "test of whether the accuracy is above the majority-class rate")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CHECKPOINT",
                        help="a checkpoint (.json, .safetensors or stem), a run folder holding one best.json, "
                             "or a plain PyTorch state dict")
    parser.add_argument("data", metavar="DATA",
                        help="a dataset folder, a demo set, or an index folder written by `geocam index`")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"), help="split to evaluate (default: test)")
    parser.add_argument("--device", default="auto", metavar="DEV", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--batch-size", type=int, default=64, metavar="B", help="images per batch (default: 64)")
    parser.add_argument("--image-size", type=int, metavar="PX",
                        help="input size (default: the checkpoint's; needed for plain state dicts)")


def resolve_checkpoint(spec: str) -> Path:
    """A checkpoint file from a path that may also be a folder with exactly one ``best.json``."""
    from geocam_gui.core.checkpoints import find_checkpoints

    path = Path(spec)
    if path.is_dir():
        found = find_checkpoints(path)
        if not found:
            raise BadArgument(f"No checkpoint (best.json) found below {path}.")
        if len(found) > 1:
            names = ", ".join(str(p) for p in found[:6])
            raise BadArgument(f"{path} holds {len(found)} checkpoints; name one of them: {names}.")
        return found[0]
    if not path.exists() and not path.with_suffix(".safetensors").exists() and not Path(f"{spec}.safetensors").exists():
        raise BadArgument(f"Checkpoint {spec} does not exist.")
    return path


def run(args: argparse.Namespace) -> int:
    from geocam_gui.core.chance import chance_from_metrics
    from geocam_gui.core.checkpoints import load_checkpoint
    from geocam_gui.core.data.datasets import open_data
    from geocam_gui.core.device import resolve_device
    from geocam_gui.core.train.engine import evaluate

    if args.batch_size < 1:
        raise BadArgument(f"Batch size must be at least 1, got {args.batch_size}.")
    if args.image_size is not None and args.image_size < 32:
        raise BadArgument(f"Image size must be at least 32 px, got {args.image_size}.")
    device = resolve_device(args.device)
    path = resolve_checkpoint(args.checkpoint)
    index = open_data(args.data)
    loaded = load_checkpoint(path, expect_classes=list(index.classes))
    result = evaluate(loaded, index, args.split, device=device, batch_size=args.batch_size,
                      image_size=args.image_size)
    result["checkpoint"] = str(loaded.path)
    result["chance"] = chance_from_metrics(result)
    if result["chance"] and not result["chance"]["above_chance"]:
        print(f"geocam eval: warning: {result['chance']['message']}", file=sys.stderr)
    print(json.dumps(result, indent=2))
    return 0
