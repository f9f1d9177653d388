"""What a training run costs in floating-point operations: the weights the training panel gives
each model's epochs in its overall progress and time left.

Counting epochs alone made the first demo run's estimate 3-4 times too short once the shallow
net was done (its 18 epochs are 60 % of the run's epochs and about 30 % of its time). The three
models train at similar rates in FLOPs: 59-73 GFLOP/s on 2 cores of an AVX2 CPU in float32,
165-320 on an AVX512-BF16 one (benchmarks/RESULTS.md), so FLOPs are the estimate. Counted as
torch's ``FlopCounterMode`` counts them (tests/test_train_cost.py checks it): 2 per multiply-add
of the convolutions and linear layers, nothing for batch norm, ReLU or pooling; the backward
pass costs twice the forward.
"""

from __future__ import annotations

import math
import time

from geocam_gui.core.models import SHALLOW_HIDDEN, SHALLOW_WIDTHS

#: torchvision's VGG configuration "A" (VGG11): channels of the 3 x 3 convolutions, "M" max-pool.
_VGG11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


def _conv(size: int, c_in: int, c_out: int, k: int, stride: int = 1, pad: int = 0) -> tuple[int, int]:
    """(FLOPs, output side) of a square convolution on a ``size`` x ``size`` input."""
    out = (size + 2 * pad - k) // stride + 1
    return 2 * out * out * c_in * c_out * k * k, out


def forward_flops(model: str, image_size: int, num_classes: int = 2) -> int:
    """FLOPs of one image's forward pass through ``model`` (``models.MODEL_NAMES``) at ``image_size``."""
    s, flops = image_size, 0
    if model == "shallow":
        c = 3
        for w in SHALLOW_WIDTHS:  # conv 3x3 (padding 1), batch norm, ReLU, max-pool 2
            f, s = _conv(s, c, w, 3, pad=1)
            flops, s, c = flops + f, s // 2, w
        return flops + 2 * (c * SHALLOW_HIDDEN + SHALLOW_HIDDEN * num_classes)
    if model == "vgg11":
        c = 3
        for v in _VGG11:
            if v == "M":
                s //= 2
            else:
                f, s = _conv(s, c, v, 3, pad=1)
                flops, c = flops + f, v
        return flops + 2 * (512 * 7 * 7 * 4096 + 4096 * 4096 + 4096 * num_classes)  # after a 7 x 7 pool
    if model == "resnet18":
        flops, s = _conv(s, 3, 64, 7, stride=2, pad=3)
        s = (s + 2 - 3) // 2 + 1  # max-pool 3, stride 2, padding 1
        c = 64
        for width, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            for block in range(2):  # two basic blocks per stage
                st = stride if block == 0 else 1
                f1, out = _conv(s, c, width, 3, stride=st, pad=1)
                f2, _ = _conv(out, width, width, 3, pad=1)
                flops += f1 + f2
                if st != 1 or c != width:  # the 1 x 1 projection of the shortcut
                    flops += _conv(s, c, width, 1, stride=st)[0]
                s, c = out, width
        return flops + 2 * 512 * num_classes
    raise ValueError(f"unknown model {model!r}")


def epoch_flops(config, n_train: int, n_val: int, num_classes: int = 2) -> tuple[float, float]:
    """(training, validation) FLOPs of one epoch of ``config`` (a ``TrainConfig``) on splits of
    ``n_train`` and ``n_val`` images, capped as the loop caps them (``max_batches_per_epoch``,
    ``val_limit``)."""
    per_image = forward_flops(config.model, config.image_size, num_classes)
    train = n_train
    if config.max_batches_per_epoch:
        train = min(train, config.max_batches_per_epoch * config.batch_size)
    val = min(n_val, config.val_limit) if config.val_limit else n_val
    return 3.0 * per_image * train, float(per_image) * val


class RunCost:
    """Progress of a queue of training runs in FLOPs: ``fraction()`` done and ``eta(elapsed)``.

    ``configs``: the queue's ``TrainConfig`` objects; ``splits``: the images of the train, val and
    test splits. Follow it with ``started(model, start_epoch)`` (a resumed run skips its done
    epochs), ``batch(model, epoch, batch, batches)``, ``epoch_done(model, epoch)`` and
    ``finished(model, ok)``."""

    def __init__(self, configs: list, splits: dict[str, int], num_classes: int = 2):
        self._epoch: dict[str, tuple[float, float]] = {}
        self._total: dict[str, float] = {}
        self._done: dict[str, float] = {}
        self._start: dict[str, int] = {}
        for c in configs:
            train, val = epoch_flops(c, splits.get("train", 0), splits.get("val", 0), num_classes)
            test = float(forward_flops(c.model, c.image_size, num_classes)) * splits.get("test", 0)
            self._epoch[c.model] = (train, val)
            self._total[c.model] = (train + val) * int(c.epochs) + test
            self._done[c.model] = 0.0

    def started(self, model: str, start_epoch: int) -> None:
        if model in self._total:  # the epochs a resumed run has done are not this run's work
            train, val = self._epoch[model]
            self._total[model] -= (train + val) * (start_epoch - self._start.get(model, 0))
            self._start[model] = start_epoch
            self._done[model] = 0.0

    def _before(self, model: str, epoch: int) -> float:
        """This run's work on ``model`` before its 1-based ``epoch``."""
        train, val = self._epoch[model]
        return (train + val) * max(0, epoch - 1 - self._start.get(model, 0))

    def batch(self, model: str, epoch: int, batch: int, batches: int) -> None:
        if model in self._total:
            self._done[model] = self._before(model, epoch) + self._epoch[model][0] * batch / max(1, batches)

    def epoch_done(self, model: str, epoch: int) -> None:
        if model in self._total:
            self._done[model] = self._before(model, epoch + 1)

    def finished(self, model: str, ok: bool = True) -> None:
        """``model`` has no work left: all of it done, or (``ok=False``: it failed) the rest dropped."""
        if model in self._total:
            if ok:
                self._done[model] = self._total[model]
            else:
                self._total[model] = self._done[model]

    def fraction(self) -> float:
        total = sum(self._total.values())
        return min(1.0, sum(self._done.values()) / total) if total > 0 else 0.0

    def eta(self, elapsed: float) -> float | None:
        """Seconds left at the rate so far (None before 1 % is done)."""
        frac = self.fraction()
        return elapsed * (1 - frac) / frac if frac > 0.01 and math.isfinite(elapsed) else None


class RunClock:
    """Seconds a run has been running: wall time since it started, less the time it spent paused,
    so the time left extrapolates from work time alone (a run paused for ten minutes halfway would
    otherwise say it needs ten more). ``now`` is the clock (``time.monotonic``; tests pass their own)."""

    def __init__(self, now=time.monotonic):
        self._now = now
        self._t0 = now()
        self._paused = 0.0
        self._since: float | None = None

    def pause(self) -> None:
        if self._since is None:
            self._since = self._now()

    def resume(self) -> None:
        if self._since is not None:
            self._paused += self._now() - self._since
            self._since = None

    def running(self) -> float:
        """Seconds spent running (paused time excluded)."""
        now = self._now()
        paused = self._paused + (now - self._since if self._since is not None else 0.0)
        return max(0.0, now - self._t0 - paused)

    def wall(self) -> float:
        """Seconds since the start, pauses included."""
        return self._now() - self._t0
