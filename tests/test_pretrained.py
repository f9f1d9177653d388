"""ImageNet initialisation through torchvision's weights API, tested offline.

A state dict is placed in torch's hub cache (``TORCH_HOME`` in a temporary folder) under the
file name torchvision's own download would give it (the last part of the weights enum's ``url``),
as a real cached download would be; the download function is replaced by one that fails, so no
test can touch the network.
"""

from __future__ import annotations

import json
import urllib.error

import pytest
import torch

from geocam_gui.core import models
from geocam_gui.core.errors import BadArgument, CheckpointError


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    calls = []

    def no_network(url, dst, *a, **k):
        calls.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return calls


def _cached_resnet18() -> dict:
    import torchvision

    torch.manual_seed(7)
    state = torchvision.models.resnet18(weights=None).state_dict()  # 1000 ImageNet classes
    path = models.imagenet_cache_path("resnet18")
    assert path.name == "resnet18-f37072fd.pth"  # torchvision's ResNet18_Weights.IMAGENET1K_V1 file
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    return state


def test_cached_imagenet_weights_are_loaded_except_the_head(offline_hub, tmp_path):
    state = _cached_resnet18()
    assert str(models.imagenet_cache_path("resnet18")).startswith(str(tmp_path / "torch" / "hub" / "checkpoints"))
    net = models.build_model("resnet18", 2, pretrained="imagenet")
    own = net.state_dict()
    for key, value in state.items():
        if key.startswith("fc."):
            continue
        assert torch.equal(own[key], value), key
    assert own["fc.weight"].shape == (2, 512)  # the head is new, for two cities
    assert not offline_hub  # read from the cache: no download attempted
    fresh = models.build_model("resnet18", 2)  # the default stays from scratch
    assert not torch.equal(fresh.state_dict()["conv1.weight"], state["conv1.weight"])


def test_offline_without_cache_is_one_sentence(offline_hub):
    with pytest.raises(CheckpointError) as err:
        models.build_model("vgg11", 2, pretrained="imagenet")
    text = str(err.value)
    assert "offline" in text and "vgg11-8a719046.pth" in text and "--weights FILE" in text
    assert offline_hub == [models.imagenet_weights("vgg11").url]


def test_shallow_net_refuses_imagenet(tmp_path):
    from geocam_gui.core.train.config import TrainConfig

    with pytest.raises(BadArgument, match="no ImageNet weights"):
        models.build_model("shallow", 2, pretrained="imagenet")
    with pytest.raises(BadArgument, match="no ImageNet weights"):
        TrainConfig(model="shallow", pretrained="imagenet").validate()
    with pytest.raises(BadArgument, match="not both"):
        TrainConfig(model="vgg11", pretrained="imagenet", weights=str(tmp_path / "x.pt")).validate()


def test_cli_trains_from_imagenet_and_records_it(offline_hub, tmp_path, capsys):
    from geocam_gui.cli import main
    from geocam_gui.core.data.demo import generate_demo

    _cached_resnet18()
    data = generate_demo(tmp_path / "demo", per_class=10, size=32, views_per_place=2, seed=3)
    out = tmp_path / "runs"
    assert main(["train", str(data), "--model", "shallow", "--pretrained", "imagenet", "--out", str(out)]) == 2
    assert "no ImageNet weights" in capsys.readouterr().err
    code = main(["train", str(data), "--model", "resnet18", "--pretrained", "imagenet", "--epochs", "1",
                 "--image-size", "32", "--batch-size", "8", "--device", "cpu", "--max-batches", "1",
                 "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "chance" in printed  # the finished line says whether the accuracy beats chance
    meta = json.loads((out / "resnet18" / "best.json").read_text())
    assert meta["hyper_parameters"]["pretrained"] == "imagenet"
    assert not offline_hub


def test_training_panel_checkbox_sets_imagenet_for_vgg_and_resnet_only(qtbot, qt_settings):
    from geocam_gui.ui.training_panel import TrainingPanel

    panel = TrainingPanel()
    qtbot.addWidget(panel)
    assert not panel.pretrained.isChecked()  # the paper's models stay from scratch by default
    assert panel.config_for("vgg11").pretrained is None
    panel.pretrained.setChecked(True)
    assert panel.config_for("vgg11").pretrained == "imagenet"
    assert panel.config_for("resnet18").pretrained == "imagenet"
    assert panel.config_for("shallow").pretrained is None
    panel.resize(900, 500)
    panel.show()
    panel.grab().save(str(qt_settings.parent / "panel.png"))
