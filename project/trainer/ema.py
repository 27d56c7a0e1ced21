"""Exponential moving average of the weights (`trainer.ema_decay`, 0 = off).

After every optimizer step: ema = d * ema + (1 - d) * weights, for parameters; buffers
(BatchNorm statistics) are copied. Validation and `best.pt` use the averaged weights,
which are usually smoother and a little more accurate than the last step's.

d warms up: d = min(decay, (1 + n) / (10 + n)) after n earlier updates (timm's and
TensorFlow's warm-up), so on a short run `ema_decay=0.999` does not validate mostly the
initial weights: the average has a memory of about 1 / (1 - d) steps, and a 0.999 average
needs thousands of steps before the random start fades. n is the optimizer step count,
so a resumed run continues the same schedule.
"""

from contextlib import contextmanager

import torch
from torch import Tensor, nn


class WeightEMA:
    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.model = model
        self.names = [name for name, _ in model.named_parameters()]
        self.names += [name for name, _ in model.named_buffers()]
        self.parameters = [p.detach().clone() for p in model.parameters()]
        self.buffers = [b.detach().clone() for b in model.buffers()]

    def _live(self) -> list[Tensor]:
        """The model's parameters then buffers, in the order of `names`."""
        return [p.detach() for p in self.model.parameters()] + list(self.model.buffers())

    def _averages(self) -> list[Tensor]:
        return self.parameters + self.buffers

    def decay_at(self, updates_before: int) -> float:
        return min(self.decay, (1 + updates_before) / (10 + updates_before))

    @torch.no_grad()
    def update(self, updates_before: int) -> None:
        """One update after `updates_before` earlier ones (the optimizer steps before this)."""
        live = [p.detach() for p in self.model.parameters()]
        # One fused kernel over all tensors instead of a Python loop over layers.
        torch._foreach_lerp_(self.parameters, live, 1.0 - self.decay_at(updates_before))
        for average, buffer in zip(self.buffers, self.model.buffers(), strict=True):
            average.copy_(buffer)

    @contextmanager
    @torch.no_grad()
    def swapped_in(self):
        """Run the block with the averaged weights in the model, then put the live ones back."""
        live = self._live()
        saved = [tensor.clone() for tensor in live]
        torch._foreach_copy_(live, self._averages())
        try:
            yield
        finally:
            torch._foreach_copy_(live, saved)

    def state_dict(self) -> dict[str, Tensor]:
        """The averaged weights under the model's own state-dict names (loadable into it)."""
        return {
            name: tensor.clone() for name, tensor in zip(self.names, self._averages(), strict=True)
        }

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        for name, tensor in zip(self.names, self._averages(), strict=True):
            tensor.copy_(state[name])
