"""``geocam units``: what the filters and a layer's units detect (core/analysis/units*.py).

    geocam units --checkpoint CKPT [CKPT ...] --data DATA [--split test] [--layer NAME] [--top 9]
                 [--limit N] [--figure pdf|svg|png] --out DIR

writes DIR/units.json, DIR/units.html, the detector chart, filter grids and unit mosaics.
"""

from __future__ import annotations

import argparse
import time

from geocam_gui.commands.common import checked_inputs, progress_printer

NAME = "units"
HELP = ("show what the learned filters and a layer's units detect: top-activating patches and, on data "
        "with label maps, Network Dissection")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", "-c", nargs="+", required=True, metavar="CKPT",
                        help="checkpoints (best.json / .safetensors), or a training run folder (every best.json below it)")
    parser.add_argument("--data", "-d", required=True, metavar="DATA",
                        help="a demo set, a folder written by 'geocam index', or an image root")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"), help="split to scan (default test)")
    parser.add_argument("--layer", default=None, metavar="NAME",
                        help="module name of the layer (default: each model's Grad-CAM layer)")
    parser.add_argument("--top", type=int, default=9, metavar="K", help="top images per unit (default 9)")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="scan only the first N images of the split (classes interleaved)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    parser.add_argument("--no-random-check", action="store_true",
                        help="skip the dissection of the randomised model (halves the time)")
    parser.add_argument("--figure", choices=("pdf", "svg", "png"), default=None,
                        help="also write the detector chart as DIR/detectors_chart.FORMAT with a sidecar")
    parser.add_argument("--no-cache", action="store_true", help="recompute even when cached results exist")
    parser.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder")


def run(args: argparse.Namespace) -> int:
    from geocam_gui.core.analysis.units_report import export_units_figure, write_units_page
    from geocam_gui.core.analysis.units_run import run_units
    from geocam_gui.core.errors import BadArgument

    if not 1 <= args.top <= 64:
        raise BadArgument(f"--top must be between 1 and 64, got {args.top}.")
    checkpoints, index, out = checked_inputs(args)
    progress = progress_printer()

    start = time.perf_counter()
    results = [run_units(c, index, split=args.split, layer=args.layer, top=args.top, limit=args.limit,
                         device=args.device, random_check=not args.no_random_check, progress=progress,
                         use_cache=not args.no_cache) for c in checkpoints]
    files = write_units_page(results, out)
    if args.figure:
        export_units_figure("detectors", results, out / f"detectors_chart.{args.figure}")
    print(f"Scanned {len(results)} model(s) on {results[0]['decoded']} {args.split} images in "
          f"{time.perf_counter() - start:.1f} s.")
    for r in results:
        d = r["dissection"]
        line = f"  {r['label']:<12} {r['layer']:<12} {r['units_count']} units"
        if d.get("available"):
            line += f": {d['detectors']} detectors, {d['unique_concepts']} unique concepts"
            if d["by_concept"]:
                line += " (" + ", ".join(f"{k} {v}" for k, v in d["by_concept"].items()) + ")"
            if "randomised" in d:
                line += f"; randomised model: {d['randomised']['detectors']} detectors"
        print(line)
    if not results[0]["dissection"].get("available"):
        print(f"  No dissection: {results[0]['dissection'].get('reason')}")
    print(f"Page: {files['html']} (and units.json) in {out}")
    return 0
