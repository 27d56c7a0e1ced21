"""Where the current epoch stands, as one object with its own state dict.

A checkpoint written mid-epoch (a signal, max_steps, every_n_steps) records how many
batches of the epoch were trained on and their losses and sample counts, so a resumed run
skips exactly those batches and logs the same epoch mean as a run that never stopped.

Each batch's loss stays on the device until the epoch ends. The newest ones are kept one
tensor per batch; every NaN check (each `log_every_n_steps` steps) stacks them into one
tensor, as the check needs them stacked anyway. An epoch so holds tens of tensors, not
one per batch: thousands of small tensors kept alive fragment the allocator, and every
later step's allocations pay for it (benchmarks/overhead.py).
"""

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor


@dataclass
class EpochPosition:
    batch: int = 0  # batches of the current epoch already trained on
    loss_chunks: list[Tensor] = field(default_factory=list)  # 1-D: the checked losses, in order
    new_losses: list[Tensor] = field(default_factory=list)  # each later batch's mean loss
    counts: list[int] = field(default_factory=list)  # each batch's sample count

    @property
    def checked(self) -> int:
        """How many of the epoch's losses were looked at by a NaN check (all finite)."""
        return sum(len(chunk) for chunk in self.loss_chunks)

    def add(self, loss: Tensor, count: int) -> None:
        self.new_losses.append(loss.detach())
        self.counts.append(count)

    def stack_new_losses(self) -> Tensor | None:
        """For the NaN check, which must look at the result: the losses added since the
        last call, as one 1-D tensor now counted as checked (None if there are none). Its
        first value is the loss of batch `checked` (as it was before the call)."""
        if not self.new_losses:
            return None
        stacked = torch.stack(self.new_losses).flatten()  # a loss may be shaped (1,)
        self.loss_chunks.append(stacked)
        self.new_losses = []
        return stacked

    def all_losses(self) -> Tensor:
        """Every batch's loss this epoch, in order, as one 1-D tensor; checked or not."""
        new = [torch.stack(self.new_losses).flatten()] if self.new_losses else []
        return torch.cat(self.loss_chunks + new)

    def reset(self) -> None:
        self.batch, self.loss_chunks, self.new_losses, self.counts = 0, [], [], []

    def totals(self, device: torch.device, trained_from: int) -> Tensor:
        """(loss sum, samples, samples from batch `trained_from` on), float64, on device."""
        weights = torch.tensor(self.counts, dtype=torch.float64, device=device)
        loss_sum = (self.all_losses().double() * weights).sum()
        return torch.stack([loss_sum, weights.sum(), weights[trained_from:].sum()])

    def state_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "losses": self.all_losses().cpu() if self.counts else None,
            "counts": list(self.counts),
        }

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        losses = state["losses"]
        self.batch = state["batch"]
        # A checkpoint never holds a non-finite loss: all of them count as checked.
        self.loss_chunks = [losses.to(device).flatten()] if losses is not None else []
        self.new_losses = []
        self.counts = list(state["counts"])
