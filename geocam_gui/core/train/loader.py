"""Feeding the training loop from the decoded uint8 cache, with no per-epoch decoding.

* ``BatchFeeder`` gathers batches by index from the cached ``(N, S, S, 3)`` uint8 array. On a
  CUDA device the whole uint8 array is uploaded once when it fits (a 224 px image is 150 KB, so
  10,000 images take 1.5 GB); otherwise batches are gathered on the host into pinned memory and
  copied asynchronously, optionally assembled ahead by background threads.
* ``augment`` does random resized crop + horizontal flip for a whole batch at once on the
  training device (one ``affine_grid`` + ``grid_sample``), from a seeded generator so a run is
  reproducible and resumable.
* ``val_subset`` is the fixed, class-stratified sample a run validates on when its validation
  split is capped (``TrainConfig.val_limit``).
* ``epoch_order`` is the shuffled order of one epoch for one DDP rank (the same permutation on
  every rank, padded to a multiple of the world size and strided by rank, like
  ``DistributedSampler``).
"""

from __future__ import annotations

import math
import queue
import threading
import warnings
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from geocam_gui.core.device import free_memory, gpu_path, release_cached_memory
from geocam_gui.core.models import preprocess

#: Fraction of the free GPU memory the resident uint8 copy of the data may take.
GPU_RESIDENT_FRACTION = 0.35
_OOM = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


@dataclass
class AugmentConfig:
    """Training-time augmentation. ``scale`` is the area fraction range of the random crop
    (``(1.0, 1.0)`` disables cropping), ``ratio`` its aspect-ratio range."""

    crop: bool = True
    scale: tuple[float, float] = (0.6, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: bool = True


def epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    """A CPU generator determined by (seed, epoch, stream) alone, so resuming at any epoch
    reproduces the random numbers an uninterrupted run would have drawn."""
    g = torch.Generator()
    g.manual_seed((int(seed) * 1_000_003 + int(epoch) * 7_919 + int(stream) * 104_729) % (2**63 - 1))
    return g


def val_subset(positions: torch.Tensor, labels: np.ndarray, limit: int | None, seed: int) -> torch.Tensor:
    """``limit`` of ``positions`` (one per class when there are more classes than that), the same
    for every epoch and every resume: each class keeps its share of the split (largest
    remainders, at least one image for each class present), drawn from a permutation seeded by
    ``seed``; returned in ascending order. ``None`` or a limit of at least ``len(positions)``:
    all of them."""
    n = len(positions)
    if limit is None or limit >= n:
        return positions
    # stream 3: not epoch_order's 1 nor the augmentation's 2 + 10 * rank, so no shared numbers
    perm = torch.randperm(n, generator=epoch_generator(seed, 0, stream=3))
    lab = np.asarray(labels)[positions[perm].numpy()]
    kinds, counts = np.unique(lab, return_counts=True)
    exact = counts * (limit / n)
    quota = np.maximum(np.floor(exact).astype(int), 1)
    for i in np.argsort(-(exact - np.floor(exact)), kind="stable")[: max(0, limit - int(quota.sum()))]:
        quota[i] += 1
    keep = np.concatenate([np.flatnonzero(lab == c)[:q] for c, q in zip(kinds, quota)])
    return torch.sort(positions[perm[torch.from_numpy(keep)]]).values


def epoch_order(
    n: int,
    *,
    seed: int,
    epoch: int,
    rank: int = 0,
    world: int = 1,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sample positions (int64) this rank trains on in ``epoch``.

    Without ``weights`` it is a permutation of ``range(n)``; with per-sample ``weights`` it is
    ``n`` draws with replacement (class-balanced sampling). Padded by wrapping to a multiple of
    ``world`` so every rank runs the same number of batches.
    """
    g = epoch_generator(seed, epoch, stream=1)
    if weights is not None:
        order = torch.multinomial(weights.double(), n, replacement=True, generator=g)
    else:
        order = torch.randperm(n, generator=g)
    if world > 1:
        total = math.ceil(n / world) * world
        if total > n:
            order = torch.cat([order, order[: total - n]])
        order = order[rank::world]
    return order


def augment(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Random resized crop + horizontal flip of a float batch ``(B, C, H, W)``, same output size.

    The crop boxes are drawn on the CPU from ``generator`` (a few numbers per image) and applied
    on ``x``'s device in one ``grid_sample``; flips are a sign in the same affine matrix.
    """
    b = x.shape[0]
    if b == 0 or (not cfg.crop and not cfg.hflip):
        return x
    r = torch.rand(b, 5, generator=generator, dtype=torch.float64)
    if cfg.crop:
        lo, hi = cfg.scale
        area = lo + (hi - lo) * r[:, 0]
        log_lo, log_hi = math.log(cfg.ratio[0]), math.log(cfg.ratio[1])
        aspect = torch.exp(log_lo + (log_hi - log_lo) * r[:, 1])
        w = torch.sqrt(area * aspect).clamp(max=1.0)  # fraction of the width
        h = torch.sqrt(area / aspect).clamp(max=1.0)
        cx = (1.0 - w) * (2.0 * r[:, 2] - 1.0)  # centre in [-1, 1] coordinates
        cy = (1.0 - h) * (2.0 * r[:, 3] - 1.0)
    else:
        w = h = torch.ones(b, dtype=torch.float64)
        cx = cy = torch.zeros(b, dtype=torch.float64)
    sx = w * torch.where(r[:, 4] < 0.5, -1.0, 1.0) if cfg.hflip else w
    theta = torch.zeros(b, 2, 3, dtype=torch.float64)
    theta[:, 0, 0], theta[:, 0, 2] = sx, cx
    theta[:, 1, 1], theta[:, 1, 2] = h, cy
    theta = theta.to(device=x.device, dtype=torch.float32)
    work = x if x.dtype in (torch.float32, torch.float64) else x.float()
    grid = F.affine_grid(theta, list(work.shape), align_corners=False)
    out = F.grid_sample(work, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return out.to(x.dtype)


class BatchFeeder:
    """Batches of (normalised float NCHW, int64 labels) on ``device`` from cached uint8 images.

    ``images`` is an (N, S, S, 3) uint8 array (a numpy memmap from the cache, an ndarray or a
    tensor); ``labels`` (N,) integer. ``resident``: "auto" keeps a copy on a CUDA device when it
    takes less than ``GPU_RESIDENT_FRACTION`` of the free memory, True forces, False never.
    Inside ``device.cuda_twin()`` a CPU feeder does the same with a separate host copy.
    """

    def __init__(self, images, labels, device: torch.device, *, resident: str | bool = "auto",
                 channels_last: bool = False):
        self.device = torch.device(device)
        self.n = int(len(labels))
        self.channels_last = channels_last
        self._labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
        self._host = images  # numpy (memmap) or tensor, never copied on the CPU path
        self._gpu: torch.Tensor | None = None
        if gpu_path(self.device) and self.n and self._want_resident(resident):
            try:
                self._gpu = self._upload(images)
            except _OOM:  # keep the data on the host, pinned batch by batch
                self._gpu = None
                release_cached_memory(self.device)
        self._labels_dev = self._labels.to(self.device)
        self.resident = self._gpu is not None

    def _want_resident(self, resident: str | bool) -> bool:
        if resident is True or resident is False:
            return resident
        nbytes = int(np.prod(self._host.shape)) * 1
        try:
            free = free_memory(self.device)
        except RuntimeError:
            return False
        return nbytes < GPU_RESIDENT_FRACTION * free

    def _upload(self, images) -> torch.Tensor:
        """One copy of all the uint8 images on the device (a separate copy on the CPU twin)."""
        if torch.is_tensor(images):
            return images.to(self.device, copy=True)
        with warnings.catch_warnings():  # a read-only memmap: only read, to make the copy
            warnings.simplefilter("ignore", UserWarning)
            return torch.from_numpy(np.ascontiguousarray(images)).to(self.device, copy=True)

    def gather_uint8(self, idx: torch.Tensor) -> torch.Tensor:
        """The uint8 NHWC images at sample positions ``idx`` (on the host, pinned for CUDA)."""
        idx_np = idx.numpy()
        if torch.is_tensor(self._host):
            out = self._host.index_select(0, idx)
        else:
            out = torch.from_numpy(np.ascontiguousarray(self._host[idx_np]))
        if self.device.type == "cuda":
            out = out.pin_memory()
        return out

    def batch(self, idx: torch.Tensor, staged: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised float (B, 3, S, S) images and int64 labels at positions ``idx`` on the device.

        ``staged`` is the result of ``gather_uint8(idx)`` computed ahead (e.g. by a thread).
        """
        if self._gpu is not None:
            x8 = self._gpu.index_select(0, idx.to(self.device, non_blocking=True))
        else:
            x8 = staged if staged is not None else self.gather_uint8(idx)
            x8 = x8.to(self.device, non_blocking=True)
        x = preprocess(x8)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = self._labels_dev.index_select(0, idx.to(self._labels_dev.device))
        return x, y

    def iterate(self, order: torch.Tensor, batch_size: int, *, start: int = 0, workers: int = 0,
                min_size: int = 1) -> Iterator[tuple[int, torch.Tensor, torch.Tensor | None]]:
        """(position, sorted indices, staged uint8 or None) for each batch of ``order[start:]``.

        Indices inside a batch are sorted (the batch is the same set; memmap reads get faster).
        A last batch smaller than ``min_size`` is left out (batch norm cannot train on one
        image). With ``workers`` > 0 and data not resident, batches are gathered ahead by threads.
        """
        spans = []
        pos = start
        while pos < len(order):
            end = min(pos + batch_size, len(order))
            if end - pos < min_size:
                break
            spans.append((pos, torch.sort(order[pos:end]).values))
            pos = end
        if workers <= 0 or self._gpu is not None:
            for pos, idx in spans:
                yield pos, idx, None
            return
        yield from _prefetched(spans, self.gather_uint8, workers)


def _prefetched(spans, gather, workers: int):
    """Run ``gather`` on ``spans`` in ``workers`` threads, yielding in order (bounded queue)."""
    depth = max(2, 2 * workers)
    results: dict[int, torch.Tensor | BaseException] = {}
    cond = threading.Condition()
    stop = threading.Event()
    tasks: queue.Queue = queue.Queue()
    for i, span in enumerate(spans):
        tasks.put((i, span))
    next_needed = [0]

    def worker() -> None:
        while not stop.is_set():
            try:
                i, (_pos, idx) = tasks.get_nowait()
            except queue.Empty:
                return
            with cond:
                while i >= next_needed[0] + depth and not stop.is_set():
                    cond.wait(0.1)
            if stop.is_set():
                return
            try:
                value: torch.Tensor | BaseException = gather(idx)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
                value = exc
            with cond:
                results[i] = value
                cond.notify_all()

    threads = [threading.Thread(target=worker, daemon=True, name=f"geocam-batch-{k}") for k in range(workers)]
    for t in threads:
        t.start()
    try:
        for i, (pos, idx) in enumerate(spans):
            with cond:
                while i not in results:
                    cond.wait(0.1)
                value = results.pop(i)
                next_needed[0] = i + 1
                cond.notify_all()
            if isinstance(value, BaseException):
                raise value
            yield pos, idx, value
    finally:
        stop.set()
        with cond:
            cond.notify_all()
        for t in threads:
            t.join(timeout=5)
