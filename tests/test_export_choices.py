"""What a figure shows: columns in the paper's order whatever order the shell gives, a --limit
spread over classes and places, and wrong predictions marked as the viewer's panes mark them."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geocam_gui.cli import main
from geocam_gui.core import export as ex

CLASSES = ["pittsburgh", "tokyo"]


@pytest.fixture(scope="module")
def assets(tmp_path_factory, torch_threads):
    """Shallow and ResNet18 checkpoints in runs/<model>/, and a test split stored place by
    place: three Pittsburgh places of two views, then two Tokyo places of two views."""
    from geocam_gui.core.checkpoints import base_meta, save_checkpoint
    from geocam_gui.core.models import build_model

    torch_threads.manual_seed(0)
    root = tmp_path_factory.mktemp("choices")
    for name in ("shallow", "resnet18"):
        save_checkpoint(root / "runs" / name / "best", build_model(name, 2), base_meta(name, CLASSES, 32))
    rng = np.random.default_rng(2)
    rows = ["path,label,group,split"]
    for label, places in (("pittsburgh", 3), ("tokyo", 2)):
        for p in range(places):
            for v in range(2):
                path = root / "photos" / label / f"{label[0]}{p}_v{v}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(path)
                rows.append(f"{path},{label},{label}-{p},test")
    (root / "data").mkdir()
    (root / "data" / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root


def _titles_left_to_right(svg: str) -> list[str]:
    """The bold column titles of an SVG figure, ordered by their x position."""
    found = re.findall(r'<text[^>]*x="([\d.]+)"[^>]*font-weight[^>]*>([^<]+)</text>', svg)
    found += re.findall(r'<text[^>]*style="[^"]*font-weight: ?700[^"]*"[^>]*x="([\d.]+)"[^>]*>([^<]+)</text>', svg)
    return [t for _x, t in sorted(found, key=lambda xt: float(xt[0]))]


def test_columns_follow_the_papers_order_whatever_the_glob_gives(assets, tmp_path):
    glob_order = sorted(str(p) for p in (assets / "runs").glob("*/best.json"))  # what runs/*/best.json expands to
    assert [Path(p).parent.name for p in glob_order] == ["resnet18", "shallow"]
    out = tmp_path / "fig.svg"
    assert main(["export", "--checkpoint", *glob_order, "--images", str(next((assets / "photos").rglob("*.png"))),
                 "--figure", str(out)]) == 0
    side = json.loads(ex.sidecar_path(out).read_text())
    assert [Path(c).parent.name for c in side["params"]["checkpoints"]] == ["shallow", "resnet18"]
    svg = out.read_text()
    assert svg.index("Shallow CNN") < svg.index("ResNet18")  # drawn left to right
    kept = tmp_path / "kept.svg"
    assert main(["export", "--checkpoint", *glob_order, "--keep-order", "--images",
                 str(next((assets / "photos").rglob("*.png"))), "--figure", str(kept)]) == 0
    side = json.loads(ex.sidecar_path(kept).read_text())
    assert [Path(c).parent.name for c in side["params"]["checkpoints"]] == ["resnet18", "shallow"]


def test_paper_order_reads_each_checkpoints_model(tmp_path):
    from geocam_gui.commands.common import expand_checkpoints

    paths = []
    for folder, model in (("a", "resnet18"), ("b", "vgg11"), ("c", "shallow"), ("d", "shallow")):
        p = tmp_path / folder / "best.json"  # folder names that say nothing: the metadata decides
        p.parent.mkdir()
        p.write_text(json.dumps({"model": model, "classes": CLASSES}))
        paths.append(str(p))
    random.Random(4).shuffle(paths)
    got = [Path(p).parent.name for p in expand_checkpoints(paths)]
    models = {"a": "resnet18", "b": "vgg11", "c": "shallow", "d": "shallow"}
    assert [models[g] for g in got] == ["shallow", "shallow", "vgg11", "resnet18"]
    assert [g for g in got if models[g] == "shallow"] == [Path(p).parent.name for p in paths
                                                          if models[Path(p).parent.name] == "shallow"]


def test_limit_picks_across_classes_and_places_the_same_every_time(assets, tmp_path):
    picked = []
    for run in range(2):
        out = tmp_path / f"fig{run}.png"
        assert main(["export", "--checkpoint", str(assets / "runs" / "shallow" / "best.json"), "--split", "test",
                     "--data", str(assets / "data"), "--limit", "4", "--figure", str(out), "--dpi", "60"]) == 0
        picked.append([Path(im["path"]).stem for im in json.loads(ex.sidecar_path(out).read_text())["params"]["images"]])
    assert picked[0] == picked[1]  # deterministic
    assert picked[0] == ["p0_v0", "t0_v0", "p1_v0", "t1_v0"]  # both classes, four places, first views first


def test_spread_without_places_alternates_classes():
    from geocam_gui.core.export.pick import spread

    images = [ex.ExportImage(f"/x/{c}{i}.png", c) for c in "ab" for i in range(3)]
    assert [Path(im.path).stem for im in spread(images, 4)] == ["a0", "b0", "a1", "b1"]
    assert spread(images, None) == spread(images, 100) and len(spread(images, None)) == 6


def test_figure_frames_and_marks_wrong_predictions(assets, tmp_path):
    out = tmp_path / "fig.svg"
    ckpts = [str(assets / "runs" / m / "best.json") for m in ("shallow", "resnet18")]
    assert main(["export", "--checkpoint", *ckpts, "--split", "test", "--data", str(assets / "data"),
                 "--limit", "4", "--figure", str(out)]) == 0
    side = json.loads(ex.sidecar_path(out).read_text())
    labels = [im["label"] for im in side["params"]["images"]]
    wrong = sum(CLASSES[r["predicted_index"]] != labels[r["image_index"]] for r in side["results"])
    assert 0 < wrong < len(side["results"])  # untrained models: some right, some wrong
    svg = out.read_text()
    assert svg.count('id="wrong-prediction"') == wrong
    assert svg.count("✗ ") == wrong and svg.count("fill: #c62828") == wrong  # the red caption


def test_figure_marks_only_panels_known_to_be_wrong():
    from matplotlib.patches import Rectangle

    from geocam_gui.core.export.figure import WRONG_COLOR, FigurePanel, FigureRow, build_figure

    img = np.zeros((30, 40, 3), np.uint8)
    row = FigureRow(img, "tokyo", [FigurePanel(img, "tokyo", "tokyo", 0.9, wrong=False),
                                   FigurePanel(img, "pittsburgh", "pittsburgh", 0.7, wrong=True),
                                   FigurePanel(img, "tokyo", "tokyo", 0.6, wrong=None)])
    fig = build_figure([row], ["Image", "A", "B", "C"], width_in=7.16, explains_predicted=True)
    framed = [a for a in fig.axes for p in a.patches if isinstance(p, Rectangle) and p.get_gid() == "wrong-prediction"]
    assert len(framed) == 1 and framed[0] is fig.axes[2]  # the photo, then A, then B
    red = [t.get_text() for t in fig.texts if t.get_color() == WRONG_COLOR]
    assert red == ["✗ pred. pittsburgh (0.70)"]
