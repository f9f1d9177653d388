"""The epoch loop behind ``training.Trainer`` (kept apart so the public API stays readable).

Data: every split is decoded once into the uint8 cache (``cache.decoded_split``) and batches are
assembled by index from it (``loader.BatchFeeder``); augmentation and normalisation run on the
training device. Each epoch's state (weights once, optimiser moments beside them, best as a hard
link) is written by ``saver.StateWriter`` in the background while the next epoch runs, in an order
that keeps ``--resume`` exact (see ``saver``).

Long because: one epoch loop serves CPU and CUDA (bf16, channels_last, out-of-memory retry) and
DistributedDataParallel with exact resume; split, each part would need the loop's state.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from geocam_gui.core import checkpoints as ckpt
from geocam_gui.core.device import (bf16_native, ddp_backend, ddp_device, describe_device, gpu_path,
                                     release_cached_memory, resolve_device)
from geocam_gui.core.errors import CheckpointError, BadData, GeoCamError
from geocam_gui.core.files import atomic_write
from geocam_gui.core.train.config import TrainConfig, check_resumable
from geocam_gui.core.train.optim import make_optimizer, match_param_layout
from geocam_gui.core.train import events as ev
from geocam_gui.core.train.events import TrainResult
from geocam_gui.core.train.loader import BatchFeeder, augment, epoch_generator, epoch_order, val_subset
from geocam_gui.core.train.metrics import confusion_update, summarize
from geocam_gui.core.train.saver import EpochSave, StateWriter, load_resume, save_half_copy
from geocam_gui.core.models import build_model, is_legacy_shallow

_OOM = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
_EVENT_INTERVAL_S = 0.5

#: Fault-injection hook (tests, ``gpu_check --dry-run-cpu``): each 1-based ``(epoch, batch)`` in
#: this set makes that training batch raise ``torch.OutOfMemoryError`` once, just before its
#: forward pass, as CUDA would; the entry is removed when it fires. ``("eval", n)`` does the same
#: to the n-th evaluation batch (counted over the process).
INJECT_OOM: set[tuple] = set()
_eval_batches = [0]

#: Test hook (the GUI's cancel test): ``GEOCAM_TEST_SLOW_STEP="SECONDS[@EPOCH]"`` makes every
#: training step of 1-based epoch EPOCH (default 1) and later sleep SECONDS inside the step, after
#: the forward pass, as a minute-long VGG11 batch on a loaded CPU would. It is read from the
#: environment when a run starts, so it reaches the training child process too. Never set it
#: outside tests.
SLOW_STEP_ENV = "GEOCAM_TEST_SLOW_STEP"


def slow_step_hook() -> tuple[float, int]:
    """(seconds, first epoch) of ``GEOCAM_TEST_SLOW_STEP``; (0, 0) when unset or unreadable."""
    raw = os.environ.get(SLOW_STEP_ENV, "").strip()
    if not raw:
        return 0.0, 0
    seconds, _, epoch = raw.partition("@")
    try:
        return max(0.0, float(seconds)), int(epoch or 1)
    except ValueError:
        return 0.0, 0


def _maybe_inject_oom(key: tuple) -> None:
    if key in INJECT_OOM:
        INJECT_OOM.discard(key)
        raise _OOM(f"CUDA out of memory (injected at {key})")


# --------------------------------------------------------------------------- DDP helpers
def ddp_setup(device_spec: str) -> bool:
    """Join the torchrun process group when ``WORLD_SIZE`` > 1; True if this call created it."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available() or dist.is_initialized():
        return False
    backend = ddp_backend(device_spec, torch.cuda.is_available())
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    try:
        dist.init_process_group(backend)
    except Exception as exc:  # noqa: BLE001 - rendezvous problems are user-fixable
        raise GeoCamError(f"Could not join the distributed run (torchrun rendezvous): {exc}") from exc
    return True


def ddp_rank_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def ddp_teardown() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _all_sum(t: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


# --------------------------------------------------------------------------- data
@dataclass
class SplitData:
    images: object  # (N, S, S, 3) uint8 (memmap)
    labels: np.ndarray  # (N,) int64
    positions: torch.Tensor  # rows that decoded fine
    skipped: list[tuple[str, str]]


def decode_split(samples, size: int, classes: list[str], *, progress=None, cancel=None) -> SplitData:
    """Decode ``samples`` once into the uint8 cache; unreadable images are skipped (and listed)."""
    from geocam_gui.core.data import cache

    arr = cache.decoded_split(samples, size, classes=classes, progress=progress, cancel=cancel)
    ok = np.asarray(arr.ok, dtype=bool)
    labels = np.asarray(arr.labels, dtype=np.int64)
    errors = list(getattr(arr, "errors", None) or [])
    paths = list(getattr(arr, "paths", None) or [s.path for s in samples])
    skipped = [(str(p), str(r)) for p, r in errors] or [(paths[i], "unreadable") for i in np.flatnonzero(~ok)]
    return SplitData(arr.images, labels, torch.from_numpy(np.flatnonzero(ok).astype(np.int64)), skipped)


@torch.no_grad()
def eval_confusion(model, feeder: BatchFeeder, k: int, batch_size: int, positions: torch.Tensor | None = None,
                   *, amp: bool = False) -> tuple[torch.Tensor, float]:
    """(K x K confusion, summed cross-entropy) of ``model`` on ``positions`` of ``feeder``."""
    conf, loss = eval_counts(model, feeder, k, batch_size, positions, amp=amp)
    return conf.cpu(), float(loss)


def eval_counts(model, feeder: BatchFeeder, k: int, batch_size: int, positions: torch.Tensor | None = None,
                *, amp: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Like ``eval_confusion`` but leaves the counts on the device (for DDP all-reduce); halves
    the batch on CUDA out-of-memory."""
    order = positions if positions is not None else torch.arange(feeder.n)
    while True:
        try:
            return _eval_once(model, feeder, k, batch_size, order, amp)
        except _OOM as exc:
            release_cached_memory(feeder.device)
            if batch_size <= 1:
                raise GeoCamError("CUDA ran out of memory while evaluating even one image at a time; "
                                  "use a smaller image size or the CPU.") from exc
            batch_size //= 2


@torch.no_grad()
def _eval_once(model, feeder, k, batch_size, order, amp):
    was_training = model.training
    model.eval()
    conf = torch.zeros(k, k, dtype=torch.int64, device=feeder.device)
    loss = torch.zeros((), dtype=torch.float64, device=feeder.device)
    try:
        for _pos, idx, staged in feeder.iterate(order, batch_size):
            x, y = feeder.batch(idx, staged)
            if INJECT_OOM:
                _eval_batches[0] += 1
                _maybe_inject_oom(("eval", _eval_batches[0]))
            with _autocast(feeder.device, amp):
                logits = model(x)
            loss += F.cross_entropy(logits.float(), y, reduction="sum").double()
            confusion_update(conf, y, logits.argmax(1))
    finally:
        model.train(was_training)
    return conf, loss


def _autocast(device: torch.device, amp: bool):
    """bf16 autocast when ``amp`` (the caller asked ``bf16_native``), else nothing."""
    if amp:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def warmup_factor(warmup_epochs: float, epoch: int, batch: int, batches: int) -> float:
    """Linear warm-up multiplier of 0-based ``batch`` of 0-based ``epoch`` (``batches`` per epoch):
    (steps done + 1) / warm-up steps, reaching 1 at the end of the warm-up (pure: resume-exact)."""
    steps = warmup_epochs * max(1, batches)
    done = epoch * max(1, batches) + batch
    return 1.0 if warmup_epochs <= 0 or done >= steps else (done + 1) / math.ceil(steps)


def lr_factor(schedule: str, epoch: int, epochs: int) -> float:
    """Learning-rate multiplier of 0-based ``epoch`` (a pure function: resume-exact)."""
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * epoch / max(1, epochs)))
    if schedule == "step":
        return 0.1 ** (epoch // max(1, epochs // 3))
    return 1.0


# --------------------------------------------------------------------------- the loop
class TrainingLoop:
    """One run of a ``Trainer`` (its config, index, output folder, callback and flags)."""

    def __init__(self, trainer):
        self.t = trainer
        self.cfg = trainer.config
        self.rank, self.world = trainer.rank, trainer.world

    # ---------------------------------------------------------------- setup
    def _device(self) -> torch.device:
        if self.world > 1:
            import torch.distributed as dist

            return ddp_device(dist.get_backend(), int(os.environ.get("LOCAL_RANK", "0")))
        return resolve_device(self.cfg.device)

    def _determinism(self, dev: torch.device) -> None:
        if self.cfg.deterministic:
            if gpu_path(dev):
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=dev.type != "cpu")
            torch.backends.cudnn.benchmark = False
        elif gpu_path(dev):
            torch.backends.cudnn.benchmark = True

    def _progress(self, split: str):
        last = [0.0]

        def progress(done=None, total=None, *args, **kwargs):
            now = time.perf_counter()
            if now - last[0] >= 1.0 or (done is not None and done == total):
                last[0] = now
                self.t.log(f"Decoding {split} images: {done}/{total}", split=split, done=done, total=total)

        return progress

    def _load_data(self, classes: list[str]) -> dict[str, SplitData]:
        cfg, index = self.cfg, self.t.index
        data = {}
        if index.bad_files:
            self.t.log(_skipped_text(f"{len(index.bad_files)} files were skipped when the data was indexed",
                                     index.bad_files), skipped=[list(b) for b in index.bad_files[:MAX_LISTED]])
        for split in ("train", "val", "test"):
            samples = index.split(split)
            if not samples:
                data[split] = None
                continue
            # Rank 0 fills the cache first; the others then read it instead of racing to write it.
            if self.rank != 0:
                _barrier(self.world)
            data[split] = decode_split(samples, cfg.image_size, classes, progress=self._progress(split),
                                       cancel=self.t.is_cancelled)
            if self.rank == 0:
                _barrier(self.world)
            if data[split].skipped:
                self.t.log(_skipped_text(f"{len(data[split].skipped)} unreadable {split} images were skipped",
                                         data[split].skipped), split=split, skipped=data[split].skipped[:MAX_LISTED])
        for split in ("train", "val"):
            if data[split] is None or len(data[split].positions) == 0:
                raise BadData(f"The data has no usable {split!r} images; training needs train and val splits.")
        val = data["val"]
        val.positions = val_subset(val.positions, val.labels, cfg.val_limit, cfg.seed)
        present = set(data["train"].labels[data["train"].positions.numpy()].tolist())
        if len(present) < 2:
            raise BadData("The train split holds a single class; a classifier needs at least two.")
        return data

    # ---------------------------------------------------------------- run
    def run(self, started: float):

        cfg, t = self.cfg, self.t
        dev = self._device()
        self._determinism(dev)
        classes = list(t.index.classes)
        k = len(classes)
        data = self._load_data(classes)
        fingerprint = t.index.fingerprint()
        run_dir = t.run_dir
        if self.rank == 0:
            run_dir.mkdir(parents=True, exist_ok=True)
            t.index.save(t.out_dir / "index")

        torch.manual_seed(cfg.seed)
        net = build_model(cfg.model, k, weights=cfg.weights, pretrained=cfg.pretrained).to(dev)
        if cfg.channels_last:
            net = net.to(memory_format=torch.channels_last)
        opt = make_optimizer(cfg, [p for p in net.parameters() if p.requires_grad], dev)

        start_epoch, history, best = 0, [], {"epoch": None, "val_acc": -1.0, "val_loss": math.inf}
        state = load_resume(run_dir) if t.resume_run else None
        if state is not None:
            start_epoch, history, best = self._restore(state, run_dir, net, opt, fingerprint)
            t.log(f"Resuming {cfg.model} after epoch {start_epoch} of {cfg.epochs}.", epoch=start_epoch)
        elif t.resume_run:
            t.log(f"Nothing to resume in {run_dir}; starting {cfg.model} from scratch.")
        if self.rank == 0:
            _rewrite_jsonl(run_dir / "metrics.jsonl", history)

        model = net
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            model = DistributedDataParallel(net, device_ids=[dev.index] if dev.type == "cuda" else None)

        train, val = data["train"], data["val"]
        train_labels = torch.from_numpy(train.labels[train.positions.numpy()])
        counts = torch.bincount(train_labels, minlength=k).double()
        class_w = None
        sample_w = None
        if cfg.balance == "loss":
            class_w = (counts.sum() / (k * counts.clamp(min=1))).float().to(dev)
        elif cfg.balance == "sample":
            sample_w = self._sample_weights(train, counts, train_labels)
        feeders = {s: BatchFeeder(d.images, d.labels, dev, channels_last=cfg.channels_last)
                   for s, d in data.items() if d is not None}
        amp = cfg.amp and bf16_native(dev)
        self.batch_size = cfg.batch_size
        n_local = len(epoch_order(len(train.positions), seed=cfg.seed, epoch=0, rank=self.rank, world=self.world))
        t.emit(ev.Start(model=cfg.model, config=cfg.to_dict(), device=describe_device(dev), classes=list(classes),
                        n_train=len(train.positions), n_val=len(val.positions),
                        n_test=len(data["test"].positions) if data["test"] is not None else 0,
                        epochs=cfg.epochs, start_epoch=start_epoch, world=self.world,
                        batches=self._n_batches(n_local), run_dir=str(run_dir)))
        self.train_time = 0.0
        self.images_done = 0
        per_epoch = min(n_local, cfg.max_batches_per_epoch * cfg.batch_size) if cfg.max_batches_per_epoch else n_local
        self.remaining_images = max(0, cfg.epochs - start_epoch) * per_epoch

        self.writer = StateWriter(run_dir, dev) if self.rank == 0 else None
        try:
            return self._epochs(start_epoch, model, net, opt, feeders, data, classes, fingerprint, history, best,
                                sample_w, class_w, amp, started)
        except BaseException:
            if self.writer is not None:
                self.writer.abandon()
            raise

    def _flush(self) -> None:
        """Emit the checkpoint events of finished background saves (``wait``: after flushing)."""
        writer = getattr(self, "writer", None)  # also called from the child's control thread
        if writer is not None:
            for event in writer.drain():
                self.t.emit(ev.Checkpoint(event["kind"], event["path"], event["epoch"]))

    def _close_writer(self) -> None:
        if self.writer is not None:
            self.writer.wait()
            self._flush()

    def _epochs(self, start_epoch, model, net, opt, feeders, data, classes, fingerprint, history, best,
                sample_w, class_w, amp, started):
        cfg, t, run_dir, k = self.cfg, self.t, self.t.run_dir, len(classes)
        train, val = data["train"], data["val"]
        last_path = run_dir / "last.json" if (run_dir / "last.json").is_file() else None
        for epoch in range(start_epoch, cfg.epochs):
            rec = self._train_epoch(epoch, model, net, opt, feeders["train"], train, sample_w, class_w, amp)
            if rec is None:
                self._close_writer()
                last_path = _existing(run_dir / "last.json")
                t.emit(ev.Cancelled(f"Training was cancelled during epoch {epoch + 1}.", epoch=epoch + 1))
                return TrainResult("cancelled", cfg.model, run_dir, _existing(run_dir / "best.json"), last_path,
                                   best["epoch"], epoch, history, None, time.perf_counter() - started)
            val_conf, val_loss = eval_counts(net, feeders["val"], k, 2 * self.batch_size,
                                             val.positions[self.rank::self.world], amp=amp)
            val_conf, val_loss = _all_sum(val_conf, self.world), _all_sum(val_loss, self.world)
            val_sum = summarize(val_conf, classes, loss_sum=float(val_loss))
            rec.update(val_loss=val_sum["loss"], val_acc=val_sum["accuracy"])
            rec["seconds"] = round(time.perf_counter() - rec.pop("_t0") - rec.pop("_paused"), 3)
            if not math.isfinite(rec["val_loss"]):
                raise GeoCamError(f"The validation loss became NaN/inf at epoch {epoch + 1}; lower the learning rate.")
            improved = (rec["val_acc"], -rec["val_loss"]) > (best["val_acc"], -best["val_loss"])
            if improved:
                best = {"epoch": epoch + 1, "val_acc": rec["val_acc"], "val_loss": rec["val_loss"]}
            history.append(rec)
            if self.rank == 0:
                meta = self._meta(classes, fingerprint, epoch + 1, {"train": {"loss": rec["train_loss"],
                                  "accuracy": rec["train_acc"]}, "val": val_sum}, best)
                lines = [(run_dir / "metrics.jsonl", rec)] + ([(t.metrics_jsonl, rec)] if t.metrics_jsonl else [])
                self.writer.save(net, opt, EpochSave(epoch + 1, meta, improved, cfg.to_dict(), list(history),
                                                     dict(best), fingerprint, lines))
                last_path = run_dir / "last.json"
                self._flush()
            _barrier(self.world)
            eta = self.train_time / max(1, self.images_done) * self.remaining_images
            t.emit(ev.Epoch(**rec, epochs=cfg.epochs, improved=improved, best_epoch=best["epoch"],
                            best_val_acc=best["val_acc"], eta_s=round(eta, 1)))

        self._close_writer()
        test = self._test(net, feeders, data, classes, fingerprint, best)
        best_path = _existing(run_dir / "best.json")
        if best_path is not None and self.rank == 0 and cfg.save_dtype == "float16":
            path = save_half_copy(run_dir / "best", run_dir / "best_float16")
            t.emit(ev.Checkpoint("best_float16", str(path), best["epoch"]))
        t.emit(ev.Finished(model=cfg.model, best_checkpoint=str(best_path) if best_path else None,
                           best_epoch=best["epoch"], best_val_acc=best["val_acc"], test=test,
                           seconds=round(time.perf_counter() - started, 2)))
        return TrainResult("finished", cfg.model, run_dir, best_path, last_path, best["epoch"], cfg.epochs,
                           history, test, time.perf_counter() - started)

    def _sample_weights(self, train: SplitData, counts: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Per-image sampling weights: the index's own (``balance="weighted"`` when indexing) if it
        has any, else inverse class frequency (each class drawn equally often)."""
        own = getattr(self.t.index, "sample_weights", None)
        if own is not None:
            w = torch.as_tensor(np.asarray(own("train"), dtype=np.float64))
            if len(w) == len(train.labels) and not torch.all(w == 1.0):
                return w[train.positions]
        return (1.0 / counts.clamp(min=1))[labels]

    def _n_batches(self, n: int) -> int:
        b = n // self.batch_size + (1 if n % self.batch_size >= 2 else 0)
        return min(b, self.cfg.max_batches_per_epoch) if self.cfg.max_batches_per_epoch else b

    def _restore(self, state: dict, state_path: Path, net, opt, fingerprint: str):
        try:
            saved = TrainConfig.from_dict(json.loads(state["config"]))
            check_resumable(saved, self.cfg)
            # a state written before root-relative fingerprints (2026-12-02) carries the legacy one
            if state["fingerprint"] != fingerprint and state["fingerprint"] != self.t.index.legacy_fingerprint():
                raise CheckpointError("Cannot resume: the data differ from the images this run was trained on "
                                      "(index fingerprint changed); train into a new --out folder.")
            if self.cfg.model == "shallow" and is_legacy_shallow(state["model"]):
                raise CheckpointError("Cannot resume: this run's shallow net has the layout from before batch norm "
                                      "(2026-12-02); train it into a new --out folder.")
            net.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            match_param_layout(opt)
            return int(state["epoch"]), json.loads(state["history"]), json.loads(state["best"])
        except (KeyError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"{state_path} is not a usable training state: {exc}") from exc

    def _meta(self, classes, fingerprint, epoch, metrics, best) -> dict:
        cfg = self.cfg
        return ckpt.base_meta(
            cfg.model, classes, cfg.image_size, epoch=epoch, metrics=metrics, hyper_parameters=cfg.to_dict(),
            index_fingerprint=fingerprint, split_file=str((self.t.out_dir / "index" / "index.csv").resolve()),
            best_epoch=best["epoch"], world_size=self.world)

    # ---------------------------------------------------------------- one epoch
    def _train_epoch(self, epoch, model, net, opt, feeder, train: SplitData, sample_w, class_w, amp):
        cfg, t = self.cfg, self.t
        t0 = time.perf_counter()
        paused = 0.0
        epoch_lr = cfg.lr * lr_factor(cfg.schedule, epoch, cfg.epochs)
        for group in opt.param_groups:
            group["lr"] = epoch_lr
        # Dropout (global RNG) and augmentation (own generator) depend on (seed, epoch, rank) only.
        torch.manual_seed(cfg.seed * 1_000_003 + epoch * 7_919 + self.rank)
        aug_gen = epoch_generator(cfg.seed, epoch, stream=2 + 10 * self.rank)
        local = epoch_order(len(train.positions), seed=cfg.seed, epoch=epoch, rank=self.rank, world=self.world,
                            weights=sample_w)
        order = train.positions[local]
        loss_sum = torch.zeros((), dtype=torch.float64, device=feeder.device)
        correct = torch.zeros((), dtype=torch.int64, device=feeder.device)
        seen, batch_no, pos, last_emit = 0, 0, 0, 0.0
        total = self._n_batches(len(order))
        model.train()
        check_each_batch = not gpu_path(feeder.device)  # a host sync is free off the GPU
        slow_s, slow_from = slow_step_hook()
        slow_s = slow_s if slow_s and epoch + 1 >= slow_from else 0.0
        governor = t.thread_governor if feeder.device.type == "cpu" and not cfg.deterministic else None
        while True:
            try:
                for p, idx, staged in feeder.iterate(order, self.batch_size, start=pos, workers=cfg.workers,
                                                     min_size=2):
                    paused += t.wait_if_paused()
                    if t.is_cancelled():
                        # Said at once: the GUI waits for this before it stops the process harder.
                        t.log(f"Cancelling during epoch {epoch + 1}; the last complete epoch's checkpoint is kept.",
                              cancelling=True, epoch=epoch + 1)
                        return None
                    if cfg.max_batches_per_epoch and batch_no >= cfg.max_batches_per_epoch:
                        break
                    if governor is not None and (change := governor.poll()):
                        t.log(change, threads=governor.threads)
                    tb = time.perf_counter()
                    if cfg.warmup_epochs and epoch < cfg.warmup_epochs:
                        for group in opt.param_groups:
                            group["lr"] = epoch_lr * warmup_factor(cfg.warmup_epochs, epoch, batch_no, total)
                    x, y = feeder.batch(idx, staged)
                    x = augment(x, cfg.augment, aug_gen)
                    if feeder.channels_last:  # grid_sample returns NCHW; keep the model's layout
                        x = x.contiguous(memory_format=torch.channels_last)
                    if INJECT_OOM:
                        _maybe_inject_oom((epoch + 1, batch_no + 1))
                    with _autocast(feeder.device, amp):
                        logits = model(x)
                        loss = F.cross_entropy(logits.float(), y, weight=class_w)
                    if slow_s:
                        t.log(f"Test hook: this step sleeps {slow_s:g} s.", test_slow_step=True, epoch=epoch + 1)
                        time.sleep(slow_s)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    if check_each_batch and not math.isfinite(loss.item()):
                        raise _nan_error(epoch, batch_no)
                    opt.step()
                    with torch.no_grad():
                        loss_sum += loss.detach().double() * len(idx)
                        correct += (logits.argmax(1) == y).sum()
                    n = len(idx)
                    seen += n
                    batch_no += 1
                    pos = p + n
                    now = time.perf_counter()
                    self.train_time += now - tb
                    self.images_done += n
                    self.remaining_images -= n
                    if now - last_emit >= _EVENT_INTERVAL_S or batch_no == total:
                        last_emit = now
                        self._flush()
                        mean_loss = float(loss_sum) / seen
                        if not math.isfinite(mean_loss):
                            raise _nan_error(epoch, batch_no)
                        rate = self.images_done / max(self.train_time, 1e-9)
                        t.emit(ev.Batch(epoch=epoch + 1, epochs=cfg.epochs, batch=batch_no, batches=total,
                                        loss=mean_loss, acc=float(correct) / seen, images_per_s=round(rate, 1),
                                        eta_s=round(self.remaining_images / max(rate, 1e-9), 1),
                                        lr=opt.param_groups[0]["lr"]))
                break
            except _OOM as exc:
                opt.zero_grad(set_to_none=True)
                x = logits = loss = None  # noqa: F841 - release the failed batch
                release_cached_memory(feeder.device)
                if self.world > 1 or self.batch_size <= 2:
                    raise GeoCamError(
                        f"CUDA ran out of memory at batch size {self.batch_size}; use a smaller --batch-size "
                        "or --image-size, or train on the CPU.") from exc
                self.batch_size //= 2
                total = batch_no + self._n_batches(len(order) - pos)
                t.log(f"CUDA ran out of memory; retrying at batch size {self.batch_size}.",
                      batch_size=self.batch_size)
        stats = _all_sum(torch.stack([loss_sum, correct.double(), torch.tensor(float(seen), dtype=torch.float64,
                                                                               device=loss_sum.device)]), self.world)
        loss_total, correct_total, seen_total = (float(v) for v in stats.cpu())
        if not math.isfinite(loss_total):
            raise _nan_error(epoch, batch_no)
        elapsed = time.perf_counter() - t0 - paused
        return {"model": cfg.model, "epoch": epoch + 1, "train_loss": loss_total / max(seen_total, 1),
                "train_acc": correct_total / max(seen_total, 1), "images_per_s": round(seen_total / max(elapsed, 1e-9), 1),
                "lr": opt.param_groups[0]["lr"], "batch_size": self.batch_size, "_t0": t0, "_paused": paused}

    # ---------------------------------------------------------------- test
    def _test(self, net, feeders, data, classes, fingerprint, best) -> dict | None:
        """Test metrics of the best checkpoint, in float32 on every device: they are reported
        numbers, and must equal what ``evaluate`` and the browser's predictions count (bf16 would
        flip near-ties; validation may use it, it only picks the epoch)."""
        t, run_dir = self.t, self.t.run_dir
        best_st = run_dir / "best.safetensors"
        if self.world > 1:
            _barrier(self.world)
        if not best_st.is_file():
            return None
        net.load_state_dict(ckpt.load_state_dict_file(best_st))
        if data["test"] is None or len(data["test"].positions) == 0:
            t.log("The data has no test split; no test metrics were computed.")
            return None
        conf, loss = eval_counts(net, feeders["test"], len(classes), 2 * self.batch_size,
                                 data["test"].positions[self.rank::self.world], amp=False)
        test = summarize(_all_sum(conf, self.world), classes, loss_sum=float(_all_sum(loss, self.world)))
        if self.rank == 0:
            meta = {**ckpt.read_meta(best_st), "kind": "best"}  # during the run best shares last's file
            meta["metrics"] = {**meta.get("metrics", {}), "test": test}
            path = ckpt.save_checkpoint(run_dir / "best", net, meta)
            t.emit(ev.Checkpoint("best", str(path), best["epoch"], test=True))
        _barrier(self.world)
        return test


MAX_LISTED = 200  # skipped files named in a message; the log file gets them all


def _skipped_text(head: str, skipped) -> str:
    """``head``: then one line per skipped file with its reason (all of them go to the log file)."""
    import logging

    lines = [f"{p}: {r}" for p, r in skipped]
    logging.getLogger("geocam_gui.train").info("%s:\n  %s", head, "\n  ".join(lines))
    more = f"\n  ... and {len(lines) - MAX_LISTED} more (all in the log file)" if len(lines) > MAX_LISTED else ""
    return f"{head}:\n  " + "\n  ".join(lines[:MAX_LISTED]) + more


def _nan_error(epoch: int, batch: int) -> GeoCamError:
    return GeoCamError(f"The training loss became NaN/inf at epoch {epoch + 1}, batch {batch + 1}; "
                       "lower the learning rate (the last complete epoch's checkpoints are kept).")


def _existing(path: Path) -> Path | None:
    return path if path.is_file() else None


def _rewrite_jsonl(path: Path, history: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in history)
    atomic_write(path, text)
