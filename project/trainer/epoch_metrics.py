"""An epoch's training metrics: the loss over every sample of every rank, throughput,
the share of time spent waiting for data, the learning rate."""

from typing import TYPE_CHECKING

from torch.utils.data import DataLoader

from project.distributed import all_reduce_sum
from project.trainer.nonfinite import NonFiniteLoss

if TYPE_CHECKING:
    from project.trainer.base import BaseTrainer


def epoch_metrics(
    trainer: "BaseTrainer",
    loader: DataLoader,
    start: int,
    data_wait: float,
    elapsed: float,
    compile_seconds: float,
    compile_samples: int,
) -> dict[str, float]:
    """`start`: the batch the epoch was resumed at (throughput counts what this run
    trained); `elapsed` and `data_wait` leave out the step that compiled the model."""
    position = trainer.position
    if not position.counts:  # every batch skipped for a non-finite loss
        raise NonFiniteLoss(
            f"every batch of epoch {trainer.epoch + 1} had a NaN or infinite loss (trainer.nan_policy=skip_batch); lower optimizer.lr or check the data"
        )
    trainer.check_losses_finite(agree=True)
    # Summed over ranks: the epoch's loss is the mean over every sample of every rank.
    totals = all_reduce_sum(position.totals(trainer.device, trained_from=start))
    loss_sum, samples, trained = totals.tolist()
    position.reset()
    # The share of the epoch this process spent waiting for batches (ranks differ
    # little, as they step together; rank 0's is logged).
    data_wait_fraction = data_wait / elapsed
    if trainer.process.is_main:
        trainer.data_wait.check(data_wait_fraction, loader)
    metrics = {
        "train/loss": loss_sum / samples,
        "train/samples_per_sec": (trained - compile_samples) / elapsed,
        "train/data_wait_fraction": data_wait_fraction,
        "lr": trainer.optimizer.param_groups[0]["lr"],
    }
    if compile_seconds:
        metrics["train/compile_seconds"] = compile_seconds
    if trainer.skip_non_finite:
        metrics["train/skipped_batches"] = float(trainer.skipped_batches)
    return metrics
