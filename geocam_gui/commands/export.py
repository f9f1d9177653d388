"""``geocam export``: Grad-CAM overlays at the photos' native resolution and publication figures,
each with a JSON provenance sidecar; ``--from-sidecar`` re-creates an export byte for byte."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from geocam_gui.core.errors import BadArgument

NAME = "export"
HELP = ("export Grad-CAM overlays (PNG/TIFF at native resolution, RGBA heat maps, raw .npy) and "
        "publication figures (PDF/SVG/PNG), each with a provenance sidecar")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from geocam_gui.core.explain.cam import METHODS
    from geocam_gui.core.explain.render import COLORMAPS

    parser.add_argument("--checkpoint", nargs="+", metavar="CKPT", default=[],
                        help="checkpoints (.json/.safetensors) or training run folders to explain, one figure "
                             "column each, in the paper's order (Shallow CNN, VGG11, ResNet18) unless --keep-order")
    parser.add_argument("--keep-order", action="store_true",
                        help="figure columns in the order the checkpoints are given, not the paper's")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--images", nargs="+", metavar="IMG", help="image files to explain")
    src.add_argument("--split", choices=("train", "val", "test"), help="explain a split of --data")
    parser.add_argument("--data", metavar="DATA", help="dataset for --split (a geocam index folder, a demo set or a root)")
    parser.add_argument("--class", dest="class_choice", default="predicted", metavar="CLASS",
                        help="class to explain: predicted (default), true (the ground-truth label) or a class name")
    parser.add_argument("--method", choices=METHODS, default="gradcam", help="CAM method (default gradcam)")
    parser.add_argument("--colormap", choices=COLORMAPS, default="jet", help="colormap (default jet, as in the paper)")
    parser.add_argument("--opacity", type=float, default=0.5, help="heat map opacity over the photo, 0..1 (default 0.5)")
    parser.add_argument("--normalize", choices=("per_map", "shared", "p99"), default="per_map",
                        help="per_map: each map min-max scaled (default); shared: one scale for all models of an "
                             "image; p99: each model's map over its own 99th percentile on --reference (the "
                             "viewer's 'comparable across models'), so models can be compared")
    parser.add_argument("--reference", metavar="DATA",
                        help="with --normalize p99: the dataset whose val split (else test, else all; up to 64 "
                             "images, as in the viewer) sets each model's 99th percentile (default: --data)")
    parser.add_argument("--figure", metavar="FILE", help="write a figure: FILE.pdf, FILE.svg or FILE.png")
    parser.add_argument("--dpi", type=int, default=300, help="DPI of PNG figures and of overlay metadata (default 300)")
    parser.add_argument("--width", default="single", metavar="W",
                        help="figure width: single (3.5 in), double (7.16 in) or inches (default single)")
    parser.add_argument("--no-predictions", action="store_true", help="figure: no prediction/probability under the panels")
    parser.add_argument("--overlays", metavar="DIR", help="write overlays, heat maps and raw maps into DIR")
    parser.add_argument("--format", dest="overlay_format", choices=("png", "tiff"), default="png",
                        help="overlay image format (default png)")
    parser.add_argument("--only", nargs="+", choices=("overlay", "heatmap", "raw"), default=None,
                        help="overlay outputs to write (default: all three)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing files and re-create up-to-date ones (without it, outputs whose "
                             "sidecar matches are skipped and any other existing file stops the export)")
    parser.add_argument("--limit", type=int, metavar="N",
                        help="use only N images: the first N of --images, or N of the --split spread over its "
                             "classes and places (the same N every time)")
    parser.add_argument("--device", default="cpu", help="device for the CAMs (default cpu: reproducible bytes)")
    parser.add_argument("--from-sidecar", metavar="FILE",
                        help="re-create the export described by FILE.json (into --overlays DIR / --figure FILE if given)")


def run(args: argparse.Namespace) -> int:
    from geocam_gui.core import export as ex
    from geocam_gui.core.export.figure import parse_width

    if args.from_sidecar:
        return _run_from_sidecar(args, ex)
    if not args.checkpoint:
        raise BadArgument("Give at least one --checkpoint.")
    if not args.figure and not args.overlays:
        raise BadArgument("Nothing to export: give --figure FILE and/or --overlays DIR.")
    if args.limit is not None and args.limit < 1:
        raise BadArgument(f"--limit must be at least 1, got {args.limit}.")
    from geocam_gui.commands.common import expand_checkpoints, progress_printer

    checkpoints = [str(p) for p in expand_checkpoints(args.checkpoint, keep_order=args.keep_order)]
    images = _images(args, checkpoints)
    opts = ex.ExportOptions(class_choice=args.class_choice, method=args.method, cmap=args.colormap,
                            opacity=args.opacity, normalize=args.normalize, reference_images=_reference_images(args),
                            dpi=args.dpi, device=args.device,
                            overlay_format=args.overlay_format, outputs=tuple(args.only or ex.MODEL_OUTPUTS),
                            width_in=parse_width(args.width), show_predictions=not args.no_predictions)
    plans = []
    checking = progress_printer()

    def check(done: int, total: int) -> None:
        checking(done, total, "checking the sources")

    if args.overlays:
        plans.append(ex.plan_export(ex.ExportRequest("overlays", images, checkpoints, args.overlays, _copy(opts)),
                                     progress=check))
    if args.figure:
        plans.append(ex.plan_export(ex.ExportRequest("figure", images, checkpoints, args.figure, _copy(opts)),
                                     progress=check))
    for plan in plans:  # every clash is found before anything is written
        if plan.conflicts and not args.overwrite:
            c = plan.conflicts
            more = f" (and {len(c) - 1} more)" if len(c) > 1 else ""
            raise BadArgument(f"{c[0]} already exists{more}; pass --overwrite to replace it.")
    for warning in ex.chance_warnings(plans[0].models) if plans else []:
        print(f"geocam export: warning: {warning}", file=sys.stderr)
    status = 0
    for plan in plans:
        bar = progress_printer()
        summary = ex.run_export(plan, overwrite=args.overwrite, force=args.overwrite,
                                progress=lambda done, total, kind=plan.request.kind: bar(done, total, kind))
        _print_summary(summary)
        if summary.failed and not summary.written and not summary.skipped:
            status = 1  # every image failed
    return status


def _copy(opts):
    from dataclasses import replace

    return replace(opts)


def _images(args, checkpoints: list[str]):
    from geocam_gui.core.export import ExportImage

    if args.images:
        if args.data:
            raise BadArgument("--data goes with --split; give either --images or --split with --data.")
        out = []
        classes = _classes(checkpoints)
        for p in args.images:
            if not os.path.exists(p):
                raise BadArgument(f"The image {p} does not exist.")
            parent = Path(p).absolute().parent.name  # class-folder layout: the folder is the label
            out.append(ExportImage(str(Path(p).absolute()), parent if parent in classes else None))
    elif args.split:
        if not args.data:
            raise BadArgument("--split needs --data DATA (the dataset to take the split from).")
        if not os.path.exists(args.data):
            raise BadArgument(f"The dataset {args.data} does not exist.")
        from geocam_gui.core.data.datasets import open_data

        samples = open_data(args.data).split(args.split)
        if not samples:
            raise BadArgument(f"The {args.split} split of {args.data} has no images.")
        from geocam_gui.core.export.pick import spread

        return [ExportImage(s.path, s.label) for s in spread(samples, args.limit)]
    else:
        raise BadArgument("Give --images IMG [IMG ...] or --split SPLIT --data DATA.")
    return out[: args.limit] if args.limit else out


def _reference_images(args) -> tuple[str, ...]:
    """The viewer's reference sample of ``--reference`` (else ``--data``) for ``--normalize p99``."""
    if args.normalize != "p99":
        if args.reference:
            raise BadArgument("--reference goes with --normalize p99.")
        return ()
    data = args.reference or args.data
    if not data:
        raise BadArgument("--normalize p99 needs --reference DATA: the dataset whose images set each model's "
                          "99th percentile.")
    if not os.path.exists(data):
        raise BadArgument(f"The dataset {data} does not exist.")
    from geocam_gui.core.data.datasets import open_data
    from geocam_gui.core.explain.reference import reference_samples

    _split, chosen = reference_samples(open_data(data).samples)
    if not chosen:
        raise BadArgument(f"The dataset {data} has no images.")
    return tuple(str(s.path) for s in chosen)


def _classes(checkpoints: list[str]) -> list[str]:
    """The class names of the first checkpoint (empty when unreadable: reported later)."""
    from geocam_gui.core.checkpoints import read_meta
    from geocam_gui.core.errors import GeoCamError

    try:
        return list(read_meta(checkpoints[0]).get("classes", [])) if checkpoints else []
    except GeoCamError:
        return []


def _run_from_sidecar(args, ex) -> int:
    if args.figure and args.overlays:
        raise BadArgument("With --from-sidecar give at most one destination (--figure FILE or --overlays DIR).")
    data = ex.read_sidecar(args.from_sidecar)
    kind = data["params"].get("kind")
    if kind == "figure" and args.overlays:
        raise BadArgument(f"{args.from_sidecar} describes a figure; give its new place with --figure FILE.")
    if kind != "figure" and args.figure:
        raise BadArgument(f"{args.from_sidecar} describes an overlay output; give its new folder with --overlays DIR.")
    dest = args.figure or args.overlays
    summary = ex.export_from_sidecar(args.from_sidecar, dest, overwrite=args.overwrite)
    _print_summary(summary)
    return 1 if summary.failed or not summary.written else 0


def _print_summary(summary) -> None:
    for path in summary.written:
        print(f"wrote {path}")
    print(summary.text())
