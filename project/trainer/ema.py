"""Exponential moving average of the weights (`trainer.ema_decay`, 0 = off).

After every optimizer step: ema = decay * ema + (1 - decay) * weights, for parameters;
buffers (BatchNorm statistics) are copied. Validation and `best.pt` use the averaged
weights, which are usually smoother and a little more accurate than the last step's.
"""

from contextlib import contextmanager

import torch
from torch import Tensor, nn


class WeightEMA:
    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.model = model
        self.parameters = [p.detach().clone() for p in model.parameters()]
        self.buffers = [b.detach().clone() for b in model.buffers()]

    @torch.no_grad()
    def update(self) -> None:
        live = [p.detach() for p in self.model.parameters()]
        # One fused kernel over all tensors instead of a Python loop over layers.
        torch._foreach_lerp_(self.parameters, live, 1.0 - self.decay)
        for average, buffer in zip(self.buffers, self.model.buffers(), strict=True):
            average.copy_(buffer)

    @contextmanager
    @torch.no_grad()
    def swapped_in(self):
        """Run the block with the averaged weights in the model, then put the live ones back."""
        live_parameters = [p.detach().clone() for p in self.model.parameters()]
        live_buffers = [b.detach().clone() for b in self.model.buffers()]
        self._copy_into_model(self.parameters, self.buffers)
        try:
            yield
        finally:
            self._copy_into_model(live_parameters, live_buffers)

    def _copy_into_model(self, parameters: list[Tensor], buffers: list[Tensor]) -> None:
        for target, source in zip(self.model.parameters(), parameters, strict=True):
            target.detach().copy_(source)
        for target, source in zip(self.model.buffers(), buffers, strict=True):
            target.copy_(source)

    def state_dict(self) -> dict[str, Tensor]:
        """The averaged weights under the model's own state-dict names (loadable into it)."""
        names = [name for name, _ in self.model.named_parameters()]
        buffer_names = [name for name, _ in self.model.named_buffers()]
        state = dict(zip(names, self.parameters, strict=True))
        state.update(zip(buffer_names, self.buffers, strict=True))
        return {name: tensor.clone() for name, tensor in state.items()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        for name, tensor in zip(
            [n for n, _ in self.model.named_parameters()], self.parameters, strict=True
        ):
            tensor.copy_(state[name])
        for name, tensor in zip(
            [n for n, _ in self.model.named_buffers()], self.buffers, strict=True
        ):
            tensor.copy_(state[name])
