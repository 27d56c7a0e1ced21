"""Model summary: parameters, trainable parameters and multiply-adds, logged at the start
of training and used for the README's Models table."""

from dataclasses import dataclass

import torch
from torch import Tensor, nn


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


def _layer_multiply_adds(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> int:
    # The convention of the MobileNet and ResNet papers: conv and fully connected layers
    # only (BN, activations and pooling are a rounding error), bias adds not counted.
    if isinstance(module, nn.ConvTranspose2d):
        kernel = module.kernel_size[0] * module.kernel_size[1]
        return inputs[0].numel() * (module.out_channels // module.groups) * kernel
    if isinstance(module, nn.Conv2d):
        kernel = module.kernel_size[0] * module.kernel_size[1]
        return output.numel() * (module.in_channels // module.groups) * kernel
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    return 0


@torch.no_grad()
def count_multiply_adds(model: nn.Module, example: Tensor) -> int:
    """Multiply-adds per sample, measured by running `example` (a batch) through the model
    with forward hooks; so it is right for any architecture that uses these layers."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        total += _layer_multiply_adds(module, inputs, output)

    handles = [
        module.register_forward_hook(hook)
        for module in model.modules()
        if isinstance(module, nn.Conv2d | nn.ConvTranspose2d | nn.Linear)
    ]
    was_training = model.training
    try:
        model.eval()  # no BN statistics update from the probe
        model(example)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return total // example.shape[0]


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
