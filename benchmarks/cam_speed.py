"""Both-class Grad-CAM: geocam's engine against grad-cam 1.5.7, in the same run.

CPU: one 224-px image, ``torch.set_num_threads(2)`` (the project's machines), the two libraries
interleaved repeat by repeat, medians reported. CUDA (when available): batch 32, time per image.
grad-cam is called once per class (its API explains one target per image per call); geocam
computes every class in one call. Both explain the same target layer (``models.target_layer``)
and the maps are checked to agree before timing.

    .venv/bin/python benchmarks/cam_speed.py [--repeats 7] [--models vgg11 resnet18 shallow]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from geocam_gui.core.explain.cam import compute_cams
from geocam_gui.core.models import build_model, target_layer


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _geocam(model, x, layer):
    r = compute_cams(model, x, layer, method="gradcam")
    return r.maps


def _gradcam(model, x, layer, num_classes: int):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with GradCAM(model=model, target_layers=[layer]) as cam:
        maps = [cam(x, [ClassifierOutputTarget(k)] * x.shape[0]) for k in range(num_classes)]
    return np.stack(maps, 1)


def bench(name: str, device: torch.device, batch: int, size: int, repeats: int) -> dict:
    torch.manual_seed(0)
    model = build_model(name, 2).to(device).eval()
    layer = target_layer(model, name)
    x = torch.randn(batch, 3, size, size, device=device)
    ours = _geocam(model, x, layer).cpu().numpy()
    ref = _gradcam(model, x, layer, 2)
    diff = float(np.abs(ours - ref).max())
    t_ours, t_ref, c_ours, c_ref = [], [], [], []
    for _ in range(repeats):  # interleaved: both see the same machine load
        _sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        _geocam(model, x, layer)
        _sync(device)
        t_ours.append(time.perf_counter() - t0)
        c_ours.append(time.process_time() - c0)
        t0, c0 = time.perf_counter(), time.process_time()
        _gradcam(model, x, layer, 2)
        _sync(device)
        t_ref.append(time.perf_counter() - t0)
        c_ref.append(time.process_time() - c0)
    a, b = statistics.median(t_ours), statistics.median(t_ref)
    ca, cb = statistics.median(c_ours), statistics.median(c_ref)
    return {"model": name, "device": str(device), "batch": batch, "size": size,
            "geocam_ms": 1000 * a / batch, "gradcam_ms": 1000 * b / batch, "ratio": b / a,
            "cpu_ratio": cb / ca, "max_diff": diff}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["shallow", "vgg11", "resnet18"])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cuda-batch", type=int, default=32)
    p.add_argument("--no-cuda", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    runs = [(torch.device("cpu"), 1)]
    if torch.cuda.is_available() and not args.no_cuda:
        torch.backends.cudnn.benchmark = True
        runs.append((torch.device("cuda"), args.cuda_batch))
    print(f"torch {torch.__version__}, {args.threads} CPU threads, {args.size} px, median of {args.repeats}")
    print("| model | device | batch | geocam ms/img | grad-cam 1.5.7 ms/img | speed-up (wall) "
          "| speed-up (process CPU time) | max abs diff |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for device, batch in runs:
        for name in args.models:
            r = bench(name, device, batch, args.size, args.repeats)
            dev = r["device"] if device.type == "cpu" else torch.cuda.get_device_name(device)
            print(f"| {name} | {dev} | {batch} | {r['geocam_ms']:.2f} | {r['gradcam_ms']:.2f} | "
                  f"{r['ratio']:.1f}x | {r['cpu_ratio']:.1f}x | {r['max_diff']:.1e} |", flush=True)


if __name__ == "__main__":
    main()
