"""The optimiser of a training run: SGD with momentum or AdamW in torch's fused kernels, and the
layout repair a resumed fused optimiser needs."""

from __future__ import annotations

import torch

from geocam_gui.core.train.config import TrainConfig


def make_optimizer(cfg: TrainConfig, params: list, dev: torch.device) -> torch.optim.Optimizer:
    """SGD with momentum or AdamW, as ``cfg`` says; torch's fused kernels on CPUs and CUDA (the
    same update in one pass over the parameters: VGG11's AdamW step on 2 CPU cores takes 43 ms
    instead of 490, a third of its training step; benchmarks/RESULTS.md)."""
    fused = {"fused": True} if dev.type in ("cpu", "cuda") else {}
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, **fused)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **fused)


def match_param_layout(opt: torch.optim.Optimizer) -> None:
    """Give each loaded optimiser tensor its parameter's memory layout. Saved moments are
    contiguous (NCHW) while a channels_last model's weights are not, and torch's fused kernels
    walk both as raw memory: a resumed run would pair each weight with another weight's moments
    (the resume-exactness test caught it)."""
    for group in opt.param_groups:
        for p in group["params"]:
            state = opt.state.get(p, {})
            for key, value in state.items():
                if torch.is_tensor(value) and value.shape == p.shape and value.stride() != p.stride():
                    state[key] = torch.empty_like(p, dtype=value.dtype).copy_(value)
