"""The three architectures of the paper, and where Grad-CAM looks in each.

* ``shallow``: the paper's "four convolutional layers and two fully connected layers, with max
  pooling and ReLU". Each stage is conv 3x3 (padding 1) -> ReLU -> max-pool 2x2, with widths
  32-64-128-256; then an adaptive average pool to 7x7 (so any input of 32 px or more works),
  FC 12544 -> 256 -> ReLU -> dropout 0.5 -> FC 256 -> classes.
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

# ImageNet statistics: the convention of torchvision's weights, used for all three models.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class ShallowCNN(nn.Module):
    """Four conv stages (conv3x3-ReLU-maxpool2) and two fully connected layers."""

    def __init__(self, num_classes: int = 2, widths=(32, 64, 128, 256), hidden: int = 256):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for w in widths:
            layers += [nn.Conv2d(c_in, w, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c_in = w
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c_in * 7 * 7, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.avgpool(self.features(x)))


def build_model(name: str, num_classes: int, *, weights: str | Path | None = None) -> nn.Module:
    """A fresh model. ``weights``: optional local torchvision ImageNet state dict; the last
    layer is re-made for ``num_classes``. Never downloads anything."""
    if name not in MODEL_NAMES:
        raise BadArgument(f"Unknown model {name!r}: choose one of {', '.join(MODEL_NAMES)}.")
    if num_classes < 2:
        raise BadArgument(f"A classifier needs at least 2 classes, got {num_classes}.")
    if name == "shallow":
        model: nn.Module = ShallowCNN(num_classes)
    else:
        import torchvision

        model = getattr(torchvision.models, name)(weights=None, num_classes=num_classes)
    if weights is not None:
        load_pretrained(model, weights)
    return model


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
    head = set(_head_keys(model))
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and k not in head and own[k].shape == v.shape}
    body = [k for k in own if k not in head]
    if len(usable) < len(body) // 2:
        raise CheckpointError(
            f"{path.name} does not fit this architecture ({len(usable)} of {len(body)} tensors match)."
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
