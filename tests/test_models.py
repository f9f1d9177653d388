"""The three architectures build, train a step at small sizes, and expose their Grad-CAM layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geocam_gui.core.errors import BadArgument, CheckpointError
from geocam_gui.core.models import MEAN, MODEL_NAMES, STD, build_model, preprocess, target_layer

# Spatial size of the target layer's output relative to the input (see models' docstring).
STRIDE = {"shallow": 8, "vgg11": 16, "resnet18": 32}


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_each_model_trains_a_step_and_has_its_cam_layer(name, torch_threads):
    torch.manual_seed(0)
    size = 64 if name != "vgg11" else 32  # VGG11's 100M-parameter head is slow; any size >= 32 works
    model = build_model(name, 2)
    x = torch.randn(4, 3, size, size)
    y = torch.tensor([0, 1, 0, 1])
    seen = {}
    def record(module, inputs, output):  # returns None: the output is left as it is
        seen.setdefault("shape", output.shape)

    handle = target_layer(model, name).register_forward_hook(record)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    before = [p.detach().clone() for p in model.parameters()]
    model.train()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    handle.remove()
    assert torch.isfinite(loss)
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert seen["shape"][0] == 4 and seen["shape"][-1] == size // STRIDE[name]
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (4, 2)


def test_shallow_works_at_32_px_and_at_other_class_counts():
    model = build_model("shallow", 5).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)
        assert model(torch.randn(1, 3, 97, 61)).shape == (1, 5)


def test_bad_names_and_class_counts_are_refused():
    with pytest.raises(BadArgument, match="Unknown model"):
        build_model("alexnet", 2)
    with pytest.raises(BadArgument, match="at least 2 classes"):
        build_model("shallow", 1)
    with pytest.raises(BadArgument):
        target_layer(build_model("shallow", 2), "vgg16")


def test_local_imagenet_weights_load_except_the_head(tmp_path):
    torch.manual_seed(1)
    imagenet = build_model("resnet18", 1000)  # stands in for a torchvision ImageNet file
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(imagenet.state_dict(), path)
    model = build_model("resnet18", 2, weights=path)
    assert torch.equal(model.layer4[1].conv2.weight, imagenet.layer4[1].conv2.weight)
    assert model.fc.weight.shape == (2, 512)
    with pytest.raises(CheckpointError, match="does not fit"):
        build_model("vgg11", 2, weights=path)
    with pytest.raises(CheckpointError, match="not found"):
        build_model("resnet18", 2, weights=tmp_path / "missing.pth")


def test_preprocess_normalises_uint8_nhwc():
    img = np.zeros((2, 8, 8, 3), np.uint8)
    img[..., 0] = 255
    x = preprocess(img)
    assert x.shape == (2, 3, 8, 8) and x.dtype == torch.float32
    assert torch.allclose(x[:, 0], torch.full((2, 8, 8), (1 - MEAN[0]) / STD[0]))
    assert torch.allclose(x[:, 2], torch.full((2, 8, 8), (0 - MEAN[2]) / STD[2]))
