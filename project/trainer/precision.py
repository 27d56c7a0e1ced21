"""Mixed precision and the optimizer step in one object: autocast, fp16 loss scaling,
unscaling before clipping or norm logging, clipping, the step itself."""

import contextlib
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

AUTOCAST_DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


class Precision:
    """`trainer.precision`: "32", "bf16-mixed" or "16-mixed" (float16 with a GradScaler:
    its gradients underflow without loss scaling; bf16 has fp32's exponent range)."""

    def __init__(self, precision: str, device_type: str):
        dtype = AUTOCAST_DTYPES.get(str(precision))
        # One reusable nullcontext for fp32: entering a disabled autocast still costs
        # microseconds a step.
        no_autocast = contextlib.nullcontext()
        self.autocast = (
            (lambda: torch.autocast(device_type, dtype=dtype)) if dtype else (lambda: no_autocast)
        )
        self.scaler = torch.amp.GradScaler(device_type) if precision == "16-mixed" else None

    def backward(self, loss: Tensor, accumulate: int = 1) -> None:
        """Gradients of `loss`, divided over an accumulation window of `accumulate` batches."""
        scaled = loss / accumulate if accumulate > 1 else loss
        (self.scaler.scale(scaled) if self.scaler else scaled).backward()

    def step(
        self,
        optimizer: torch.optim.Optimizer,
        parameters: Iterable[Tensor],
        clip: float = 0.0,
        inspect_gradients: Callable[[], None] | None = None,
    ) -> None:
        """Clip to a total norm of `clip` (0 = off) and step. `inspect_gradients` sees the
        true gradients first (unscaled under fp16): gradient-norm logging."""
        if self.scaler and (clip > 0 or inspect_gradients):
            self.scaler.unscale_(optimizer)
        if inspect_gradients:
            inspect_gradients()
        if clip > 0:
            nn.utils.clip_grad_norm_(parameters, clip)
        if self.scaler:
            self.scaler.step(optimizer)  # skips the step when the gradients overflowed
            self.scaler.update()
        else:
            optimizer.step()

    def state_dict(self) -> dict[str, Any] | None:
        return self.scaler.state_dict() if self.scaler else None

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if self.scaler is not None and state is not None:
            self.scaler.load_state_dict(state)
