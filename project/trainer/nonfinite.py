"""A loss that is NaN or infinite: stop with a message that helps, or skip the batch.

Training on after a NaN loss only spreads NaN into every weight; the checkpoint policy
would then save NaN weights as `last.pt`. The check runs before `backward()`, so the
weights and the optimizer state are still those of the last good step.
"""

from pathlib import Path

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
        f"before it reached the weights ({_saved(last_checkpoint)}). {_likely_causes(lr)}; "
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
