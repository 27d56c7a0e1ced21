"""Model summary: parameters, trainable parameters and multiply-adds, logged at the start
of training and used for the README's Models table."""

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class ModelSummary:
    name: str
    parameters: int
    trainable: int
    multiply_adds: int | None  # per sample; None when not measured (non-image models)
    input_shape: tuple[int, ...] | None

    def __str__(self) -> str:
        text = f"{self.name}: {self.parameters:,} parameters ({self.trainable:,} trainable)"
        if self.multiply_adds is not None:
            shape = "x".join(str(size) for size in self.input_shape)
            text += f", {self.multiply_adds / 1e6:,.1f}M multiply-adds per {shape} input"
        return text


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(all, trainable) parameters; shared parameters count once."""
    parameters = list(model.parameters())
    return (
        sum(p.numel() for p in parameters),
        sum(p.numel() for p in parameters if p.requires_grad),
    )


@torch.no_grad()
def count_multiply_adds(model: nn.Module, example: Tensor) -> int:
    """Multiply-adds per sample, counted by `torch.utils.flop_counter.FlopCounterMode` while
    `example` (a batch) runs through the model: every operation PyTorch has a formula for
    (convolutions, transposed ones, matrix products, attention), whatever module runs it.
    A multiply-add is 2 FLOPs, the convention of the MobileNet and ResNet papers."""
    was_training = model.training
    try:
        model.eval()  # no BN statistics update from the probe
        with FlopCounterMode(display=False) as counter:
            model(example)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2 // example.shape[0]


def summarize(model: nn.Module, example: Tensor | None = None) -> ModelSummary:
    """Counts for `model`; multiply-adds too when given an example image batch (N, C, H, W)."""
    parameters, trainable = count_parameters(model)
    is_image = example is not None and example.dim() == 4 and example.is_floating_point()
    return ModelSummary(
        name=type(model).__name__,
        parameters=parameters,
        trainable=trainable,
        multiply_adds=count_multiply_adds(model, example) if is_image else None,
        input_shape=tuple(example.shape[1:]) if is_image else None,
    )
