"""A loss or weights that are NaN or infinite: stop with a message that helps, or skip
the batch.

Training on after a NaN loss only spreads NaN into every weight. With
`trainer.nan_policy=stop` the losses are looked at every `logger.log_every_n_steps` steps,
before every save and at each epoch end (a per-step look would make the CPU wait for the
GPU at every step); the message names the step of the first bad loss, and weights that
went non-finite are never saved, so the last checkpoint stays the last good state. With
`skip_batch` each loss is looked at before `backward()` and a bad batch is skipped.
"""

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from project.distributed import any_rank
from project.errors import UserError

if TYPE_CHECKING:
    from project.trainer.base import BaseTrainer

log = logging.getLogger(__name__)


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


def first_non_finite(values: list[float]) -> int | None:
    """Index of the first NaN or infinite value; the caller read them in one host read."""
    return next((i for i, value in enumerate(values) if not math.isfinite(value)), None)


def non_finite_weights(module: nn.Module) -> list[str]:
    """Names of the floating-point parameters and buffers holding a NaN or infinity."""
    tensors = {**dict(module.named_parameters()), **dict(module.named_buffers())}
    tensors = {name: t for name, t in tensors.items() if t.is_floating_point()}
    if not tensors:
        return []
    finite = torch.stack([t.detach().isfinite().all() for t in tensors.values()]).tolist()
    return [name for name, ok in zip(tensors, finite, strict=True) if not ok]


# The trainer's three checks. They read the trainer (its position, step, optimizer and
# checkpoint policy) for the message; BaseTrainer's methods of the same names call them.


def loss_is_finite(trainer: "BaseTrainer", loss: Tensor, batch_index: int) -> bool:
    """`nan_policy=skip_batch`: False to skip a batch whose loss is NaN or infinite,
    before `backward()` touches anything. One host sync per batch; under DDP the ranks
    agree, or one would skip the gradient all-reduce the others wait in."""
    finite = bool(torch.isfinite(loss.detach()).all())
    if trainer.process.distributed:
        finite = not any_rank(not finite, trainer.device)
    if not finite:
        trainer.skipped_batches += 1
        log.warning(
            "skipped batch %d of epoch %d: non-finite loss (%d skipped so far)",
            batch_index + 1, trainer.epoch + 1, trainer.skipped_batches,
        )  # fmt: skip
    return finite


def check_losses(trainer: "BaseTrainer", agree: bool) -> None:
    """`nan_policy=stop`: the losses trained on since the last check must be finite, or
    the run stops naming the step where the first one was not. `agree`: under DDP, all
    ranks call this together and stop together."""
    position = trainer.position
    start = position.checked
    new_losses = position.stack_new_losses()
    values = [] if new_losses is None else new_losses.tolist()
    bad = first_non_finite(values)
    flagged = bad is not None
    if agree and trainer.process.distributed:
        flagged = any_rank(flagged, trainer.device)
    if not flagged:
        return
    if bad is None:
        raise NonFiniteLoss("another rank's loss was NaN or infinite; training stopped")
    raise NonFiniteLoss(
        non_finite_loss_message(
            values[bad],
            step=trainer.epoch_first_step + (start + bad) // trainer.accumulate_grad_batches + 1,
            epoch=trainer.epoch + 1,
            batch=start + bad + 1,
            last_checkpoint=_last_good_checkpoint(trainer),
            lr=trainer.optimizer.param_groups[0]["lr"],
        )
    )


def check_weights(trainer: "BaseTrainer") -> None:
    """Stop, one line, if a weight is NaN or infinite: such weights are never saved.
    (`skip_batch` skips non-finite losses, but a finite loss can still take a step that
    overflows the weights.)"""
    names = non_finite_weights(trainer.module)
    if names:
        optimizer = trainer.optimizer
        raise NonFiniteLoss(
            non_finite_weights_message(
                names,
                step=trainer.global_step,
                epoch=trainer.epoch + 1,
                last_checkpoint=_last_good_checkpoint(trainer),
                lr=optimizer.param_groups[0]["lr"] if optimizer else 0.0,
            )
        )


def _last_good_checkpoint(trainer: "BaseTrainer") -> Path | None:
    policy = trainer.checkpoint_policy
    last = policy.last_path if policy else None
    return last if last is not None and last.is_file() else None
