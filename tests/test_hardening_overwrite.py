"""Issue 15: no silent overwrite of a run or of another dataset's index (CLI and GUI)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geocam_gui.cli import main


def _photos(root: Path, n=6) -> Path:
    rng = np.random.default_rng(0)
    for c in ("pittsburgh", "tokyo"):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(root / c / f"{c}_{i}.png")
    return root


def _train(data, out, *extra):
    return main(["train", str(data), "--model", "shallow", "--epochs", "1", "--max-batches", "1",
                 "--image-size", "32", "--batch-size", "4", "--out", str(out), *extra])


def test_train_refuses_to_replace_a_run_without_resume_or_overwrite(tmp_path, capsys, torch_threads):
    data = _photos(tmp_path / "data")
    out = tmp_path / "run"
    assert _train(data, out) == 0
    run = out / "shallow"
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    capsys.readouterr()
    assert _train(data, out) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "--overwrite" in err and str(run) in err
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before  # nothing replaced
    assert _train(data, out, "--resume", "--overwrite") == 2
    assert _train(data, out, "--overwrite") == 0
    lines = (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["epoch"] == 1  # a fresh run, not appended
    assert _train(tmp_path / "data", tmp_path / "other") == 0  # another folder is fine


def test_index_refuses_to_replace_another_datasets_index(tmp_path, capsys):
    a, b = _photos(tmp_path / "a"), _photos(tmp_path / "b")
    out = tmp_path / "idx"
    assert main(["index", str(a), "--verify", "none", "--out", str(out)]) == 0
    before = (out / "index.csv").read_bytes()
    assert main(["index", str(a), "--verify", "none", "--split", "5:3:2", "--out", str(out)]) == 0  # same roots
    assert (out / "index.csv").read_bytes() != before
    before = (out / "index.csv").read_bytes()
    capsys.readouterr()
    assert main(["index", str(b), "--verify", "none", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and str(a) in err
    assert (out / "index.csv").read_bytes() == before
    assert main(["index", str(b), "--verify", "none", "--out", str(out), "--overwrite"]) == 0
    assert str(b) in (out / "index.csv").read_text(encoding="utf-8")
    # a folder holding some other index.csv (not ours, no audit) is not taken over either
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "index.csv").write_text("somebody's table\n", encoding="utf-8")
    assert main(["index", str(a), "--verify", "none", "--out", str(tmp_path / "foreign")]) == 2
    assert (tmp_path / "foreign" / "index.csv").read_text(encoding="utf-8") == "somebody's table\n"


@pytest.mark.parametrize("answer", ["No", "Yes"])
def test_the_gui_asks_before_it_replaces_a_run(qtbot, tmp_path, monkeypatch, answer):
    from PySide6.QtWidgets import QMessageBox

    from geocam_gui.core.data.datasets import open_data
    from geocam_gui.ui import training_panel
    from geocam_gui.ui.training_panel import TrainingPanel

    asked = []

    def question(parent, title, text, *args, **kwargs):
        asked.append(text)
        return getattr(QMessageBox.StandardButton, answer)

    monkeypatch.setattr(QMessageBox, "question", staticmethod(question))
    started = []

    class FakeWorker:  # the real one spawns a training process; here only the decision matters
        def __init__(self, *args, **kwargs):
            started.append(args)

        def __getattr__(self, name):  # any signal: connecting does nothing
            return type("S", (), {"connect": lambda self, f: None})()

        def start(self):
            pass

    monkeypatch.setattr(training_panel, "TrainingWorker", FakeWorker)
    panel = TrainingPanel()
    qtbot.addWidget(panel)
    out = tmp_path / "runs"
    panel.set_dataset(open_data(_photos(tmp_path / "data")), out)
    panel.select_models(["shallow"])
    assert panel._may_replace(["shallow"]) and not asked  # nothing there yet: no question
    (out / "shallow").mkdir(parents=True)
    (out / "shallow" / "best.json").write_text("{}", encoding="utf-8")
    result = panel.start()
    assert len(asked) == 1 and str(out) in asked[0]
    assert result is (answer == "Yes")
    assert bool(started) is (answer == "Yes")
    panel.worker = None
    import torch

    torch.set_num_threads(getattr(panel, "_torch_threads", torch.get_num_threads()))
