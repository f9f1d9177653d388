"""GUI responsiveness: first thumbnails, scrolling, re-blending and training, with a stall probe.

The probe is a QTimer firing every 5 ms on the GUI thread; the longest gap between two ticks is
the longest the GUI thread was blocked (the budget: 50 ms). Measured:

1. time from ``set_index`` of a large folder (default 100,000 images) to the first thumbnail
   on screen (budget 1 s), and the longest stall while scrolling the thumbnail grid end to end;
2. re-blending the three panes at 224 px when opacity / class / colormap change (budget 16 ms
   per repaint of all three panes), from cached maps - no CAM is recomputed;
3. the longest stall while a training run works (in its child process, relayed by a QThread).

    QT_QPA_PLATFORM=offscreen python benchmarks/gui_responsiveness.py [--n 100000] [--parts open,scroll]

``--parts`` runs only some of ``open`` (taking the large index: model, filters, counts; the
stall is probed from ``set_index`` until the browser is loaded and one more second has passed),
``scroll``, ``reblend`` and ``train`` (default: all four).

``--first-demo-run`` measures instead what ``geocam-gui --demo`` does on a fresh machine: the demo
set is generated, indexed and the three missing models are trained (the GUI's demo recipes on
``--device``), with the longest stall while training; ``--json`` writes the figures
(``geocam_gui.gpu_check`` runs it on ``cuda``; ``--tiny`` shrinks data and runs for a rehearsal).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


class StallProbe:
    def __init__(self, interval_ms: int = 5):
        from PySide6.QtCore import QTimer

        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.reset()

    def reset(self) -> None:
        self.last = time.perf_counter()
        self.worst = 0.0
        self.over = 0  # gaps longer than the 50 ms budget
        self.gaps: list[tuple[float, float]] = []  # (perf_counter at the gap's start, ms), the first 100 over budget

    def _tick(self) -> None:
        now = time.perf_counter()
        self.worst = max(self.worst, now - self.last)
        if now - self.last > 0.05:
            self.over += 1
            if len(self.gaps) < 100:
                self.gaps.append((self.last, (now - self.last) * 1000))
        self.last = now

    def start(self) -> None:
        self.reset()
        self.timer.start()

    def stop(self) -> float:
        self.timer.stop()
        return self.worst * 1000


def pump(app, seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.001)


def make_tree(root: Path, n: int) -> None:
    """n tiny PNGs in two class folders (content varies so thumbnails differ)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("pittsburgh", "tokyo"):
        (root / cls).mkdir(parents=True, exist_ok=True)
    base = rng.integers(0, 255, (64, 24, 24, 3), dtype=np.uint8)
    for i in range(n):
        cls = "pittsburgh" if i % 2 == 0 else "tokyo"
        Image.fromarray(base[i % 64]).save(root / cls / f"pano{i // 4:06d}_v{i % 4}.png", compress_level=0)


#: ``--tiny``: a demo set and runs small enough for a CPU rehearsal in seconds.
TINY_DEMO = {"per_class": 12, "size": 32, "views_per_place": 2}
TINY_RUN = {"epochs": 1, "image_size": 32, "batch_size": 8}


def first_demo_run(device: str, *, tiny: bool = False, timeout_s: float = 600.0) -> dict:
    """``geocam-gui --demo`` on a fresh GEOCAM_HOME: seconds to the three trained models and the
    longest GUI stall while they train (the stall probe runs from the demo's generation on)."""
    from PySide6.QtWidgets import QApplication

    home = os.environ.setdefault("GEOCAM_HOME", tempfile.mkdtemp(prefix="geocam-bench-"))
    app = QApplication.instance() or QApplication(sys.argv[:1])
    from geocam_gui.ui.main_window import MainWindow

    window = MainWindow(checkpoint_dir=Path(home) / "ckpt", device=device)
    window.confirm_close = False
    window.auto_train_missing = True  # as geocam-gui --demo
    if tiny:
        real = window.demo_configs

        def small(models):
            configs = real(models)
            for cfg in configs:
                for key, value in TINY_RUN.items():
                    setattr(cfg, key, value)
                cfg.amp = cfg.amp and cfg.model == "shallow"  # bf16 is emulated (slow) on most CPUs
            return configs

        window.demo_configs = small
    window.resize(1280, 800)
    window.show()
    pump(app, 0.3)
    done, started, first_epoch, best = [], [], {}, {}
    window.training.runStarted.connect(lambda: started.append(time.perf_counter()))
    window.training.runFinished.connect(done.append)
    # The timeline: when each model's first epoch checkpoint reached the window (its pane fills
    # from then on) and when its last best checkpoint did.
    window.training.epochCheckpoint.connect(lambda m, _p: first_epoch.setdefault(m, time.perf_counter()))
    window.training.checkpointReady.connect(lambda m, _p: best.__setitem__(m, time.perf_counter()))
    probe = StallProbe()
    t0 = time.perf_counter()
    window.open_demo(**(TINY_DEMO if tiny else {}))
    while not started and time.perf_counter() - t0 < timeout_s:
        pump(app, 0.05)
    print(f"demo opened, training started after {time.perf_counter() - t0:.1f} s" if started
          else "training did not start", file=sys.stderr, flush=True)
    probe.start()
    while started and not done and time.perf_counter() - t0 < timeout_s:
        pump(app, 0.05)
    stall = probe.stop()
    seconds = time.perf_counter() - t0
    models = {}
    for meta_path in (Path(home) / "ckpt").rglob("best.json"):
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        name = meta_path.parent.name
        test = meta.get("metrics", {}).get("test", {})
        models[name] = {"test_accuracy": test.get("accuracy"), "test_n": test.get("n"),
                        "first_epoch_s": round(first_epoch[name] - t0, 1) if name in first_epoch else None,
                        "last_best_s": round(best[name] - t0, 1) if name in best else None}
    trained = sorted(models)
    # The training child's thread changes (core/cpu_share.py), as its log showed them.
    governor = [line for line in window.training.log.toPlainText().splitlines() if "Other programs use" in line]
    torch = sys.modules.get("torch")  # the compute process owns CUDA: this process must never start it
    result = {"device": device, "tiny": tiny, "seconds": round(seconds, 2),
              "training_seconds": round(time.perf_counter() - started[0], 2) if started else None,
              "worst_stall_ms": round(stall, 1), "finished": bool(done and done[0]), "trained": trained,
              "training_started_s": round(started[0] - t0, 1) if started else None, "models": models,
              # when the window stalled, to set beside the models' times (s from the start, ms)
              "gaps_over_50ms": [[round(at - t0, 1), round(ms, 1)] for at, ms in probe.gaps],
              "gui_cuda_initialized": bool(torch is not None and torch.cuda.is_initialized()),
              "thread_changes": governor}
    window.close()
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="images in the large folder")
    ap.add_argument("--keep", metavar="DIR", help="reuse/keep the generated folder here")
    ap.add_argument("--first-demo-run", action="store_true", help="measure geocam-gui --demo's first run instead")
    ap.add_argument("--device", default="cpu", help="with --first-demo-run: the training device")
    ap.add_argument("--tiny", action="store_true", help="with --first-demo-run: tiny data and runs")
    ap.add_argument("--timeout", type=float, default=600.0, help="with --first-demo-run: give up after this many s")
    ap.add_argument("--json", metavar="FILE", help="with --first-demo-run: write the figures here")
    ap.add_argument("--parts", default="open,scroll,reblend,train",
                    help="comma-separated parts to measure: open, scroll, reblend, train")
    args = ap.parse_args()
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if args.first_demo_run:
        result = first_demo_run(args.device, tiny=args.tiny, timeout_s=args.timeout)
        print(json.dumps(result))
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=1), encoding="utf-8")
        return 0 if result["finished"] and len(result["trained"]) == 3 else 1

    from PySide6.QtWidgets import QApplication

    home = tempfile.mkdtemp(prefix="geocam-bench-")
    atexit.register(shutil.rmtree, home, True)  # 100,000 images: ~2 GB per run otherwise left in /tmp
    os.environ["GEOCAM_HOME"] = home
    app = QApplication.instance() or QApplication(sys.argv[:1])
    from geocam_gui.core.data.datasets import index_dataset
    from geocam_gui.ui.main_window import MainWindow

    root = Path(args.keep) if args.keep else Path(home) / "big"
    if not (root / "tokyo").is_dir():
        t = time.perf_counter()
        make_tree(root, args.n)
        print(f"wrote {args.n} images in {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    index = index_dataset([root], layout="folders", verify="none")
    print(f"indexed {len(index.samples)} images in {time.perf_counter() - t:.2f} s")

    window = MainWindow(checkpoint_dir=Path(home) / "ckpt", device="cpu")
    window.confirm_close = False
    window.resize(1280, 800)
    window.show()
    pump(app, 0.5)
    probe = StallProbe()

    # 1. taking the index: first thumbnails, then (1b) scrolling the grid from top to bottom. As in the app, the
    #    run folder (which needs the index fingerprint, a stat of every file) comes from the
    #    indexing worker, not from the GUI thread.
    run_dir = window.workspace.run_dir_for(index)
    probe.start()
    t0 = time.perf_counter()
    window.set_index(index, run_dir=run_dir)
    first = loaded_at = None
    while time.perf_counter() - t0 < 20 and (first is None or loaded_at is None):
        app.processEvents()
        if first is None and window.browser.model._images:
            first = time.perf_counter() - t0
        if loaded_at is None and not window.browser.is_loading():
            loaded_at = time.perf_counter() - t0
        time.sleep(0.001)
    pump(app, 1.0)  # what follows the hand-over (batched layout, thumbnails) counts too
    stall_open = probe.stop()
    print(f"first thumbnail after set_index: {first * 1000 if first else float('nan'):.0f} ms (budget 1000 ms)"
          f"; browser loaded after {loaded_at * 1000 if loaded_at else float('nan'):.0f} ms"
          f"; longest GUI stall while taking the index: {stall_open:.1f} ms (budget 50 ms)", flush=True)
    if "scroll" in parts:
        scroll(app, window, index)
    if "reblend" in parts:
        reblend(app, window, index)
    if "train" in parts:
        train(app, window, home)
    return _finish(app, window)


def scroll(app, window, index) -> None:
    """1b. scrolling the thumbnail grid from top to bottom"""
    probe = StallProbe()
    bar = window.browser.grid.verticalScrollBar()
    probe.start()
    steps = 300
    t = time.perf_counter()
    for i in range(steps + 1):
        bar.setValue(int(bar.maximum() * i / steps))
        pump(app, 0.01)
    scroll_s = time.perf_counter() - t
    stall_scroll = probe.stop()
    loaded = len(window.browser.model._images)
    print(f"scrolled {len(index.samples)} items end to end in {scroll_s:.1f} s ({loaded} thumbnails made); "
          f"longest GUI stall: {stall_scroll:.1f} ms (budget 50 ms, ratio {50 / max(stall_scroll, 1e-3):.1f}x)")


def reblend(app, window, index) -> None:
    """2. re-blending cached maps at 224 px"""
    import numpy as np

    from geocam_gui.core.explain.store import ImageExplanation, ModelExplanation

    rng = np.random.default_rng(0)
    exp = ImageExplanation(path=str(index.samples[0].path), label="tokyo",
                           image=rng.integers(0, 255, (224, 224, 3), dtype=np.uint8))
    for name, h in (("shallow", 28), ("vgg11", 14), ("resnet18", 7)):
        exp.models[name] = ModelExplanation(name, "x", ["pittsburgh", "tokyo"], rng.random((2, h, h)).astype(np.float32),
                                            np.array([0.3, 0.7], np.float32), 224, "gradcam")
    viewer = window.viewer
    # The viewer draws only the selected image's explanation, and only for models with a
    # checkpoint: make this one the selected image and the three models present (no request is
    # sent; the maps above stand for their CAMs).
    viewer._sample = (exp.path, exp.label)
    for name in exp.models:
        window.workspace._checkpoints[name] = f"benchmark-{name}"
    viewer._explanation = exp
    viewer.rerender()
    assert all(pane.rgb is not None for pane in viewer.panes.values()), "the panes drew nothing"
    times = []
    for i in range(60):
        t = time.perf_counter()
        viewer.opacity.setValue(20 + i % 60)  # each change re-blends all three panes
        app.processEvents()
        times.append(time.perf_counter() - t)
    ms = float(np.median(times)) * 1000
    print(f"re-blend of three 224-px panes on an opacity change: median {ms:.2f} ms, worst {max(times) * 1000:.2f} ms "
          f"(budget 16 ms, ratio {16 / ms:.1f}x)")


def train(app, window, home) -> None:
    """3. training (in its child process) with the epoch-end refresh on: an image is selected, so
    each new checkpoint is explained for the viewer and predicted for the browser"""
    probe = StallProbe()
    from geocam_gui.core.data.demo import generate_demo

    demo = generate_demo(Path(home) / "demo", per_class=40, size=64, views_per_place=2)
    window.open_dataset([str(demo)])
    while window.index is None or Path(window.index.roots[0]).resolve() != demo.resolve():
        pump(app, 0.05)
    window.browser.select_row(0)
    pump(app, 1.0)
    panel = window.training
    panel.select_models(["shallow", "resnet18"])
    panel.epochs.setValue(2)
    done = []
    panel.runFinished.connect(done.append)
    probe.start()
    panel.start()
    while not done or not window.is_idle():  # to the last epoch's CAMs and predictions
        pump(app, 0.05)
    stall_train = probe.stop()
    print(f"longest GUI stall while training shallow + ResNet18 with epoch-end CAMs and predictions: "
          f"{stall_train:.1f} ms (budget 50 ms; {probe.over} gaps over it)")


def _finish(app, window) -> int:
    window.close()
    from geocam_gui.ui.compute import shutdown_all

    shutdown_all()
    window.deleteLater()  # torn down by Qt now, not by the interpreter's finalisation
    app.processEvents()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
