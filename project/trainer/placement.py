"""Where the model runs and how the step calls it: device, memory format, the DDP or
DataParallel wrapper, and torch.compile."""

from typing import Any

import torch
from torch import nn

from project.distributed import gpu_indices, unwrap, wrap_model


def place_model(
    model: nn.Module, cfg: Any, device: torch.device, strategy: str | None
) -> tuple[nn.Module, nn.Module]:
    """(the bare model on `device`, what the training step calls). `cfg` is a
    TrainerConfig. The bare model is what checkpoints, EMA and evaluation use: its state
    dict has no `module.` or `_orig_mod.` prefix and loads without DDP or torch.compile."""
    module = unwrap(model).to(device)
    if cfg.channels_last:  # convs then run in NHWC kernels: no layout change per layer
        module.to(memory_format=torch.channels_last)
    dp_ids = (
        gpu_indices(cfg.gpus, cfg.devices, torch.cuda.device_count()) if strategy == "dp" else []
    )
    wrapped = wrap_model(module, strategy, device, dp_ids)
    if cfg.compile:  # compiled lazily, on the first step (timed apart by the trainer)
        wrapped = torch.compile(wrapped, mode=cfg.compile_mode, backend=cfg.compile_backend)
    return module, wrapped
