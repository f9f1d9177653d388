"""``geocam demo-data OUT``: write the procedural two-cities demo set (see core/data/demo/__init__.py)."""

from __future__ import annotations

import argparse
import time

from geocam_gui.core.data import demo as synthetic
from geocam_gui.core.errors import GeoCamError, os_error_sentence

NAME = "demo-data"
HELP = "write the procedural Pittsburgh/Tokyo demo set with evidence and sky masks"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = synthetic.DEFAULTS
    parser.add_argument("out", metavar="OUT", help="output folder (created; must be empty or an earlier demo set)")
    parser.add_argument("--per-class", type=int, default=d["per_class"], metavar="N",
                        help=f"images per class (at least 10; default {d['per_class']})")
    parser.add_argument("--size", type=int, default=d["size"], metavar="PX",
                        help=f"image side in pixels (at least 32; default {d['size']})")
    parser.add_argument("--sky-bias", type=float, default=d["sky_bias"], metavar="P",
                        help="train/val: P(cloudy | pittsburgh) = P(clear | tokyo) "
                             f"(0..1; 0.5 = no bias; default {d['sky_bias']})")
    parser.add_argument("--test-sky-bias", type=float, default=d["test_sky_bias"], metavar="Q",
                        help=f"the same rate in the test split (default {d['test_sky_bias']})")
    parser.add_argument("--layout-bias", type=float, default=d["layout_bias"], metavar="P",
                        help="train/val: the fraction of each class's images whose evidence sits in the class's "
                             f"band (pittsburgh low, tokyo high), a controlled layout cue (0..1; default {d['layout_bias']:g})")
    parser.add_argument("--test-layout-bias", type=float, default=d["test_layout_bias"], metavar="Q",
                        help="the same fraction in the test split; negative = the other class's band, the "
                             f"flipped cue (-1..1; default {d['test_layout_bias']:g})")
    parser.add_argument("--seed", type=int, default=d["seed"], metavar="S", help=f"random seed (default {d['seed']})")
    parser.add_argument("--views-per-place", type=int, default=d["views_per_place"], metavar="V",
                        help=f"views rendered of each place (default {d['views_per_place']})")
    parser.add_argument("--force", action="store_true",
                        help="write into a non-empty folder that is not a demo set (replaces only the demo files)")


def run(args: argparse.Namespace) -> int:
    from geocam_gui.commands.common import progress_printer

    bar = progress_printer()

    def progress(done: int, total: int) -> None:
        bar(done, total, "images")

    start = time.perf_counter()
    try:
        out = synthetic.generate_demo(
            args.out, per_class=args.per_class, size=args.size, sky_bias=args.sky_bias,
            test_sky_bias=args.test_sky_bias, seed=args.seed, views_per_place=args.views_per_place,
            layout_bias=args.layout_bias, test_layout_bias=args.test_layout_bias,
            force=args.force, progress=progress,
        )
    except OSError as exc:  # the generator writes into a temporary folder first: nothing half-written stays
        raise GeoCamError(os_error_sentence(exc, args.out)) from None
    took = time.perf_counter() - start
    print(f"Wrote {2 * args.per_class} demo images ({args.per_class} per class, {args.size} px, "
          f"sky bias {args.sky_bias:g}, test sky bias {args.test_sky_bias:g}, layout bias {args.layout_bias:g}, "
          f"test layout bias {args.test_layout_bias:g}) with masks and label maps to {out} in {took:.1f} s.")
    return 0
