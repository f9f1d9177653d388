"""The chance test (core/chance.py) against scipy's exact binomial test, and its uses."""

from __future__ import annotations

import pytest

from geocam_gui.core import chance

stats = pytest.importorskip("scipy.stats")

CASES = [(0, 10, 0.5), (5, 10, 0.5), (9, 10, 0.5), (10, 10, 0.5), (34, 68, 0.5), (41, 68, 0.5),
         (60, 100, 0.55), (1, 3, 0.6667), (512, 1000, 0.5), (700, 1000, 0.62), (4900, 9000, 0.52)]


@pytest.mark.parametrize("k,n,p0", CASES)
def test_p_value_and_interval_match_scipy(k, n, p0):
    ours = chance.chance_test(k, n, p0)
    ref = stats.binomtest(k, n, p0, alternative="greater")
    assert ours["p_value"] == pytest.approx(ref.pvalue, rel=1e-7, abs=1e-12)
    ci = stats.binomtest(k, n, p0).proportion_ci(confidence_level=0.95, method="exact")
    assert ours["ci95"][0] == pytest.approx(ci.low, abs=1e-9)
    assert ours["ci95"][1] == pytest.approx(ci.high, abs=1e-9)
    assert ours["above_chance"] == (ref.pvalue < 0.05)


def test_one_class_for_everything_is_at_chance():
    # VGG11 answering "pittsburgh" for all 34 + 34 balanced test images: 50 %
    metrics = {"confusion": [[34, 0], [34, 0]], "classes": ["pittsburgh", "tokyo"]}
    result = chance.chance_from_metrics(metrics)
    assert result["accuracy"] == 0.5 and result["majority_rate"] == 0.5
    assert not result["above_chance"]
    assert result["message"].startswith("At chance")
    assert "AT CHANCE" in chance.short_line(result)


def test_majority_rate_is_the_largest_class_share():
    # 80 of 100 test images are class a: 80 % right by always answering a is no achievement
    result = chance.chance_from_metrics({"confusion": [[80, 0], [18, 2]], "classes": ["a", "b"]})
    assert result["majority_rate"] == pytest.approx(0.8) and result["majority_class"] == "a"
    assert result["accuracy"] == pytest.approx(0.82)
    assert not result["above_chance"]
    good = chance.chance_from_metrics({"confusion": [[45, 5], [6, 44]], "classes": ["a", "b"]})
    assert good["above_chance"] and good["message"].startswith("Above chance")


def test_bad_or_missing_metrics_give_none():
    for bad in (None, {}, {"confusion": "x"}, {"confusion": [[1, 2, 3]]}, {"confusion": [[0, 0], [0, 0]]},
                {"confusion": [[-1, 2], [2, 2]]}):
        assert chance.chance_from_metrics(bad) is None
    assert chance.chance_of_checkpoint({"metrics": {}}) is None
    meta = {"classes": ["x", "y"], "metrics": {"test": {"confusion": [[10, 0], [0, 10]]}}}
    assert chance.chance_of_checkpoint(meta)["majority_class"] == "x"


def test_a_validation_accuracy_far_above_test_is_explained():
    """The demo's VGG11 after the first run: 78 % on sky-biased validation images, 50 % on the
    sky-balanced test split; the verdict says why the two differ (and stays silent when they agree)."""
    meta = {"classes": ["pittsburgh", "tokyo"],
            "metrics": {"val": {"accuracy": 0.78125}, "test": {"confusion": [[240, 240], [239, 241]]}}}
    verdict = chance.chance_of_checkpoint(meta)
    assert not verdict["above_chance"] and verdict["val_accuracy"] == 0.78125
    assert "validation accuracy was 78.1 %" in verdict["message"] and "the sky" in verdict["message"]
    meta["metrics"]["val"]["accuracy"] = 0.55
    assert "validation" not in chance.chance_of_checkpoint(meta)["message"]
    for odd in ("0.9", float("nan"), 7.0, None):
        meta["metrics"]["val"]["accuracy"] = odd
        assert "validation" not in chance.chance_of_checkpoint(meta)["message"]


def test_viewer_pane_warns_for_a_model_at_chance(qtbot, qt_settings, tmp_path, torch_threads):
    import numpy as np
    from PIL import Image

    from geocam_gui.core.checkpoints import base_meta, save_checkpoint
    from geocam_gui.core.models import build_model
    from geocam_gui.ui.cam_viewer import CamViewer

    classes = ["pittsburgh", "tokyo"]
    metrics = {"shallow": {"confusion": [[34, 0], [34, 0]], "classes": classes},   # one class for all
               "resnet18": {"confusion": [[30, 4], [3, 31]], "classes": classes}}
    viewer = CamViewer(device="cpu")
    qtbot.addWidget(viewer)
    viewer.set_classes(classes)
    for name, m in metrics.items():
        save_checkpoint(tmp_path / name / "best", build_model(name, 2), base_meta(name, classes, 32, metrics={"test": m}))
        viewer.set_checkpoint(name, str(tmp_path / name / "best.json"))
    save_checkpoint(tmp_path / "vgg11" / "best", build_model("vgg11", 2), base_meta("vgg11", classes, 32))
    viewer.set_checkpoint("vgg11", str(tmp_path / "vgg11" / "best.json"))  # no test metrics stored
    shallow, resnet, vgg = (viewer.panes[n].chance_label for n in ("shallow", "resnet18", "vgg11"))
    assert shallow.isVisibleTo(viewer) and "At chance" in shallow.text() and "50.0 %" in shallow.text()
    assert shallow.toolTip() == chance.chance_from_metrics(metrics["shallow"])["message"]
    assert resnet.isVisibleTo(viewer) and "above chance" in resnet.text() and "At chance" not in resnet.text()
    assert not vgg.isVisibleTo(viewer)
    photo = tmp_path / "street.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(photo)
    viewer.set_sample(str(photo), "tokyo")
    viewer.resize(1200, 520)
    viewer.show()
    qtbot.waitUntil(lambda: not viewer.is_busy(), timeout=60_000)
    viewer.grab().save(str(tmp_path / "viewer.png"))
    viewer.set_checkpoint("shallow", None)
    assert not shallow.isVisibleTo(viewer)
    viewer.shutdown()
