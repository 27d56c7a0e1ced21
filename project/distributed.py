"""Devices and process ranks."""

import os

import torch

from project.errors import UserError


def select_device(gpus: int) -> torch.device:
    """`trainer.gpus`: 0 for the CPU, 1 for one CUDA device."""
    if gpus == 0:
        return torch.device("cpu")
    available = torch.cuda.device_count()
    if gpus > available:
        raise UserError(
            f"trainer.gpus={gpus} but this machine has {available} CUDA device(s); use trainer.gpus=0 for the CPU"
        )
    if gpus > 1:
        raise UserError(
            f"trainer.gpus={gpus}: multi-GPU training is not implemented yet; use trainer.gpus=1"
        )
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))


def rank() -> int:
    """This process's global rank (0 when not distributed)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return int(os.environ.get("RANK", 0))


def is_main_process() -> bool:
    """Rank 0 alone writes logs, TensorBoard events and checkpoints."""
    return rank() == 0
