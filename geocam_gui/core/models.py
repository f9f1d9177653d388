"""The three architectures of the paper, and where Grad-CAM looks in each.

* ``shallow``: the paper's "four convolutional layers and two fully connected layers, with max
  pooling and ReLU". Each stage is conv 3x3 (padding 1) -> batch norm -> ReLU -> max-pool 2x2, with
  widths 32-64-128-256; then a global average pool, FC 256 -> 256 -> ReLU -> dropout 0.5 -> FC 256
  -> classes. Batch norm and the global pool are not in the paper's description: they are what
  made the net learn the demo's evidence from few scenes (CLI defaults, test accuracy without /
  with them: 0.71 / 0.93-0.96 on CI-sized sets, 0.933 / 0.979 on the default set;
  benchmarks/RESULTS.md). Checkpoints of the earlier layout (no batch norm, adaptive average pool
  to 7x7, FC 12544 -> 256) still load (``legacy=True``).
* ``vgg11`` and ``resnet18``: torchvision's constructors with ``num_classes`` set.

Grad-CAM target layers (``target_layer``): the output of the last convolutional stage, at the
highest resolution that still sees the whole network's convolutional features:

* shallow: the ReLU after the fourth convolution (before the last max-pool): 1/8 of the input.
* vgg11: ``features[-2]``, the ReLU after the last convolution, before the last max-pool
  (1/16 of the input; the layer grad-cam's documentation uses).
* resnet18: ``layer4[-1]``, the last residual block (1/32 of the input), which feeds global
  average pooling and the linear head (so Grad-CAM weights are the FC rows / (h*w)).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from geocam_gui.core.errors import BadArgument, CheckpointError

MODEL_NAMES: tuple[str, ...] = ("shallow", "vgg11", "resnet18")
MODEL_LABELS = {"shallow": "Shallow CNN", "vgg11": "VGG11", "resnet18": "ResNet18"}
MIN_INPUT = {"shallow": 32, "vgg11": 32, "resnet18": 32}
#: The shallow net's four convolutions' widths and its hidden FC width (``ShallowCNN``; also what
#: ``core.train.cost`` counts).
SHALLOW_WIDTHS, SHALLOW_HIDDEN = (32, 64, 128, 256), 256

# ImageNet statistics: the convention of torchvision's weights, used for all three models.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class ShallowCNN(nn.Module):
    """Four conv stages (conv3x3-BN-ReLU-maxpool2) and two fully connected layers.

    ``legacy=True``: the layout before 2026-12-02 (conv3x3-ReLU-maxpool2, adaptive average pool
    to 7x7, FC 12544 -> 256), so that checkpoints trained with it still load."""

    def __init__(self, num_classes: int = 2, widths=SHALLOW_WIDTHS, hidden: int = SHALLOW_HIDDEN, *,
                 legacy: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for w in widths:
            layers.append(nn.Conv2d(c_in, w, 3, padding=1, bias=legacy))
            if not legacy:
                layers.append(nn.BatchNorm2d(w))
            layers += [nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c_in = w
        self.features = nn.Sequential(*layers)
        pool = 7 if legacy else 1
        self.avgpool = nn.AdaptiveAvgPool2d((pool, pool))
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c_in * pool * pool, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.avgpool(self.features(x)))


def is_legacy_shallow(state) -> bool:
    """Whether a shallow net's state dict (or the set of its tensor names) has the layout before
    batch norm (``ShallowCNN(legacy=True)``)."""
    return "features.0.weight" in state and "features.1.weight" not in state


def build_model(name: str, num_classes: int, *, weights: str | Path | None = None,
                pretrained: str | None = None, legacy: bool = False) -> nn.Module:
    """A fresh model. ``weights``: optional local torchvision ImageNet state dict;
    ``pretrained="imagenet"``: torchvision's ImageNet weights through its weights API (from
    torch's hub cache, downloaded once when missing: :func:`imagenet_state_dict`). Either way the
    last layer is re-made for ``num_classes``. Without them nothing is downloaded. ``legacy``: the
    shallow net's earlier layout (see ``ShallowCNN``), for loading its old checkpoints."""
    if name not in MODEL_NAMES:
        raise BadArgument(f"Unknown model {name!r}: choose one of {', '.join(MODEL_NAMES)}.")
    if num_classes < 2:
        raise BadArgument(f"A classifier needs at least 2 classes, got {num_classes}.")
    if name == "shallow":
        model: nn.Module = ShallowCNN(num_classes, legacy=legacy)
    else:
        import torchvision

        model = getattr(torchvision.models, name)(weights=None, num_classes=num_classes)
    if weights is not None and pretrained is not None:
        raise BadArgument("Give either a weights file or --pretrained imagenet, not both.")
    if pretrained is not None:
        load_state(model, imagenet_state_dict(name, pretrained), f"torchvision's {MODEL_LABELS[name]} ImageNet weights")
    if weights is not None:
        load_pretrained(model, weights)
    return model


PRETRAINED = ("imagenet",)
#: torchvision's weights enum entry per architecture (see torchvision.models.*_Weights)
IMAGENET_WEIGHTS = {"vgg11": ("VGG11_Weights", "IMAGENET1K_V1"), "resnet18": ("ResNet18_Weights", "IMAGENET1K_V1")}


def check_pretrained(name: str, pretrained: str | None) -> None:
    """``BadArgument`` when ``pretrained`` is not offered for architecture ``name``."""
    if pretrained is None:
        return
    if pretrained not in PRETRAINED:
        raise BadArgument(f"Unknown pretrained weights {pretrained!r}: the choice is imagenet.")
    if name not in IMAGENET_WEIGHTS:
        raise BadArgument(f"The {MODEL_LABELS.get(name, name)} has no ImageNet weights (it is the paper's own "
                          "small net): train it from scratch, or choose VGG11 or ResNet18.")


def imagenet_weights(name: str):
    """torchvision's weights enum member for ``name`` (``VGG11_Weights.IMAGENET1K_V1`` ...)."""
    check_pretrained(name, "imagenet")
    import torchvision.models as tvm

    enum, member = IMAGENET_WEIGHTS[name]
    return getattr(getattr(tvm, enum), member)


def imagenet_cache_path(name: str) -> Path:
    """Where torch's hub cache keeps (or will keep) ``name``'s ImageNet weights."""
    from urllib.parse import urlparse

    url = imagenet_weights(name).url
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name


def imagenet_state_dict(name: str, pretrained: str = "imagenet", *, progress: bool = True) -> dict:
    """The ImageNet state dict of ``name`` via torchvision's weights API: read from torch's hub
    cache (``$TORCH_HOME/hub/checkpoints``), or downloaded there once with its SHA-256 prefix
    checked and a progress bar on stderr. Offline or a bad download -> ``CheckpointError``."""
    check_pretrained(name, pretrained)
    import logging

    weights = imagenet_weights(name)
    cached = imagenet_cache_path(name)
    if not cached.is_file():
        logging.getLogger(__name__).info("Downloading %s ImageNet weights from %s into %s (once)",
                                         MODEL_LABELS[name], weights.url, cached.parent)
    try:
        state = weights.get_state_dict(progress=progress and not cached.is_file(), check_hash=True)
    except OSError as exc:  # URLError, timeouts, no route: offline
        raise CheckpointError(
            f"Could not download the {MODEL_LABELS[name]} ImageNet weights ({exc}); this machine seems to be "
            f"offline. Download {weights.url} elsewhere into {cached}, or give a local file with --weights FILE."
        ) from exc
    except RuntimeError as exc:  # torch.hub: "invalid hash value", a damaged cached file
        raise CheckpointError(f"The {MODEL_LABELS[name]} ImageNet weights could not be used ({exc}); "
                              f"delete {cached} and try again.") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{cached.name} does not hold a state dict.")
    return state


def _head_keys(model: nn.Module) -> tuple[str, ...]:
    if hasattr(model, "fc"):
        return ("fc.weight", "fc.bias")
    last = [k for k, _ in model.named_parameters() if k.startswith("classifier.")][-2:]
    return tuple(last)


def load_pretrained(model: nn.Module, path: str | Path) -> list[str]:
    """Load a local state dict (safetensors, or a plain tensor pickle read with
    ``weights_only=True``) except the classification head. Returns the keys left at init."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Pretrained weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure here means "not a weights file"
        raise CheckpointError(f"{path.name} is not a loadable weights file: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path.name} does not hold a state dict.")
    return load_state(model, state, path.name)


def load_state(model: nn.Module, state: dict, what: str) -> list[str]:
    """Load the tensors of ``state`` that fit ``model``, except its classification head;
    ``CheckpointError`` when fewer than half of the body's tensors fit. Returns the keys left at init."""
    head = set(_head_keys(model))
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and k not in head and own[k].shape == v.shape}
    body = [k for k in own if k not in head]
    if len(usable) < len(body) // 2:
        raise CheckpointError(
            f"{what} does not fit this architecture ({len(usable)} of {len(body)} tensors match)."
        )
    model.load_state_dict(usable, strict=False)
    return sorted(set(own) - set(usable))


def target_layer(model: nn.Module, name: str) -> nn.Module:
    """The module whose output Grad-CAM explains (see the module docstring for why)."""
    if name == "shallow":
        return model.features[-2]
    if name == "vgg11":
        return model.features[-2]
    if name == "resnet18":
        return model.layer4[-1]
    raise BadArgument(f"Unknown model {name!r}: choose one of {', '.join(MODEL_NAMES)}.")


def preprocess(images, device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 images (N, H, W, 3) as numpy or tensor -> normalised float (N, 3, H, W)."""
    if isinstance(images, np.ndarray) and not images.flags.writeable:
        images = np.array(images)  # a read-only memmap: torch wants memory it may write
    x = torch.as_tensor(images)
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if device is not None:
        x = x.to(device, non_blocking=True)
    x = x.permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std
