"""Splits and label checks shared by the datasets read from disk.

A dataset without a validation split takes one from its training data: a permutation
drawn from the dataset's own seed (never the run seed or the rank), so the split is the
same on every run, every rank and every machine, and a sweep over `seed` trains on the
same images.
"""

import torch
from torch import Tensor

from project.errors import UserError


def seeded_split(count: int, val_fraction: float, seed: int, split: str) -> Tensor:
    """Indices of `split` ("train" or "val") in a seeded `val_fraction` split of `count` items."""
    if not 0 < val_fraction < 1:
        raise UserError(
            f"dataset.val_fraction={val_fraction}: this dataset has no validation split of its own, so it needs a fraction of the training data between 0 and 1 (e.g. 0.1)"
        )
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    val_count = max(1, round(count * val_fraction))
    if val_count >= count:
        raise UserError(
            f"dataset.val_fraction={val_fraction} leaves no training data out of {count} items"
        )
    chosen = order[:val_count] if split == "val" else order[val_count:]
    return chosen.sort().values  # file order: lazy reads stay close to directory order


def check_labels(labels: Tensor, num_classes: int, describe) -> None:
    """Every label in 0..num_classes-1, or an error that `describe(position)` locates."""
    bad = ((labels < 0) | (labels >= num_classes)).nonzero()
    if len(bad):
        position = int(bad[0])
        raise UserError(
            f"{describe(position)}: label {int(labels[position])} is outside 0..{num_classes - 1} (dataset.num_classes={num_classes})"
        )
