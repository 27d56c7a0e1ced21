"""Optimizer parameter groups and learning-rate schedules.

Every schedule factory takes (optimizer, total_steps, steps_per_epoch, ...) so the config
can speak in epochs while the trainer steps the scheduler once per optimizer step.
The exception is ReduceLROnPlateau, which the trainer steps after each validation with the
monitored metric.
"""

import math
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR, ReduceLROnPlateau, StepLR

from project.errors import UserError

NO_DECAY_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.Embedding)


def parameter_groups(model: nn.Module) -> list[dict[str, Any]]:
    """Weight decay on weights of convs and linears only: decaying biases and norm scales
    only pulls them towards zero and usually costs accuracy."""
    decay, no_decay = [], []
    for module in model.modules():
        for name, parameter in module.named_parameters(recurse=False):
            if not parameter.requires_grad:
                continue
            if isinstance(module, NO_DECAY_TYPES) or name.endswith("bias") or parameter.ndim <= 1:
                no_decay.append(parameter)
            else:
                decay.append(parameter)
    groups = [{"params": decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_optimizer(optimizer_cfg: DictConfig, model: nn.Module) -> torch.optim.Optimizer:
    """`optimizer_cfg` is a `_partial_` optimizer; it receives the parameter groups."""
    return instantiate(optimizer_cfg)(parameter_groups(model))


def build_scheduler(
    scheduler_cfg: DictConfig,
    optimizer: torch.optim.Optimizer,
    *,
    steps_per_epoch: int,
    max_epochs: int,
):
    return instantiate(scheduler_cfg)(
        optimizer, total_steps=steps_per_epoch * max_epochs, steps_per_epoch=steps_per_epoch
    )


def cosine_with_warmup(
    optimizer,
    total_steps: int,
    steps_per_epoch: int,
    warmup_epochs: float = 1.0,
    min_lr_ratio: float = 0.0,
) -> LRScheduler:
    """Linear warmup from ~0 to the base LR, then cosine decay to `min_lr_ratio` x base LR."""
    warmup_steps = min(round(warmup_epochs * steps_per_epoch), total_steps - 1)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (
            1 + math.cos(math.pi * min(progress, 1.0))
        )

    return LambdaLR(optimizer, factor)


def step_decay(
    optimizer, total_steps: int, steps_per_epoch: int, step_epochs: int = 3, gamma: float = 0.1
) -> LRScheduler:
    """Multiply the LR by `gamma` every `step_epochs` epochs."""
    return StepLR(optimizer, step_size=step_epochs * steps_per_epoch, gamma=gamma)


def one_cycle(
    optimizer, total_steps: int, steps_per_epoch: int, max_lr: float = 0.2, pct_start: float = 0.25
) -> LRScheduler:
    """Leslie Smith's one-cycle policy; `max_lr` replaces the optimizer's LR as the peak.

    OneCycleLR divides by the length of each phase, so very short runs (debug runs, tiny
    datasets) would crash with a ZeroDivisionError: the warm-up phase is stretched to at
    least 2 steps and the decay phase kept at least 1.
    """
    if total_steps < 3:
        raise UserError(
            f"scheduler=onecycle needs at least 3 optimizer steps, this run has {total_steps}; "
            "use more data or epochs, or scheduler=none"
        )
    pct_start = min(max(pct_start, 2 / total_steps), 1 - 1 / total_steps)
    return OneCycleLR(optimizer, max_lr=max_lr, total_steps=total_steps, pct_start=pct_start)


def reduce_on_plateau(
    optimizer,
    total_steps: int,
    steps_per_epoch: int,
    mode: str = "max",
    factor: float = 0.1,
    patience: int = 2,
) -> ReduceLROnPlateau:
    """Divide the LR when the monitored validation metric stops improving."""
    return ReduceLROnPlateau(optimizer, mode=mode, factor=factor, patience=patience)


def constant(optimizer, total_steps: int, steps_per_epoch: int) -> LRScheduler:
    """No schedule: the optimizer's LR throughout."""
    return LambdaLR(optimizer, lambda step: 1.0)
