"""``torchrun --nproc_per_node=2 -m geocam_gui.cli train ...`` trains with DDP on gloo (CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch.distributed as dist

from geocam_gui.core.checkpoints import load_checkpoint


@pytest.mark.slow
@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed with gloo")
def test_two_cpu_processes_on_gloo(tmp_path):
    from geocam_gui.core.data.demo import generate_demo

    data = generate_demo(tmp_path / "demo", per_class=16, size=32, views_per_place=2, seed=3)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2",
           "-m", "geocam_gui.cli", "train", str(data), "--model", "shallow", "--epochs", "1", "--image-size", "32",
           "--batch-size", "4", "--device", "cpu", "--out", str(out), "--metrics-jsonl", str(tmp_path / "m.jsonl")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Only rank 0 prints and writes: one epoch line, one metrics line.
    assert proc.stdout.count("shallow epoch 1/1") == 1, proc.stdout
    assert "x2 processes" in proc.stdout
    lines = (tmp_path / "m.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["epoch"] == 1
    best = load_checkpoint(out / "shallow" / "best.json")
    assert best.meta["world_size"] == 2
    test = best.meta["metrics"]["test"]
    # Test counts are summed over both ranks: every test image is counted exactly once.
    from geocam_gui.core.data.datasets import open_data

    assert test["n"] == len(open_data(data).split("test"))
    assert (out / "index" / "index.csv").is_file()
