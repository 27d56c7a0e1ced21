"""A loss that is NaN or infinite: stop with a message that helps, or skip the batch.

Training on after a NaN loss only spreads NaN into every weight; the checkpoint policy
would then save NaN weights as `last.pt`. The check runs before `backward()`, so the
weights and the optimizer state are still those of the last good step.
"""

from pathlib import Path

from project.errors import UserError


class NonFiniteLoss(UserError):
    """The run stopped on a NaN or infinite loss (`trainer.nan_policy=stop`)."""


def non_finite_loss_message(
    value: float, step: int, epoch: int, batch: int, last_checkpoint: Path | None, lr: float
) -> str:
    saved = (
        f"last good checkpoint: {last_checkpoint}" if last_checkpoint else "no checkpoint saved yet"
    )
    return (
        f"the loss is {value} at step {step} (epoch {epoch}, batch {batch}); training stopped "
        f"before it reached the weights ({saved}). Likely causes: a learning rate too high "
        f"(lr is {lr:.3g}), float16 overflow (try trainer.precision=bf16-mixed or "
        "trainer.gradient_clip_val), NaN or Inf in the input data, or a log or division by "
        "zero in the loss. trainer.detect_anomaly=true names the operation that first made a "
        "NaN; trainer.nan_policy=skip_batch skips such batches instead"
    )
