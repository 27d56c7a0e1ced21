"""Sampling that makes a run resumable to the exact step.

`EpochSampler` draws each epoch's order from (seed, epoch) alone, shards it across DDP
ranks like DistributedSampler, and can start part-way into an epoch: a resumed run skips
the batches it already trained on without loading their data.

`SeededItems` gives every item its own random stream, seeded from (seed, epoch, index), so
an augmentation depends on which sample in which epoch, not on which loader worker
happened to draw it or what that worker drew before. Without it, a run resumed mid-epoch
(or with another `loader.num_workers`) would see different augmentations.
"""

import math
import random
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, get_worker_info


def mix_seed(*parts: int) -> int:
    """One 63-bit seed from several integers (a simple, stable hash; not cryptographic)."""
    value = 0x9E3779B97F4A7C15
    for part in parts:
        value = (value ^ (part + 0x9E3779B97F4A7C15 + (value << 6) + (value >> 2))) & (2**63 - 1)
    return value


class EpochSampler(Sampler):
    """Yields (epoch, index) pairs: a seeded permutation per epoch (or the plain order),
    this rank's shard of it, starting after `start_index` items of the shard.

    Training shards have equal lengths (DDP needs every rank to take the same number of
    steps), so, like DistributedSampler, they repeat a few items or drop them (`drop_last`).
    With `even=False` (evaluation) they do not: each item is in exactly one shard, and the
    metrics summed over ranks are exactly those of one process.
    """

    def __init__(
        self,
        length: int,
        shuffle: bool,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        even: bool = True,
    ):
        self.length, self.shuffle, self.seed = length, shuffle, seed
        self.rank, self.world_size = rank, world_size
        if not even:
            self.per_rank = len(range(rank, length, world_size))
        elif drop_last:
            self.per_rank = length // world_size
        else:
            self.per_rank = math.ceil(length / world_size)
        self.epoch = 0
        self.start_index = 0

    def set_epoch(self, epoch: int, start_index: int = 0) -> None:
        """Epoch `epoch`, skipping the first `start_index` items of this rank's shard."""
        self.epoch, self.start_index = epoch, start_index

    def order(self) -> list[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch))
            indices = torch.randperm(self.length, generator=generator).tolist()
        else:
            indices = list(range(self.length))
        total = self.per_rank * self.world_size
        if total > len(indices):  # even shards: repeat the first items
            indices += indices[: total - len(indices)]
        return indices[self.rank :: self.world_size][: self.per_rank]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for index in self.order()[self.start_index :]:
            yield self.epoch, index

    def __len__(self) -> int:
        return self.per_rank - self.start_index


class SeededItems(Dataset):
    """Wraps a dataset whose items take (epoch, index) keys from `EpochSampler`; seeds
    torch's RNG per item (transforms.v2 draws from it) from (seed, epoch, index)."""

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed = dataset, seed
        self.collate_fn = getattr(dataset, "collate_fn", None)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        # The CPU generator directly: torch.manual_seed also seeds every accelerator
        # backend and costs ~250 us, this ~2 us.
        generator = torch.default_generator
        item_seed = mix_seed(self.seed, epoch, index)
        if get_worker_info() is not None:  # a worker process: its RNGs serve only items
            generator.manual_seed(item_seed)
            # NumPy- and random-based augmentations (albumentations, custom code) too;
            # ~12 us per item, paid in the workers.
            np.random.seed(item_seed % 2**32)
            random.seed(item_seed)
            return self.dataset[index]
        # In the main process the same RNG also drives dropout: leave its stream untouched.
        # NumPy and random are not reseeded here (saving and restoring their states costs
        # ~230 us per item): with loader.num_workers=0 only torch-based augmentations are
        # seeded per sample, which is what torchvision.transforms.v2 uses.
        saved = generator.get_state()
        generator.manual_seed(item_seed)
        try:
            return self.dataset[index]
        finally:
            generator.set_state(saved)

    def __getattr__(self, name: str):
        # Attributes of the wrapped dataset (classes, num_classes, ...) stay reachable.
        # Not dunders: a wrapped Subset's __getitems__ would take our (epoch, index) keys.
        if name == "dataset" or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.dataset, name)
