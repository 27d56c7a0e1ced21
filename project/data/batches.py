"""Operations on a batch as a whole: the tensors anywhere in nested tuples, lists and dicts."""

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor


def map_tensors(batch: Any, fn: Callable[[Tensor], Tensor]) -> Any:
    """`batch` with `fn` applied to every tensor in it; other leaves are kept as they are."""
    if isinstance(batch, Tensor):
        return fn(batch)
    if isinstance(batch, list | tuple):
        return type(batch)(map_tensors(item, fn) for item in batch)
    if isinstance(batch, dict):
        return {key: map_tensors(value, fn) for key, value in batch.items()}
    return batch


def move_to_device(batch: Any, device: torch.device) -> Any:
    return map_tensors(batch, lambda tensor: tensor.to(device, non_blocking=True))


def to_channels_last(batch: Any) -> Any:
    """4-D floating-point tensors (image batches) in channels-last memory format."""

    def convert(tensor: Tensor) -> Tensor:
        if tensor.dim() == 4 and tensor.is_floating_point():
            return tensor.contiguous(memory_format=torch.channels_last)
        return tensor

    return map_tensors(batch, convert)


class Normalize:
    """uint8 (C, H, W) image to float: scaled to 0..1, then per channel (x - mean) / std."""

    def __init__(self, mean, std):
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    def __call__(self, image: Tensor) -> Tensor:
        return (image.float() / 255 - self.mean) / self.std
