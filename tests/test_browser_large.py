"""The dataset browser on a 100,000-image index built in memory (no image is written): counts,
class / split / name filters, orders by a model's predictions, placeholder thumbnails for files
that are not there, and the table's File column. Expected figures are computed here in plain
Python, independently of the browser's numpy columns."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

from geocam_gui.core.data.datasets import DatasetIndex, Sample  # noqa: E402
from geocam_gui.core.data.sample_table import SampleTable  # noqa: E402
from geocam_gui.core.models import MODEL_LABELS  # noqa: E402
from geocam_gui.ui.dataset_model import SAMPLE_ROLE  # noqa: E402

N = 100_000
CLASSES = ["paris", "pittsburgh", "tokyo"]


def synthetic_index(root, n=N) -> DatasetIndex:
    """n samples in three classes and three splits, in index (path) order, none on disk."""
    rng = np.random.default_rng(7)
    label_of = rng.integers(0, len(CLASSES), n)
    split_of = rng.choice(["train", "val", "test"], n, p=[0.6, 0.2, 0.2])
    samples = [Sample(f"{root}/{CLASSES[k]}/pano{i // 4:06d}_v{i % 4}.jpg", CLASSES[k], f"g{i // 4}", str(sp))
               for i, (k, sp) in enumerate(zip(label_of.tolist(), split_of.tolist()))]
    samples.sort(key=lambda s: s.path)
    return DatasetIndex(samples, list(CLASSES), [str(root)], "folders")


@pytest.fixture(scope="module")
def big_index(tmp_path_factory):
    return synthetic_index(tmp_path_factory.mktemp("nowhere"))


def test_the_table_filters_counts_and_orders_like_plain_python():
    samples = [Sample(f"/d/{c}/{name}", c, "g", sp) for c, name, sp in [
        ("tokyo", "B.png", "test"), ("paris", "a.png", "train"), ("tokyo", "c.PNG", "val"),
        ("paris", "b.png", "test"), ("lima", "x.png", "odd")]]
    t = SampleTable.build(samples, ["paris", "tokyo"])
    assert t.names == ["B.png", "a.png", "c.PNG", "b.png", "x.png"]
    assert [t.names[i] for i in t.name_order] == sorted(t.names)
    assert t.class_counts() == {"paris": 2, "tokyo": 2}  # lima is not a class of the index
    assert t.split_counts() == {"train": 1, "val": 1, "test": 2}
    assert np.flatnonzero(t.mask(label="tokyo")).tolist() == [0, 2]
    assert np.flatnonzero(t.mask(split="test", text="B")).tolist() == [0, 3]  # any case
    assert np.flatnonzero(t.mask(text=".png")).tolist() == [0, 1, 2, 3, 4]
    assert not t.mask(label="lima").any() and not t.mask(split="nope").any()
    empty = SampleTable.build([], ["a", "b"])
    assert len(empty) == 0 and not empty.mask(text="x").any()


def test_a_100k_index_shows_counts_filters_and_placeholder_thumbnails(main_window, qtbot, big_index, tmp_path):
    w, b = main_window, main_window.browser
    samples = big_index.samples
    w.set_index(big_index, run_dir=tmp_path / "runs")
    qtbot.waitUntil(lambda: not b.is_loading(), timeout=60000)
    assert b.stack.currentWidget() is b.grid
    assert b.model.rowCount() == N

    per_class = {c: sum(1 for s in samples if s.label == c) for c in CLASSES}
    per_split = {k: sum(1 for s in samples if s.split == k) for k in ("train", "val", "test")}
    counts = b.counts.text()
    for c, n in per_class.items():
        assert f"{c} {n}" in counts
    for k, n in per_split.items():
        assert f"{k} {n}" in counts
    assert f"showing {N}" in counts

    # the app selected the first test image, in file-name order
    by_name = sorted(range(N), key=lambda i: (samples[i].path.rsplit("/", 1)[1], i))
    first_test = next(i for i in by_name if samples[i].split == "test")
    assert b.grid.currentIndex().data(SAMPLE_ROLE) is samples[first_test]

    # missing files get a placeholder thumbnail, not an error
    qtbot.waitUntil(lambda: len(b.model._images) > 0, timeout=30000)
    placeholder = next(iter(b.model._images.values()))
    assert not placeholder.isNull()

    # a class filter, then a split filter, then a name search
    b.class_filter.setCurrentIndex(b.class_filter.findData("tokyo"))
    assert b.model.rowCount() == per_class["tokyo"]
    assert f"showing {per_class['tokyo']}" in b.counts.text()
    b.split_filter.setCurrentIndex(b.split_filter.findData("val"))
    tokyo_val = [s for s in samples if s.label == "tokyo" and s.split == "val"]
    assert b.model.rowCount() == len(tokyo_val)
    assert set(map(id, b.visible_samples())) == set(map(id, tokyo_val))
    b.search.setText("_V3")
    assert b.model.rowCount() == sum(1 for s in tokyo_val if "_v3" in s.path.rsplit("/", 1)[1].lower())
    b.search.clear()
    b.class_filter.setCurrentIndex(0)
    assert b.model.rowCount() == per_split["val"]
    b.split_filter.setCurrentIndex(0)
    assert b.model.rowCount() == N


def test_predictions_filter_and_order_a_100k_index(main_window, qtbot, big_index, tmp_path):
    w, b = main_window, main_window.browser
    samples = big_index.samples
    w.set_index(big_index, run_dir=tmp_path / "runs")
    qtbot.waitUntil(lambda: not b.is_loading(), timeout=60000)
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(len(CLASSES)), N).astype(np.float32)
    probs[5] = np.nan  # not predicted
    b.set_predictions("shallow", probs)
    pred = probs.argmax(1).tolist()
    wrong = [i for i in range(N) if i != 5 and CLASSES[pred[i]] != samples[i].label]
    b.verdict_filter.setCurrentIndex(b.verdict_filter.findData("wrong:shallow"))
    assert b.model.rowCount() == len(wrong)
    b.verdict_filter.setCurrentIndex(0)
    b.order.setCurrentIndex(b.order.findData("conf:shallow"))
    top = max((i for i in range(N) if i != 5), key=lambda i: float(probs[i].max()))
    assert b.model.index(0, 0).data(SAMPLE_ROLE) is samples[top]
    assert b.model.index(N - 1, 0).data(SAMPLE_ROLE) is samples[5]  # unknown last
    test = [i for i in range(N) if i != 5 and samples[i].split == "test"]
    accuracy = sum(CLASSES[pred[i]] == samples[i].label for i in test) / len(test)
    shown = b.counts.text().replace("&nbsp;", " ")  # rich text: each model's figure is kept on one line
    assert f"{MODEL_LABELS['shallow']} {accuracy * 100:.1f} %" in shown


def test_the_table_shows_file_names_with_the_path_as_tooltip(main_window, qtbot, big_index, tmp_path):
    w, b = main_window, main_window.browser
    w.set_index(big_index, run_dir=tmp_path / "runs")
    qtbot.waitUntil(lambda: not b.is_loading(), timeout=60000)
    chosen = b.grid.currentIndex().data(SAMPLE_ROLE)
    b.view_toggle.setChecked(True)
    assert b.stack.currentWidget() is b.table
    assert b.table.currentIndex().data(SAMPLE_ROLE) is chosen  # the selection follows
    header = b.table.horizontalHeader()
    assert b.model.headerData(0, Qt.Orientation.Horizontal) == "File"
    assert header.sectionSize(0) >= 150 and not b.table.isColumnHidden(0)  # wide enough to read
    for row in range(3):
        sample = b.model.index(row, 0).data(SAMPLE_ROLE)
        assert b.model.index(row, 0).data() == sample.path.rsplit("/", 1)[1]
        assert b.model.index(row, 0).data(Qt.ItemDataRole.ToolTipRole).startswith(sample.path)
        assert b.model.index(row, 1).data() == sample.label
        assert b.model.index(row, 2).data() == sample.split
    # the name is painted: the File cell of the current row, on screen, holds text pixels
    rect = b.table.visualRect(b.table.currentIndex().siblingAtColumn(0))
    assert b.table.viewport().rect().contains(rect.center()) and rect.width() >= 150
    image = b.table.viewport().grab(rect).toImage()
    pixels = [image.pixel(x, y) for x in range(image.width()) for y in range(image.height())]
    background = max(set(pixels), key=pixels.count)
    assert sum(p != background for p in pixels) > 20


def test_another_index_opened_while_one_loads_wins(main_window, qtbot, tiny_index, tmp_path):
    w, b = main_window, main_window.browser
    w.set_index(synthetic_index(tmp_path / "nowhere"), run_dir=tmp_path / "runs")  # no columns built yet
    assert b.is_loading() and not w.is_idle()  # the browser says so while it builds the columns
    assert "Loading 100,000 images" in b.empty.text()
    w.set_index(tiny_index, run_dir=tmp_path / "tiny-runs")  # small: taken at once
    assert not b.is_loading()
    qtbot.wait(200)  # a slice of the big index's columns, had one been left scheduled
    assert b.index is tiny_index and b.model.rowCount() == len(tiny_index.samples)
    assert b.current_view().currentIndex().data(SAMPLE_ROLE).split == "test"
