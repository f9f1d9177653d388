"""The training panel's progress weights (core.train.cost): FLOPs per image against torch's own
counter, and a run's progress through starts, batches, epochs, resumes and failures."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from geocam_gui.core.models import build_model
from geocam_gui.core.train.config import DEMO_ORDER, TrainConfig, demo_config
from geocam_gui.core.train.cost import RunClock, RunCost, epoch_flops, forward_flops


@pytest.mark.parametrize("name", ["shallow", "vgg11", "resnet18"])
def test_forward_flops_equal_torchs_flop_counter(name):
    """The same count torch's FlopCounterMode makes of the real model (convolutions and linear
    layers), at sizes whose halvings round down (97 px) and for 2 and 3 classes."""
    for classes in (2, 3):
        with torch.device("meta"):  # shapes only: no weights are allocated
            model = build_model(name, classes).eval()
        for size in (32, 64, 97):
            with FlopCounterMode(display=False) as counter, torch.no_grad():
                model(torch.zeros(1, 3, size, size, device="meta"))
            assert forward_flops(name, size, classes) == counter.get_total_flops(), (name, size, classes)
    with pytest.raises(ValueError, match="unknown model"):
        forward_flops("alexnet", 64)


def test_epoch_flops_follow_the_loops_caps():
    cfg = TrainConfig(model="shallow", batch_size=16, image_size=64, max_batches_per_epoch=10, val_limit=50)
    per_image = forward_flops("shallow", 64)
    assert epoch_flops(cfg, 1000, 300) == (3.0 * per_image * 160, float(per_image) * 50)
    cfg.max_batches_per_epoch, cfg.val_limit = None, None
    assert epoch_flops(cfg, 1000, 300) == (3.0 * per_image * 1000, float(per_image) * 300)


def test_the_first_runs_progress_weighs_each_model_by_its_flops():
    """The first demo run's shallow net has 18 of its 30 epochs; by FLOPs it is about a quarter of
    the run (29 % of the time on an AVX2 CPU, 2026-12-02), so the bar and the time left follow."""
    configs = [demo_config(m, "cpu") for m in DEMO_ORDER]
    cost = RunCost(configs, {"train": 2880, "val": 960, "test": 960})
    assert cost.fraction() == 0.0 and cost.eta(10.0) is None
    done = []
    for epoch in range(1, 19):
        cost.started("shallow", 0) if epoch == 1 else None
        cost.batch("shallow", epoch, 60, 120)
        done.append(cost.fraction())
        cost.epoch_done("shallow", epoch)
        done.append(cost.fraction())
    cost.finished("shallow")
    done.append(cost.fraction())
    assert done == sorted(done) and 0.2 < done[-1] < 0.3
    assert cost.eta(100.0) == pytest.approx(100.0 * (1 - done[-1]) / done[-1])
    cost.started("resnet18", 0)
    cost.finished("resnet18")
    cost.finished("vgg11")
    assert cost.fraction() == 1.0 and cost.eta(300.0) == 0.0
    cost.batch("alexnet", 1, 1, 1)  # a model not in the queue changes nothing
    assert cost.fraction() == 1.0


def test_a_resumed_run_counts_only_its_own_epochs_and_a_failure_drops_the_rest():
    a = TrainConfig(model="shallow", epochs=10, image_size=32)
    b = TrainConfig(model="resnet18", epochs=4, image_size=32)
    splits = {"train": 100, "val": 20, "test": 20}
    cost = RunCost([a, b], splits)
    cost.started("shallow", 5)  # resumed after epoch 5: epochs 6-10 are this run's work
    cost.epoch_done("shallow", 5 + 5)
    cost.finished("shallow")
    train_a, val_a = epoch_flops(a, 100, 20)
    test_a = forward_flops("shallow", 32) * 20
    total_b = sum(epoch_flops(b, 100, 20)) * 4 + forward_flops("resnet18", 32) * 20
    shallow_share = (5 * (train_a + val_a) + test_a) / (5 * (train_a + val_a) + test_a + total_b)
    assert cost.fraction() == pytest.approx(shallow_share)
    cost.started("resnet18", 0)
    cost.batch("resnet18", 1, 1, 2)
    assert shallow_share < cost.fraction() < 1.0
    cost.finished("resnet18", ok=False)  # failed: nothing more to wait for
    assert cost.fraction() == 1.0


def test_the_run_clock_leaves_pauses_out_of_the_running_time():
    t = [100.0]
    clock = RunClock(now=lambda: t[0])
    t[0] = 160.0
    assert clock.running() == clock.wall() == 60.0
    clock.pause()
    t[0] = 760.0  # ten minutes paused
    clock.pause()  # a second pause report changes nothing
    assert clock.running() == 60.0 and clock.wall() == 660.0
    clock.resume()
    clock.resume()
    t[0] = 820.0
    assert clock.running() == 120.0 and clock.wall() == 720.0
    # a run half done after 120 s of work says 120 s left, not the 12 min the wall clock would
    run = RunCost([TrainConfig(model="shallow", epochs=2)], {"train": 100, "val": 0, "test": 0})
    run.epoch_done("shallow", 1)
    assert run.fraction() == 0.5
    assert run.eta(clock.running()) == 120.0 and run.eta(clock.wall()) == 720.0
