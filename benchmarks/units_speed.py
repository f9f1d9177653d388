"""Network Dissection of one layer against one inference pass over the same images, same run.

For each model: the split's images are decoded once (the uint8 cache both sides read), then,
interleaved repeat by repeat, (a) one inference pass (batches of 32, ``torch.no_grad``, logits)
and (b) ``units.scan_layer`` at the model's Grad-CAM layer with the label maps read from their
label cache (decoded from their PNG files once, before timing, as the images are; the time
that takes is printed) (quantile, top-k, spool, IoU: everything but the mosaics). Medians and the ratio
b / a are printed (goal: at most 1.5), with the bytes the statistics need (independent of the
number of images) and the spool's bytes per image (on disk, only up to ``SPOOL_LIMIT``).

    .venv/bin/python benchmarks/units_speed.py DEMO_WITH_LABEL_MAPS [--repeats 3] [--threads 2]
        [--models shallow vgg11 resnet18] [--size 64] [--limit 240] [--checkpoints runs/*/best.json]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from geocam_gui.core.analysis import dissection as nd
from geocam_gui.core.analysis import units as un
from geocam_gui.core.analysis.run import select_samples
from geocam_gui.core.data import cache
from geocam_gui.core.data.datasets import open_data
from geocam_gui.core.models import build_model, preprocess


@torch.no_grad()
def inference(model, images, batch=un.BATCH):
    for s in range(0, len(images), batch):
        model(preprocess(np.ascontiguousarray(images[s : s + batch])))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", nargs="?", help="a demo set with label maps (default: generate one into a temporary folder)")
    ap.add_argument("--per-class", type=int, default=200, help="without DATA: images per class of the generated set")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", nargs="+", default=["shallow", "vgg11", "resnet18"])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--limit", type=int, default=240)
    ap.add_argument("--checkpoints", nargs="*", default=[], metavar="CKPT",
                    help="trained checkpoints to use instead of untrained models (their image size wins)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.data is None:
        import tempfile

        from geocam_gui.core.data.demo import generate_demo

        args.data = str(generate_demo(Path(tempfile.mkdtemp(prefix="units-bench-")) / "demo", per_class=args.per_class,
                                      size=args.size))
    index = open_data(args.data)
    legend, why = nd.read_legend(index.roots)
    if legend is None:
        raise SystemExit(why)
    samples = select_samples(index.split("test"), args.limit, list(index.classes))
    dec = cache.decoded_split(samples, args.size, classes=list(index.classes))
    images = np.asarray(dec.images)
    labels = nd.LabelSource([s.path for s in samples], args.size, legend)
    t = time.perf_counter()
    labels.prepare()  # decoded once and cached, like the images: not in either timing
    print(f"label maps decoded in {time.perf_counter() - t:.2f} s (first run only)")
    print(f"{len(images)} images at {args.size} px, {args.threads} threads, {args.repeats} repeats")
    print("| model | layer | inference pass | dissection | ratio | statistics | spool per image |")
    print("|---|---|---:|---:|---:|---:|---:|")
    from geocam_gui.core.checkpoints import load_checkpoint

    trained = {}
    for c in args.checkpoints:
        loaded = load_checkpoint(c)
        trained[loaded.meta["model"]] = loaded.model
    for name in args.models:
        torch.manual_seed(0)
        model = trained.get(name) or build_model(name, 2).eval()
        layer = un.cam_layer_name(model, name)
        inference(model, images[:32])  # warm-up
        t_inf, t_dis, scan = [], [], None
        for _ in range(args.repeats):
            t = time.perf_counter()
            inference(model, images)
            t_inf.append(time.perf_counter() - t)
            t = time.perf_counter()
            scan = un.scan_layer(model, layer, images, k=9, labels_for=labels)
            t_dis.append(time.perf_counter() - t)
        a, b = statistics.median(t_inf), statistics.median(t_dis)
        per_image = scan.units * scan.shape[0] * scan.shape[1] * 2
        stats = scan.stats_bytes + scan.top.maps.nbytes + scan.top.score.nbytes * 4
        print(f"| {name} | {layer} ({scan.units} x {scan.shape[0]} x {scan.shape[1]}) | {a:.2f} s | {b:.2f} s | "
              f"{b / a:.2f}x | {stats / 2**20:.1f} MiB | {per_image / 1024:.1f} KiB |")


if __name__ == "__main__":
    main()
