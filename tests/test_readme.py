"""The README's Python API examples run as written (on a small checkpoint and photo made here)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks(section: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    body = text.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", body, flags=re.S)


def test_python_api_examples_run(tmp_path, monkeypatch):
    from geocam_gui.core.checkpoints import base_meta, save_checkpoint
    from geocam_gui.core.models import build_model

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs/demo/vgg11").mkdir(parents=True)
    save_checkpoint(tmp_path / "runs/demo/vgg11/best", build_model("vgg11", 2),
                    base_meta("vgg11", ["pittsburgh", "tokyo"], 32))
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(tmp_path / "street.jpg")

    blocks = _python_blocks("Python API")
    assert len(blocks) == 2
    scope: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), scope)  # noqa: S102 - our own documentation
    assert scope["overlay"].shape == (90, 120, 3)  # the CAM lands on the photo at its native size
    assert scope["r"].maps.shape == (1, 2, 32, 32)
