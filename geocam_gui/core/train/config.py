"""Training configuration: ``TrainConfig``, the per-model defaults shared by the GUI and the CLI,
the demo's first-run recipes, and the resume compatibility rule."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from geocam_gui.core.device import gpu_path, resolve_device
from geocam_gui.core.errors import BadArgument, CheckpointError
from geocam_gui.core.models import MIN_INPUT, MODEL_NAMES, check_pretrained
from geocam_gui.core.train.loader import AugmentConfig

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step", "none")
BALANCE = ("none", "loss", "sample")
#: Fields that may differ between a run and its ``--resume`` (the rest must match).
RESUMABLE_CHANGES = ("epochs", "device", "workers", "max_batches_per_epoch", "save_dtype")
SAVE_DTYPES = ("float32", "float16")


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved in every checkpoint's metadata)."""

    model: str = "shallow"
    epochs: int = 8
    batch_size: int = 32
    lr: float = 1e-3
    image_size: int = 64
    optimizer: str = "adamw"  # "sgd" (with momentum) | "adamw"
    schedule: str = "cosine"  # per-epoch: "cosine" | "step" (x0.1 every third of the run) | "none"
    # linear warm-up over the first epochs, step by step from lr/steps to the schedule's lr (0: none;
    # longer than the run: the whole run ramps up)
    warmup_epochs: float = 0.0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    device: str = "auto"
    seed: int = 0
    deterministic: bool = False
    workers: int = 0  # background threads assembling batches (host-resident data only)
    # "none" | "loss" (class-weighted loss) | "sample" (draw with the index's sample weights, or
    # inverse class frequency when it has none)
    balance: str = "none"
    weight_decay: float = 1e-4
    momentum: float = 0.9
    weights: str | None = None  # optional local ImageNet state dict (head re-made)
    pretrained: str | None = None  # "imagenet": torchvision's weights API (vgg11, resnet18)
    max_batches_per_epoch: int | None = None
    # validate each epoch on a fixed, class-stratified sample of at most this many val images
    # (None: the whole split; the test split is always whole)
    val_limit: int | None = None
    amp: bool = True  # bf16 autocast where the device computes bf16 natively (device.bf16_native)
    channels_last: bool = True  # NHWC weights and batches (faster convolutions on CPUs and GPUs)
    # "float16" also writes best_float16.* (half the size, for viewing and sharing) after the run
    save_dtype: str = "float32"

    def validate(self) -> TrainConfig:
        """Raise ``BadArgument`` with one sentence for the first inconsistent field."""
        if self.model not in MODEL_NAMES:
            raise BadArgument(f"Unknown model {self.model!r}: choose one of {', '.join(MODEL_NAMES)}.")
        checks = [
            (self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}."),
            (self.batch_size >= 2, f"batch size must be at least 2, got {self.batch_size}."),
            (self.lr > 0 and math.isfinite(self.lr), f"learning rate must be a positive number, got {self.lr}."),
            (isinstance(self.warmup_epochs, (int, float)) and 0 <= self.warmup_epochs <= 1000,
             f"warm-up must be between 0 and 1000 epochs, got {self.warmup_epochs!r}."),
            (self.image_size >= MIN_INPUT[self.model],
             f"image size must be at least {MIN_INPUT[self.model]} px for {self.model}, got {self.image_size}."),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}."),
            (self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}."),
            (self.balance in BALANCE, f"balance must be one of {', '.join(BALANCE)}, got {self.balance!r}."),
            (self.workers >= 0, f"workers must be 0 or more, got {self.workers}."),
            (self.weight_decay >= 0, f"weight decay must be 0 or more, got {self.weight_decay}."),
            (0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}."),
            (0 < self.augment.scale[0] <= self.augment.scale[1] <= 1,
             f"crop scale must satisfy 0 < min <= max <= 1, got {tuple(self.augment.scale)}."),
            (0 < self.augment.ratio[0] <= self.augment.ratio[1], f"crop ratio range is invalid: {tuple(self.augment.ratio)}."),
            (self.save_dtype in SAVE_DTYPES, f"save dtype must be one of {', '.join(SAVE_DTYPES)}, got {self.save_dtype!r}."),
            (self.max_batches_per_epoch is None or self.max_batches_per_epoch >= 1,
             "max batches per epoch must be at least 1."),
            (self.val_limit is None or (isinstance(self.val_limit, int) and self.val_limit >= 2),
             f"the validation limit must be at least 2 images, got {self.val_limit!r}."),
        ]
        for ok, message in checks:
            if not ok:
                raise BadArgument(message[0].upper() + message[1:])
        check_pretrained(self.model, self.pretrained)
        if self.pretrained is not None and self.weights is not None:
            raise BadArgument("Give either --weights FILE or --pretrained imagenet, not both.")
        if self.weights is not None and not Path(self.weights).is_file():
            raise BadArgument(f"Pretrained weights file not found: {self.weights}.")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """Inverse of ``to_dict``; unknown keys are ignored (older/newer metadata)."""
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in data.items() if k in known}
        aug = kw.get("augment")
        if isinstance(aug, dict):
            kw["augment"] = AugmentConfig(
                crop=bool(aug.get("crop", True)), scale=tuple(aug.get("scale", (0.6, 1.0))),
                ratio=tuple(aug.get("ratio", (3 / 4, 4 / 3))), hflip=bool(aug.get("hflip", True)))
        return cls(**kw)


def default_config(model: str = "shallow", device: str = "auto") -> TrainConfig:
    """Defaults that fit the device: 64 px / batch 32 on a CPU (batch 16 for the shallow net, 96 px
    for ResNet18), 224 px / batch 128 on a GPU.

    AdamW at 1e-3 trains the shallow net and ResNet18 from scratch reliably; VGG11 (no batch
    norm) stalls at chance at 1e-3 and learns slowly at 1e-4; 3e-4 after a one-epoch linear
    warm-up leaves the biased sky's plateau sooner (demo set, 64 px, 8 epochs: test 0.751, 0.704
    without the warm-up, 0.549 at 1e-4; benchmarks/RESULTS.md).
    """
    dev = resolve_device(device)
    gpu = gpu_path(dev) or dev.type == "mps"
    cfg = TrainConfig(model=model, device=device, image_size=224 if gpu else 64,
                      batch_size=128 if gpu else 32, epochs=10)
    if model == "shallow" and not gpu:
        # Measured on the demo set at 64 px: batch 16 generalises better than 32 for the same
        # images seen (test 0.91 vs 0.86 after 8 epochs; with batch norm 0.950 vs 0.938 on the
        # CI-sized set); 40 epochs: test 0.979 / 0.973 / 0.985 (training seeds 0-2) on the default
        # set with batch norm (the layout before it: 0.933; benchmarks/RESULTS.md), ~7 minutes on
        # one core in bf16.
        cfg.batch_size, cfg.epochs = 16, 40
    if model == "resnet18" and not gpu:
        # Its stem quarters the input at once, so at 64 px its last stage works on 2 x 2 cells.
        # Demo set drawn at 64 px, 30 epochs: test 0.957 / 0.959 at 64 px (training seeds 0 / 1;
        # batch 16: 0.957), 0.974 / 0.962 / 0.955 at 96 px (seeds 0-2), whose Grad-CAM map is 3 x 3
        # (benchmarks/RESULTS.md, "ResNet18 at 96 px"); ~22 minutes on one core in bf16 (13 at 64).
        cfg.epochs, cfg.image_size = 30, 96
    if model == "vgg11":
        cfg.lr, cfg.warmup_epochs = 3e-4, 1.0
        if not gpu:  # demo set at 64 px: test 0.751 after 8 epochs, 0.918 after 20 (0.928 in bf16,
            cfg.epochs = 20  # ~49 minutes on one core)
    return cfg.validate()


def config_for(model: str, device: str = "auto", overrides: dict | None = None) -> TrainConfig:
    """The one rule for per-model defaults and user overrides, shared by the GUI and the CLI.

    Start from ``default_config(model, device)``; every field in ``overrides`` (what the user
    set: a CLI option given, a panel field changed) replaces the default for every model
    alike; fields not in ``overrides`` keep this model's own default (so VGG11 keeps its 3e-4
    unless a learning rate is given). ``overrides["augment"]`` may be an ``AugmentConfig`` or
    ``False`` (no crop, no flip). ``None`` values count as not given. Unknown keys raise
    ``BadArgument``; the result is validated.
    """
    return apply_overrides(default_config(model, device), overrides)


def apply_overrides(cfg: TrainConfig, overrides: dict | None) -> TrainConfig:
    """``cfg`` with the given ``overrides`` set (the rule of ``config_for``; also used on the
    saved configuration of a run being resumed)."""
    known = {f.name for f in fields(TrainConfig)} - {"model"}
    for key, value in (overrides or {}).items():
        if key not in known:
            raise BadArgument(f"Unknown training setting {key!r}.")
        if value is None:
            continue
        if key == "augment" and value is False:
            value = AugmentConfig(crop=False, hflip=False)
        setattr(cfg, key, value)
    return cfg.validate()


#: Short CPU runs for ``geocam-gui --demo``. The demo's training split holds 2,880 distinct scenes,
#: so each "epoch" of the first run is a capped pass (``max_batches_per_epoch``) over a fresh
#: shuffle: more scenes for the same CPU minutes than repeating a small set. Each epoch validates
#: on a fixed third of the val split (320 of 960 images, each city in its share). Sized to the
#: 5-minute budget on 2 cores (measured: 279-348 s in all, first pane at 34-44 s, on different
#: days; benchmarks/RESULTS.md): the shallow net gets 18 capped epochs, ~35,000 image
#: presentations (test 0.966 with batch norm; 0.852 before it); ResNet18 8 x 22 batches at 128 px
#: (test 0.822), so that its 1/32 Grad-CAM layer still has a 4 x 4 map; VGG11 4 x 22 batches,
#: in which it learns the biased sky alone (test 0.501; it needs ~720 steps, 8 full epochs, to
#: leave the sky's plateau: about 10 minutes more on 2 cores; train it with `geocam train`, or on
#: a GPU).
DEMO_CPU_RECIPES = {
    "shallow": {"epochs": 18, "image_size": 64, "batch_size": 16, "max_batches_per_epoch": 120, "val_limit": 320},
    "vgg11": {"epochs": 4, "image_size": 64, "batch_size": 32, "max_batches_per_epoch": 22, "val_limit": 320},
    "resnet18": {"epochs": 8, "image_size": 128, "batch_size": 32, "max_batches_per_epoch": 22, "val_limit": 320},
}

#: The order the first run trains in: VGG11 last, because on a CPU its short run learns the biased
#: sky alone (above), so the two panes that show something fill first (ResNet18's sooner by VGG11's
#: run: 100 s on 2 cores with bf16, 260 s on an AVX2 CPU in float32).
DEMO_ORDER = ("shallow", "resnet18", "vgg11")


def demo_config(model: str, device: str = "auto") -> TrainConfig:
    """The training the GUI runs when the demo set has no checkpoints yet: the CPU recipes
    above, or the device defaults (224 px) with 10 epochs on a GPU."""
    cfg = default_config(model, device)
    dev = resolve_device(device)
    if dev.type == "cpu" and not gpu_path(dev):
        for key, value in DEMO_CPU_RECIPES[model].items():
            setattr(cfg, key, value)
    return cfg.validate()


def resume_config(out_dir: str | Path, model: str) -> TrainConfig | None:
    """The configuration saved by an earlier run of ``model`` in ``out_dir`` (None if none)."""
    from geocam_gui.core.train.saver import resume_config_dict

    saved = resume_config_dict(Path(out_dir) / model)
    if saved is None:
        return None
    try:  # the state is data from disk: a wrong type is a sentence, not a traceback
        return TrainConfig.from_dict(saved)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{Path(out_dir) / model} holds no usable training configuration "
                              f"({type(exc).__name__}: {str(exc)[:120]}).") from None


#: Files of a trained run of one model (``<out>/<model>/``) that training from scratch replaces.
RUN_FILES = ("best.safetensors", "best.json", "last.safetensors", "last.json", "last_state.pt", "metrics.jsonl")


def existing_run(out_dir: str | Path, model: str) -> list[str]:
    """The names of ``RUN_FILES`` (and optimiser states) already in ``out_dir/model`` (empty:
    nothing would be replaced)."""
    folder = Path(out_dir) / model
    found = [name for name in RUN_FILES if (folder / name).exists()]
    if folder.is_dir():
        found += sorted(p.name for p in folder.glob("last_optim-*.safetensors"))
    return found


def check_resumable(saved: TrainConfig, wanted: TrainConfig) -> None:
    """Raise ``CheckpointError`` naming the first setting that differs (except ``RESUMABLE_CHANGES``)."""
    a, b = saved.to_dict(), wanted.to_dict()
    for key in a:
        if key in RESUMABLE_CHANGES:
            continue
        if json.dumps(a[key], sort_keys=True) != json.dumps(b.get(key), sort_keys=True):
            raise CheckpointError(
                f"Cannot resume: the run was trained with {key}={a[key]!r}, not {b.get(key)!r}; "
                "drop that option or train into a new --out folder."
            )
