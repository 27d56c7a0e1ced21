"""One pass of a task's `validation_step` over a loader, summed exactly over DDP ranks.

Each step returns metric *sums* and a sample count; the pass adds them up in float64 and
the task's `reduce_metrics` turns the totals into per-sample means (or IoU, ...), so the
result does not depend on batch sizes. Under DDP each rank evaluates its own shard (no
sample twice, see EpochSampler) and the sums are added over ranks: every rank gets the
single-process values.
"""

from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from project.data.batches import move_to_device, to_channels_last
from project.distributed import broadcast_buffers, sum_totals_over_ranks
from project.errors import UserError
from project.trainer.progress import progress_bar

if TYPE_CHECKING:
    from project.trainer.base import BaseTrainer


def num_batches(loader: DataLoader, limit: int | None) -> int:
    """Batches an epoch runs: the whole loader, or `limit` of them (`limit_*_batches`)."""
    return len(loader) if limit is None else min(limit, len(loader))


@torch.no_grad()
def validate(
    trainer: "BaseTrainer", loader: DataLoader, prefix: str, limit: int | None
) -> dict[str, float]:
    trainer.model.eval()
    if trainer.ddp:
        broadcast_buffers(trainer.module)  # every rank validates what rank 0 saves
    # The bare model under DDP: the wrapper's forward would sync buffers across ranks,
    # which hold shards of different lengths.
    wrapped, trainer.model = trainer.model, (trainer.module if trainer.ddp else trainer.model)
    try:
        totals, samples = _sum_over_batches(trainer, loader, prefix, num_batches(loader, limit))
    finally:
        trainer.model = wrapped
    process = trainer.process
    if process.distributed:
        if not totals:  # the ranks would disagree on what to add up
            raise UserError(
                f"a rank got no validation batch: the split is smaller than the {process.world_size} processes"
            )
        totals, samples = sum_totals_over_ranks(totals, samples, trainer.device)
    if samples == 0:
        raise UserError(
            f"the {prefix} split produced no batches; check its size and loader.batch_size"
        )
    metrics = trainer.reduce_metrics(totals, samples)
    return {f"{prefix}/{name}": value for name, value in metrics.items()}


def _sum_over_batches(
    trainer: "BaseTrainer", loader: DataLoader, prefix: str, batches: int
) -> tuple[dict[str, Tensor], int]:
    bar = progress_bar(batches, prefix, trainer.show_progress)
    totals: dict[str, Tensor] = {}
    samples = 0
    for batch_index, batch in enumerate(loader):
        if batch_index == batches:
            break
        batch = move_to_device(batch, trainer.device)
        if trainer.channels_last:
            batch = to_channels_last(batch)
        with trainer.precision.autocast():
            sums, count = trainer.validation_step(batch)
        for name, value in sums.items():
            value = value.detach().double()
            totals[name] = totals[name] + value if name in totals else value
        samples += count
        bar.update()
        if trainer.show_progress and batch_index % 10 == 0:
            shown = trainer.reduce_metrics(totals, samples)
            bar.set_postfix({name: f"{value:.4f}" for name, value in shown.items()})
    bar.close()
    return totals, samples
