"""``python -m geocam_gui.gpu_check``: one sentence and exit 0 without CUDA; its bookkeeping; and
the CPU rehearsal (``--dry-run-cpu``), whose JSON must follow the same schema as a GPU run's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from geocam_gui import gpu_check
from geocam_gui.gpu_check import STEPS, GpuCheck, StepFailed, dry_plan, schema_problems

ROOT = Path(__file__).resolve().parents[1]


def _cmd(*args):
    return [sys.executable, "-m", "geocam_gui.gpu_check", *map(str, args)]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "QT_QPA_PLATFORM": "offscreen"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the check would run")
def test_without_cuda_it_says_so_in_one_sentence_and_runs_nothing(tmp_path):
    proc = subprocess.run(_cmd("--out", tmp_path / "out"), capture_output=True, text=True, timeout=120, env=_env())
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("No CUDA GPU on this machine")
    assert not (tmp_path / "out").exists()


def test_a_non_empty_out_folder_is_refused(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    assert gpu_check.main(["--dry-run-cpu", "--out", str(tmp_path)]) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_steps_record_failures_and_goals_and_the_run_goes_on(tmp_path):
    chk = GpuCheck(dry_plan(), tmp_path)
    chk.step("demo", lambda left: {"images": 3})
    chk.step("train", lambda left: (_ for _ in ()).throw(StepFailed("shallow: test_acc is None")))
    chk.step("oom", lambda left: 1 / 0)
    steps = chk.report["steps"]
    assert steps["demo"] == {"ok": True, "seconds": steps["demo"]["seconds"], "error": None, "images": 3}
    assert not steps["train"]["ok"] and steps["train"]["error"] == "shallow: test_acc is None"
    assert not steps["oom"]["ok"] and steps["oom"]["error"].startswith("ZeroDivisionError")
    assert "1 / 0" in steps["oom"]["traceback"]
    chk.deadline = 0.0  # the budget is spent: later steps are not run, and say so
    chk.step("gui", lambda left: {"never": True})
    assert steps["gui"]["error"].startswith("not run: the 900 s budget") and "never" not in steps["gui"]
    chk.goal("rehearsal goal", 0.5, 0.9)
    assert chk.report["goals"][-1] == {"name": "rehearsal goal", "value": 0.5, "target": 0.9, "met": None}
    gpu = GpuCheck(gpu_check.gpu_plan(1), tmp_path)
    gpu.goal("low", 0.5, 0.9)
    gpu.goal("high", 12.0, 10.0)
    gpu.goal("missing", None, 10.0)
    assert [g["met"] for g in gpu.report["goals"]] == [False, True, False]


def test_schema_problems_name_what_is_wrong(tmp_path):
    chk = GpuCheck(dry_plan(), tmp_path)
    for name in STEPS:
        chk.step(name, lambda left: {})
    report = {**chk.report, "wall_s": 1.0, "ok": True}
    assert schema_problems(report) == []
    broken = json.loads(json.dumps(report))
    broken["steps"]["gui"] = {"ok": False, "seconds": 1.0, "error": None}
    del broken["steps"]["analyze"]
    broken["goals"].append({"name": "x", "value": 1, "target": 2, "met": "yes"})
    broken["versions"].pop("torch")
    problems = schema_problems(broken)
    assert any("step gui: failed without an error message" in p for p in problems)
    assert any(p.startswith("steps are") for p in problems)
    assert any(p.startswith("goal") for p in problems)
    assert any("torch version" in p for p in problems)


@pytest.mark.slow
def test_dry_run_cpu_runs_every_step_and_writes_the_schema(tmp_path):
    report_path = tmp_path / "report.json"
    proc = subprocess.run(_cmd("--dry-run-cpu", "--out", tmp_path / "work", "--json", report_path),
                          capture_output=True, text=True, timeout=900, env=_env())
    assert report_path.is_file(), proc.stdout + proc.stderr
    report = json.loads(report_path.read_text())
    failed = {n: s.get("error") for n, s in report["steps"].items() if not s["ok"]}
    assert proc.returncode == 0 and not failed, (failed, proc.stdout[-3000:])
    assert schema_problems(report) == []
    assert report["mode"] == "dry-run-cpu" and report["ok"] is True
    assert report["versions"]["torch"] == torch.__version__
    steps = report["steps"]
    assert list(steps) == list(STEPS)
    train = steps["train"]["models"]
    assert set(train) == {"shallow", "vgg11", "resnet18"}
    assert all(0 <= m["test_acc"] <= 1 and m["status"] == "finished" for m in train.values())
    assert train["shallow"]["amp"] and train["shallow"]["channels_last"]
    assert steps["oom"]["batch_size_after"] == steps["oom"]["batch_size_before"] // 2
    assert all(m["max_diff"] <= 1e-4 and m["ratio"] > 0 for m in steps["cam_speed"]["models"].values())
    assert all(m["ratio"] > 0 for m in steps["train_throughput"]["models"].values())
    assert steps["ddp"]["backend"] == "gloo" and steps["ddp"]["world_size"] == 2 and steps["ddp"]["collective_ok"]
    assert sorted(steps["gui"]["trained"]) == ["resnet18", "shallow", "vgg11"]
    assert isinstance(steps["gui"]["worst_stall_ms"], float)  # the figure is recorded; its size is a benchmark's
    assert steps["gui"]["gui_cuda_initialized"] is False  # the window's process never starts CUDA
    for step, key in (("gui", "crashed_first_try"), ("ddp", "collective_failed_first_try")):
        if steps[step][key]:  # a rare failure under load: retried, and said here, not hidden
            import warnings

            warnings.warn(f"the {step} step failed once and passed on its retry: {steps[step][key]}")
    assert len(steps["analyze"]["models"]) == 3
    # goals are listed (accuracy x3, CAM speed x2, throughput x2 in the rehearsal) but not judged
    assert len(report["goals"]) == 7 and {g["met"] for g in report["goals"]} == {None}
    shutil.rmtree(tmp_path / "work")  # a few GB of VGG11 checkpoints
