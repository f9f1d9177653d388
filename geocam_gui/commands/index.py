"""``geocam index``: index photo collections into a grouped train/val/test split with an audit."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from geocam_gui.core.errors import BadArgument, DataError, GeoCamError, os_error_sentence

NAME = "index"
HELP = "index photo folders (class folders, CSV, Pitts250k, Tokyo 24/7, Tokyo TM) into a grouped split and audit them"

_LAYOUTS = ("auto", "folders", "csv", "pitts250k", "tokyo247", "tokyotm")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("roots", nargs="+", metavar="ROOT", help="dataset folders (or CSV manifests)")
    parser.add_argument("--layout", choices=_LAYOUTS, default="auto",
                        help="how the roots are organised (default: detect)")
    parser.add_argument("--label", action="append", default=None, metavar="NAME",
                        help="class of each root, in order (give it once per root), "
                             "e.g. a Pitts250k root pittsburgh and a Tokyo 24/7 root tokyo")
    parser.add_argument("--split", default="6:2:2", help="train:val:test ratios (default 6:2:2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    parser.add_argument("--balance", choices=("none", "undersample", "weighted"), default="none",
                        help="balance the training split: drop images of larger classes, or store sampler weights")
    parser.add_argument("--verify", choices=("none", "sample", "all"), default="sample",
                        help="files decoded to find bad ones and audit formats, sizes and colours: "
                             "a sample per class (default), all, or none (fastest: no file is read). Near-duplicate "
                             "photos (perceptual hash) are joined into one group only when every file is decoded: "
                             "all, or a sample that covers every file (at most 200 per class)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for index.csv and audit.json")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an index of other dataset roots already in --out (re-indexing the same "
                             "roots replaces it without asking)")


def run(args: argparse.Namespace) -> int:
    from geocam_gui.core.data import audit
    from geocam_gui.core.data import datasets

    ratios = datasets.parse_split(args.split)
    for root in args.roots:
        if not os.path.exists(root):
            raise BadArgument(f"The dataset root {root} does not exist.")
    if args.label is not None and len(args.label) != len(args.roots):
        raise BadArgument(f"Give --label once per root: {len(args.roots)} root(s) but {len(args.label)} label(s).")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise BadArgument(f"--out {out} exists and is not a folder.")
    if not args.overwrite:
        _refuse_other_index(out, [os.path.abspath(r) for r in args.roots])
    from geocam_gui.core.paths import check_writable_folder

    check_writable_folder(out)  # before a --verify all that may read every file for minutes
    from geocam_gui.commands.common import progress_printer

    bar = progress_printer()
    try:
        index = datasets.index_dataset(args.roots, layout=args.layout, labels=args.label, split=ratios,
                                       seed=args.seed, balance=args.balance, verify=args.verify,
                                       progress=lambda done, total: bar(done, total, "indexing"))
    except DataError as exc:  # a dataset that cannot be split as asked is a bad argument here
        raise BadArgument(str(exc)) from exc
    for line in audit.summary_lines(index):
        print(line)
    try:
        index.save(out)
    except OSError as exc:
        raise GeoCamError(os_error_sentence(exc, out)) from None
    print(f"Wrote {out / 'index.csv'} and {out / 'audit.json'} (fingerprint {index.fingerprint()}).")
    return 0


def _refuse_other_index(out: Path, roots: list[str]) -> None:
    """An index already in ``out`` of other roots (or one that cannot be read) is not replaced silently."""
    from geocam_gui.core.validate import loads

    if not (out / "index.csv").exists() and not (out / "audit.json").exists():
        return
    try:
        old = loads((out / "audit.json").read_text(encoding="utf-8")).get("roots")
    except (OSError, ValueError, AttributeError):
        old = None
    if old != roots:
        what = f"an index of {', '.join(map(str, old))}" if isinstance(old, list) and old else "an index"
        raise BadArgument(f"{out} already holds {what}; pass --overwrite to replace it, or choose another --out.")
