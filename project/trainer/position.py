"""Where the current epoch stands, as one object with its own state dict.

A checkpoint written mid-epoch (a signal, max_steps, every_n_steps) records how many
batches of the epoch were trained on and their losses and sample counts, so a resumed run
skips exactly those batches and logs the same epoch mean as a run that never stopped.
"""

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor


@dataclass
class EpochPosition:
    batch: int = 0  # batches of the current epoch already trained on
    losses: list[Tensor] = field(default_factory=list)  # each batch's mean loss (on device)
    counts: list[int] = field(default_factory=list)  # each batch's sample count
    checked: int = 0  # losses already verified finite (nan_policy=stop reads them lazily)

    def add(self, loss: Tensor, count: int) -> None:
        self.losses.append(loss.detach())
        self.counts.append(count)

    def reset(self) -> None:
        self.batch, self.losses, self.counts, self.checked = 0, [], [], 0

    def totals(self, device: torch.device, trained_from: int) -> Tensor:
        """(loss sum, samples, samples from batch `trained_from` on), float64, on device."""
        weights = torch.tensor(self.counts, dtype=torch.float64, device=device)
        loss_sum = (torch.stack(self.losses).double() * weights).sum()
        return torch.stack([loss_sum, weights.sum(), weights[trained_from:].sum()])

    def state_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "losses": torch.stack(self.losses).cpu() if self.losses else None,
            "counts": list(self.counts),
        }

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        losses = state["losses"]
        self.batch = state["batch"]
        self.losses = list(losses.to(device).unbind()) if losses is not None else []
        self.counts = list(state["counts"])
        self.checked = len(self.losses)  # a checkpoint never holds a non-finite loss
