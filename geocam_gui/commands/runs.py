"""``geocam runs``: list the training runs on disk (size, date, models, best accuracy) and make
them smaller: ``prune RUN --keep best`` drops the resume state, ``delete RUN`` removes the run."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from geocam_gui.core.errors import BadArgument

NAME = "runs"
HELP = "list training runs with their size and accuracy; prune them to their best checkpoints or delete them"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", parser_class=type(parser))
    sub.required = True
    ls = sub.add_parser("list", help="the runs below a folder (default: the app's checkpoint folder)")
    where = ls.add_mutually_exclusive_group()
    where.add_argument("--data", metavar="DIR", help="only the run of this dataset (where the GUI and train keep it)")
    where.add_argument("--root", metavar="DIR", help="the folder whose run folders are listed")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    prune = sub.add_parser("prune", help="remove a run's resume state, keeping each model's best checkpoint")
    prune.add_argument("run", metavar="RUN", help="a run folder (as `geocam runs list` shows)")
    prune.add_argument("--keep", required=True, choices=("best",), help="what to keep: best (and metrics.jsonl)")
    prune.add_argument("--yes", action="store_true", help="do not ask (needed when not interactive)")
    delete = sub.add_parser("delete", help="remove a run folder with all its checkpoints")
    delete.add_argument("run", metavar="RUN", help="a run folder (as `geocam runs list` shows)")
    delete.add_argument("--yes", action="store_true", help="do not ask (needed when not interactive)")


def _root_and_filter(args) -> tuple[Path, Path | None]:
    from geocam_gui.core import paths

    if args.data:
        from geocam_gui.core import runs
        from geocam_gui.core.data.datasets import open_data
        from geocam_gui.core.data.demo import is_demo_dir

        index = open_data(args.data)
        root = paths.default_checkpoint_dir()
        demo = bool(index.roots) and is_demo_dir(index.roots[0])
        return root, runs.run_dir_for(index, root, demo=demo)
    return (Path(args.root) if args.root else paths.default_checkpoint_dir()), None


def _list(args) -> int:
    from geocam_gui.core import run_storage as rs

    root, only = _root_and_filter(args)
    if args.root and not root.is_dir():
        raise BadArgument(f"--root {root} is not a folder.")
    found = [rs.summarize_run(only)] if only is not None and only.is_dir() else (
        [] if only is not None else rs.list_runs(root))
    if args.json:
        print(json.dumps([{"run": str(s.path), "size": s.size, "modified": s.date,
                           "models": [{"model": m.model, "size": m.size, "best_epoch": m.best_epoch,
                                       "val_accuracy": m.val_acc, "test_accuracy": m.test_acc,
                                       "resumable": m.resumable, "error": m.error} for m in s.models]}
                          for s in found], indent=2))
        return 0
    if not found:
        print(f"No runs in {only if only is not None else root}.")
        return 0
    print(f"{'size':>9}  {'date':<16}  run: models (best val/test accuracy)")
    for s in found:
        print(f"{rs.human_size(s.size):>9}  {s.date:<16}  {s.path}: {rs.models_text(s)}")
    total = sum(s.size for s in found)
    print(f"{rs.human_size(total):>9}  in {len(found)} run(s)")
    return 0


def _confirm(question: str, yes: bool) -> bool:
    if yes:
        return True
    if not sys.stdin.isatty():
        raise BadArgument("Not asking without a terminal: add --yes to confirm.")
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def run(args: argparse.Namespace) -> int:
    from geocam_gui.core import run_storage as rs

    if args.action == "list":
        return _list(args)
    target = rs.check_run(args.run)
    if args.action == "prune":
        files = rs.prunable_files(target)
        if not files:
            print(f"{target} holds nothing to prune (only best checkpoints already).")
            return 0
        size = rs.folder_size(target)[0]
        print(f"Removing the resume state of {target} ({len(files)} files; the run can no longer be resumed):")
        for f in files:
            print(f"  {f.relative_to(target)}")
        if not _confirm("Prune?", args.yes):
            print("Nothing removed.")
            return 1
        freed = rs.prune_run(target, keep=args.keep)
        print(f"Freed {rs.human_size(freed)} ({rs.human_size(size)} -> {rs.human_size(size - freed)}).")
        return 0
    summary = rs.summarize_run(target)
    if not _confirm(f"Delete {target} ({rs.human_size(summary.size)}: {rs.models_text(summary)})?", args.yes):
        print("Nothing removed.")
        return 1
    freed = rs.delete_run(target)
    print(f"Deleted {target}; freed {rs.human_size(freed)}.")
    return 0
