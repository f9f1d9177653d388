"""Every long command shows its progress: a bar redrawn in place on a terminal, plain lines in a
log (stderr not a terminal, as under capsys), so a run of minutes is never silent."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

from geocam_gui.cli import main
from geocam_gui.commands.common import progress_printer

LINE = re.compile(r"^\[(\d+)/(\d+)\]\s+\d+ % (.*)$")


def _lines(err: str, word: str) -> list[tuple[int, int]]:
    """(done, total) of the plain progress lines mentioning ``word``."""
    out = []
    for line in err.splitlines():
        m = LINE.match(line)
        if m and word in m.group(3):
            out.append((int(m.group(1)), int(m.group(2))))
    return out


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_at_each_tenth_and_the_end():
    out = io.StringIO()
    progress = progress_printer(out)
    for i in range(1, 1001):
        progress(i, 1000, "images")
    lines = out.getvalue().splitlines()
    assert lines[0] == "[1/1000]   0 % images" and lines[-1] == "[1000/1000] 100 % images"
    assert len(lines) == 11  # the first call, then 10 %, 20 % ... 100 %
    assert "\r" not in out.getvalue()


def test_a_new_stage_starts_new_lines_and_a_terminal_gets_a_bar():
    out = io.StringIO()
    progress = progress_printer(out, steps=2)
    for total in (4, 6):
        for i in range(1, total + 1):
            progress(i, total, f"stage {total}")
    assert [l.split()[0] for l in out.getvalue().splitlines()] == ["[1/4]", "[2/4]", "[4/4]", "[1/6]", "[3/6]",
                                                                   "[6/6]"]
    tty = _Tty()
    bar = progress_printer(tty)
    bar(5, 10, "half")
    bar(10, 10, "all")
    text = tty.getvalue()
    assert "\r[############------------] 5/10 half" in text and text.endswith("\n")
    assert "[########################] 10/10 all" in text


def test_demo_data_and_index_print_progress_lines(tmp_path, capsys):
    assert main(["demo-data", str(tmp_path / "demo"), "--per-class", "10", "--size", "32"]) == 0
    err = capsys.readouterr().err
    done = _lines(err, "images")
    assert done and done[-1][0] == done[-1][1] == 20

    root = tmp_path / "photos"
    rng = np.random.default_rng(0)
    for c in ("pittsburgh", "tokyo"):
        (root / c).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    assert main(["index", str(root), "--verify", "all", "--out", str(tmp_path / "idx")]) == 0
    done = _lines(capsys.readouterr().err, "indexing")
    assert done and done[-1][0] == done[-1][1]


def test_train_prints_decoding_and_batch_progress(tiny_demo, tmp_path, capsys, torch_threads):
    assert main(["train", str(tiny_demo), "--model", "shallow", "--epochs", "1", "--image-size", "32",
                 "--batch-size", "4", "--device", "cpu", "--out", str(tmp_path / "run")]) == 0
    cap = capsys.readouterr()
    decoding = _lines(cap.err, "decoding the train images")
    assert decoding and decoding[-1][0] == decoding[-1][1]
    batches = _lines(cap.err, "shallow epoch 1/1")
    assert batches and batches[-1][0] == batches[-1][1] > 1  # within the epoch, up to its last batch
    assert "shallow epoch 1/1: train loss" in cap.out  # the epoch's own line stays on stdout


@pytest.fixture(scope="module")
def untrained(tmp_path_factory, torch_threads):
    from geocam_gui.core.checkpoints import save_checkpoint
    from geocam_gui.core.models import build_model

    torch_threads.manual_seed(0)
    root = tmp_path_factory.mktemp("untrained")
    return str(save_checkpoint(root / "shallow" / "best", build_model("shallow", 2),
                               {"model": "shallow", "classes": ["pittsburgh", "tokyo"], "image_size": 32}))


def test_export_analyze_and_units_print_progress_lines(tiny_demo, untrained, tmp_path, capsys):
    assert main(["export", "--checkpoint", untrained, "--split", "test", "--data", str(tiny_demo), "--limit", "3",
                 "--overlays", str(tmp_path / "ov"), "--only", "raw"]) == 0
    done = _lines(capsys.readouterr().err, "overlays")
    assert done[0] == (1, 3) and done[-1] == (3, 3)

    assert main(["analyze", "-c", untrained, "--data", str(tiny_demo), "--limit", "4", "--device", "cpu",
                 "--out", str(tmp_path / "an")]) == 0
    err = capsys.readouterr().err
    done = [l for l in err.splitlines() if LINE.match(l)]
    assert len(done) >= 3 and "done" in done[-1] and "[" in done[0]

    assert main(["units", "-c", untrained, "--data", str(tiny_demo), "--limit", "4", "--top", "2",
                 "--no-random-check", "--device", "cpu", "--out", str(tmp_path / "un")]) == 0
    err = capsys.readouterr().err
    assert len([l for l in err.splitlines() if LINE.match(l)]) >= 2
