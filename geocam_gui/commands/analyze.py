"""``geocam analyze``: measured interpretability of trained models (see core/analysis/run.py).

    geocam analyze --checkpoint CKPT [CKPT ...] --data DATA [--split test] [--method gradcam]
                   [--limit N] --out DIR

writes DIR/report.json, DIR/report.html (self-contained) and the plots and mosaics as PNG.
"""

from __future__ import annotations

import argparse
import time

from geocam_gui.commands.common import checked_inputs, progress_printer
from geocam_gui.core.explain.cam import METHODS

NAME = "analyze"
HELP = ("measure the models' explanations: accuracy, localisation against masks, faithfulness, "
        "sanity check, agreement, sky bias and discriminative elements")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", "-c", nargs="+", required=True, metavar="CKPT",
                        help="checkpoints to analyse (best.json / .safetensors), or a training run folder "
                             "(every best.json below it)")
    parser.add_argument("--data", "-d", required=True, metavar="DATA",
                        help="the data: a demo set, a folder written by 'geocam index', or an image root")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"), help="split to analyse (default test)")
    parser.add_argument("--method", default="gradcam", choices=METHODS, help="CAM method (default gradcam)")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="analyse only the first N images of the split (classes interleaved)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    parser.add_argument("--no-cache", action="store_true", help="recompute even when cached results exist")
    parser.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder for the report")


def run(args: argparse.Namespace) -> int:
    from geocam_gui.core.analysis.report import display_name, display_names, write_report
    from geocam_gui.core.analysis.run import run_analysis
    from geocam_gui.core.errors import GeoCamError, os_error_sentence

    checkpoints, index, out = checked_inputs(args)
    progress = progress_printer()

    start = time.perf_counter()
    report = run_analysis(checkpoints, index, split=args.split, method=args.method, limit=args.limit,
                          progress=progress, device=args.device, use_cache=not args.no_cache)
    try:
        files = write_report(report, out)
    except OSError as exc:
        raise GeoCamError(os_error_sentence(exc, out)) from None
    took = time.perf_counter() - start
    print(f"Analysed {len(report['models'])} model(s) on {report['data']['images']} {args.split} images "
          f"with {args.method} in {took:.1f} s.")
    for m in report["models"]:
        loc = m["localisation"]
        pg = loc["pointing_game"]["cam"] if loc.get("available") else None
        sky = (loc["sky_energy"]["cam"]["mean"] if loc.get("available") else None)
        f = m["faithfulness"]
        line = f"  {display_name(m):<24} accuracy {m['accuracy']['accuracy']:.3f}"
        if pg is not None:
            line += f", pointing {pg:.3f} (random {loc['pointing_game']['random']:.3f})"
        if sky is not None:
            line += f", sky energy {sky:.3f}"
        line += f", deletion AUC {f['deletion']['auc']['mean']:.3f}, insertion AUC {f['insertion']['auc']['mean']:.3f}"
        print(line)
        if loc.get("available") and loc["without_masks"]:
            print(f"    ({loc['without_masks']} of {loc['images']} images have no evidence mask and were left out "
                  "of localisation)")
    names = display_names(report)
    reliance = report["bias"].get("sky_reliance") or {}
    for key, v in reliance.items():
        print(f"  sky reliance {names.get(key, key)}: {v:+.3f} (accuracy as trained minus flipped sky)")
    for key, v in (report["bias"].get("layout_reliance") or {}).items():
        print(f"  layout reliance {names.get(key, key)}: {v:+.3f} (accuracy as trained minus flipped layout)")
    print(f"Report: {files['html']} (and report.json, {len(files) - 2} PNG files) in {out}")
    return 0
