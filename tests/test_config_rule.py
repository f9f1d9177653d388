"""One rule for per-model defaults and user overrides, shared by the panel and ``geocam train``;
the CLI trains into the run folder the GUI reopens."""

from __future__ import annotations

import argparse

import pytest

from geocam_gui.core.errors import BadArgument
from geocam_gui.core.models import MODEL_LABELS, MODEL_NAMES
from geocam_gui.core.train.config import DEMO_CPU_RECIPES, DEMO_ORDER, config_for, default_config


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory):
    from geocam_gui.core.data.demo import generate_demo

    return generate_demo(tmp_path_factory.mktemp("data") / "tiny", per_class=16, size=32, views_per_place=2, seed=3)


def _cli_args(*argv):
    from geocam_gui.commands import train

    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    return parser.parse_args(["data", *argv])


def test_untouched_fields_keep_each_models_default_given_ones_apply_to_all():
    for model in MODEL_NAMES:
        assert config_for(model, "cpu", {}) == default_config(model, "cpu")
        given = config_for(model, "cpu", {"lr": 5e-3, "epochs": 3})
        own = default_config(model, "cpu")
        assert (given.lr, given.epochs) == (5e-3, 3)
        assert (given.batch_size, given.image_size) == (own.batch_size, own.image_size)
    assert config_for("vgg11", "cpu", {"lr": None}).lr == default_config("vgg11", "cpu").lr
    off = config_for("shallow", "cpu", {"augment": False}).augment
    assert not off.crop and not off.hflip
    with pytest.raises(BadArgument, match="Unknown training setting"):
        config_for("shallow", "cpu", {"learning_rate": 1.0})
    with pytest.raises(BadArgument, match="Epochs must be at least 1"):
        config_for("shallow", "cpu", {"epochs": 0})


def test_the_first_run_trains_every_model_once_vgg11_last():
    assert sorted(DEMO_ORDER) == sorted(MODEL_NAMES) == sorted(DEMO_CPU_RECIPES) and DEMO_ORDER[-1] == "vgg11"


def test_cli_applies_the_rule():
    from geocam_gui.commands.train import build_configs

    plain = build_configs(_cli_args("--model", "all", "--device", "cpu"))
    assert [c.lr for c in plain] == [default_config(m, "cpu").lr for m in MODEL_NAMES]
    given = build_configs(_cli_args("--model", "all", "--device", "cpu", "--lr", "0.002", "--no-flip"))
    assert {c.lr for c in given} == {0.002}
    assert [c.batch_size for c in given] == [default_config(m, "cpu").batch_size for m in MODEL_NAMES]
    assert all(c.augment.crop and not c.augment.hflip for c in given)


def test_panel_and_cli_agree(qtbot):
    from geocam_gui.commands.train import build_configs
    from geocam_gui.ui.training_panel import TrainingPanel

    panel = TrainingPanel()
    qtbot.addWidget(panel)
    panel.device.setCurrentIndex(panel.device.findData("cpu"))
    assert panel.overrides() == {}
    for model, cli in zip(MODEL_NAMES, build_configs(_cli_args("--model", "all", "--device", "cpu"))):
        assert panel.config_for(model) == cli == default_config(model, "cpu")
    panel.lr.setValue(0.002)
    panel.epochs.setValue(3)
    panel.augment.setChecked(False)
    cli = build_configs(_cli_args("--model", "all", "--device", "cpu", "--lr", "0.002", "--epochs", "3",
                                  "--no-augment"))
    assert [panel.config_for(m) for m in MODEL_NAMES] == cli
    assert panel.config_for("vgg11").lr == 0.002  # a changed LR is no longer dropped for VGG11
    panel.epochs.setValue(panel.epochs.minimum())  # stepped back down: each model's own epochs again
    assert [panel.config_for(m).epochs for m in MODEL_NAMES] == [default_config(m, "cpu").epochs for m in MODEL_NAMES]


def test_panel_fields_say_per_model_and_list_each_models_default(qtbot):
    from geocam_gui.ui.training_panel import TrainingPanel

    panel = TrainingPanel()
    qtbot.addWidget(panel)
    panel.device.setCurrentIndex(panel.device.findData("cpu"))
    for field, key in ((panel.epochs, "epochs"), (panel.batch, "batch_size"), (panel.lr, "lr")):
        assert field.text() == "per model"
        tip = field.toolTip()
        for m in MODEL_NAMES:
            assert f"{MODEL_LABELS[m]} {getattr(default_config(m, 'cpu'), key):g}" in tip, (key, tip)
    panel.batch.setValue(8)
    assert panel.batch.text() == "8" and panel.overrides() == {"batch_size": 8}
    panel.device.setCurrentIndex(panel.device.findData("auto"))  # another device: per model again
    assert panel.batch.text() == "per model" and panel.overrides() == {}


def test_a_learning_rate_far_from_a_chosen_models_own_is_pointed_out(qtbot):
    from geocam_gui.ui.training_panel import TrainingPanel
    from geocam_gui.ui.training_settings import lr_warning

    defaults = {m: default_config(m, "cpu") for m in MODEL_NAMES}
    vgg = defaults["vgg11"].lr
    assert lr_warning(0.0, defaults) == "" and lr_warning(vgg, {"vgg11": defaults["vgg11"]}) == ""
    assert "VGG11 (AdamW 0.0003: 10x)" in lr_warning(vgg * 10, {"vgg11": defaults["vgg11"]})
    assert "1/10" in lr_warning(vgg / 10, {"vgg11": defaults["vgg11"]})

    panel = TrainingPanel()
    qtbot.addWidget(panel)
    panel.device.setCurrentIndex(panel.device.findData("cpu"))
    note = panel.settings.lr_note
    assert note.isHidden()
    panel.lr.setValue(vgg * 12)  # typed with the other models in mind
    assert not note.isHidden() and "VGG11" in note.text() and "may not learn" in note.text()
    panel.model_checks["vgg11"].setChecked(False)  # VGG11 not trained: the rest are within 10x
    expected = lr_warning(vgg * 12, {m: defaults[m] for m in ("shallow", "resnet18")})
    assert note.isHidden() == (expected == "") and "VGG11" not in note.text()
    panel.model_checks["vgg11"].setChecked(True)
    panel.lr.setValue(panel.lr.minimum())  # per model again
    assert note.isHidden()


def test_cli_without_out_trains_where_the_gui_looks(tiny_demo, _isolated_home):
    from geocam_gui.cli import main
    from geocam_gui.core import runs
    from geocam_gui.core.data.datasets import open_data
    from geocam_gui.core.workspace import default_run_dir

    code = main(["train", str(tiny_demo), "--model", "shallow", "--epochs", "1", "--image-size", "32",
                 "--batch-size", "8", "--device", "cpu", "--max-batches", "1"])
    assert code == 0
    index = open_data(tiny_demo)
    run_dir = default_run_dir(index)
    assert run_dir.parent == _isolated_home / "checkpoints"  # GEOCAM_CHECKPOINTS of the tests
    assert run_dir.name.startswith("demo-")  # the demo set is recognised by data.demo.is_demo_dir
    found = runs.reopen(run_dir, list(index.classes))
    assert found["shallow"].path == run_dir / "shallow" / "best.json"
