"""Look inside a model: activations and gradients of named layers, and input gradients.

    with record_activations(model, ["features.0", "head"]) as activations:
        model(images)
    activations["head"]               # the layer's output, detached

    with record_gradients(model, ["features.3"]) as gradients:
        loss_fn(model(images), labels).backward()
    gradients["features.3"]           # d loss / d (that layer's output)

    saliency = input_gradient(model, images, labels)   # d loss / d images, no .grad touched

Forward hooks see each named layer's output; a gradient is caught by `register_hook` on
that output tensor, which autograd calls with the gradient during backward (a module's
`register_full_backward_hook` would also work, but fails on in-place ops that follow
the layer). Where only a derivative is needed, `torch.autograd.grad` computes it without
accumulating into any parameter's `.grad`. Names are those of `model.named_modules()`.
"""

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from project.errors import UserError


def _modules(model: nn.Module, names: Sequence[str]) -> dict[str, nn.Module]:
    available = dict(model.named_modules())
    unknown = [name for name in names if name not in available]
    if unknown:
        shown = ", ".join(name for name in list(available)[1:12])
        raise UserError(
            f"no layer named {', '.join(unknown)} in {type(model).__name__}; layers include: {shown}, ..."
        )
    return {name: available[name] for name in names}


@contextmanager
def _forward_hooks(model: nn.Module, names: Sequence[str], hook_for: Callable) -> Iterator[None]:
    """`hook_for(name)` as a forward hook on each named layer, removed when the block ends."""
    handles = [
        module.register_forward_hook(hook_for(name))
        for name, module in _modules(model, names).items()
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def record_activations(model: nn.Module, names: Sequence[str]) -> Iterator[dict[str, Tensor]]:
    """Outputs of the named layers during the block (the last call's, detached)."""
    captured: dict[str, Tensor] = {}

    def keep(name: str) -> Callable:
        def hook(module, inputs, output):
            captured[name] = output.detach()

        return hook

    with _forward_hooks(model, names, keep):
        yield captured


@contextmanager
def record_gradients(model: nn.Module, names: Sequence[str]) -> Iterator[dict[str, Tensor]]:
    """Gradients of the loss with respect to the named layers' outputs, filled in by the
    block's backward()."""
    captured: dict[str, Tensor] = {}

    def watch(name: str) -> Callable:
        def hook(module, inputs, output):
            if output.requires_grad:
                output.register_hook(lambda grad: captured.__setitem__(name, grad.detach()))

        return hook

    with _forward_hooks(model, names, watch):
        yield captured


def input_gradient(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
) -> Tensor:
    """d loss / d inputs (a saliency map), same shape as `inputs`. Parameters' `.grad`
    stay as they were: torch.autograd.grad returns the one derivative asked for."""
    inputs = inputs.detach().requires_grad_(True)
    loss = loss_fn(model(inputs), targets)
    (gradient,) = torch.autograd.grad(loss, inputs)
    return gradient
