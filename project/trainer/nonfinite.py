"""A loss or weights that are NaN or infinite: stop with a message that helps, or skip
the batch.

Training on after a NaN loss only spreads NaN into every weight. With
`trainer.nan_policy=stop` the losses are looked at every `logger.log_every_n_steps` steps,
before every save and at each epoch end (a per-step look would make the CPU wait for the
GPU at every step); the message names the step of the first bad loss, and weights that
went non-finite are never saved, so the last checkpoint stays the last good state. With
`skip_batch` each loss is looked at before `backward()` and a bad batch is skipped.
"""

from pathlib import Path

import torch
from torch import Tensor, nn

from project.errors import UserError


class NonFiniteLoss(UserError):
    """The run stopped on a NaN or infinite loss (`trainer.nan_policy=stop`)."""


def _saved(last_checkpoint: Path | None) -> str:
    return (
        f"last good checkpoint: {last_checkpoint}" if last_checkpoint else "no checkpoint saved yet"
    )


def _likely_causes(lr: float) -> str:
    return (
        f"Likely causes: a learning rate too high (lr is {lr:.3g}), float16 overflow (try "
        "trainer.precision=bf16-mixed or trainer.gradient_clip_val), NaN or Inf in the input "
        "data, or a log or division by zero in the loss. trainer.detect_anomaly=true names the "
        "operation that first made a NaN"
    )


def non_finite_loss_message(
    value: float, step: int, epoch: int, batch: int, last_checkpoint: Path | None, lr: float
) -> str:
    return (
        f"the loss is {value} at step {step} (epoch {epoch}, batch {batch}); training stopped "
        f"and saved nothing from that step on ({_saved(last_checkpoint)}). {_likely_causes(lr)}; "
        "trainer.nan_policy=skip_batch skips such batches instead"
    )


def non_finite_weights_message(
    names: list[str], step: int, epoch: int, last_checkpoint: Path | None, lr: float
) -> str:
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return (
        f"the weights are NaN or infinite after step {step} (epoch {epoch}: {shown}); training "
        f"stopped without saving them ({_saved(last_checkpoint)}). {_likely_causes(lr)}"
    )


def first_non_finite(losses: list[Tensor], start: int) -> int | None:
    """Index of the first NaN or infinite loss in `losses[start:]`; one host read."""
    if len(losses) <= start:
        return None
    finite = torch.isfinite(torch.stack(losses[start:]).float())
    if bool(finite.all()):
        return None
    return start + int((~finite).flatten().nonzero()[0])


def non_finite_weights(module: nn.Module) -> list[str]:
    """Names of the floating-point parameters and buffers holding a NaN or infinity."""
    tensors = {**dict(module.named_parameters()), **dict(module.named_buffers())}
    tensors = {name: t for name, t in tensors.items() if t.is_floating_point()}
    if not tensors:
        return []
    finite = torch.stack([t.detach().isfinite().all() for t in tensors.values()]).tolist()
    return [name for name, ok in zip(tensors, finite, strict=True) if not ok]
