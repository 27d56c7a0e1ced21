"""Build datasets from `cfg.dataset` and DataLoaders from `cfg.loader`.

A dataset config is a `_target_` class called once per split as `cls(split=..., transform=...)`
plus keys the builder reads itself: `transforms` holds the train and eval transforms
(torchvision.transforms.v2), which it instantiates and hands over, and `task` names the
trainer that fits the dataset's targets (the top-level `task` follows it).
A dataset may define `collate_fn` (for example to pad variable-length sequences).

Every loader comes from `build_loader`: per-process batch size, workers, pinned memory,
an `EpochSampler` (DistributedSampler's sharding, plus exact mid-epoch resume) whose
epoch the trainer sets, per-item seeding (sampling.py), and optionally a background
prefetch thread (background.py).
"""

import random
import signal
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Dataset, Subset

from project.data.background import BackgroundPrefetchLoader
from project.data.in_memory import InMemoryLoader, batch_augmentation, in_memory_tensors
from project.data.sampling import EpochSampler, SeededItems
from project.distributed import SINGLE_PROCESS, ProcessContext, main_process_first
from project.errors import UserError

BUILDER_KEYS = ("transforms", "task")  # read by the builder, not passed to the dataset


def build_dataset(dataset_cfg: DictConfig, split: str) -> Dataset:
    transforms = dataset_cfg.get("transforms") or {}
    transform_cfg = transforms.get("train" if split == "train" else "eval")
    transform = instantiate(transform_cfg) if transform_cfg else None
    body = OmegaConf.masked_copy(
        dataset_cfg, [key for key in dataset_cfg if key not in BUILDER_KEYS]
    )
    try:
        dataset = instantiate(body, split=split, transform=transform, _convert_="all")
    except Exception as error:  # Hydra wraps the dataset's own error; show its message only
        cause = error.__cause__ or error
        raise UserError(
            f"dataset ({dataset_cfg.get('_target_')}, split {split}): {cause}"
        ) from None
    if len(dataset) == 0:
        where = f" under dataset.root={dataset_cfg.root}" if "root" in dataset_cfg else ""
        raise UserError(
            f"dataset split {split!r} is empty ({dataset_cfg.get('_target_')}){where}; it needs at least one sample"
        )
    return dataset


def build_datasets(
    dataset_cfg: DictConfig, splits: Iterable[str], process: ProcessContext = SINGLE_PROCESS
) -> dict[str, Dataset]:
    """Rank 0 first, the other ranks once it is done: a download or a file a dataset
    prepares happens once, not once per rank into the same folder at the same time."""
    with main_process_first(process):
        return {split: build_dataset(dataset_cfg, split) for split in splits}


class FirstItems(Subset):
    """The first items of a dataset, which keeps its attributes (classes, collate_fn, ...)."""

    def __init__(self, dataset: Dataset, count: int):
        super().__init__(dataset, range(min(count, len(dataset))))

    def __getattr__(self, name: str):
        if name in ("dataset", "indices"):
            raise AttributeError(name)
        return getattr(self.dataset, name)


def overfit_datasets(train: Dataset, batches: int, batch_size: int) -> dict[str, Dataset]:
    """`trainer.overfit_batches`: train and validate on the same first batches of train."""
    subset = FirstItems(train, batches * batch_size)
    return {"train": subset, "val": subset}


def init_worker(worker_id: int) -> None:
    # PyTorch seeds `torch` and `random` in each worker from the loader's generator, but not
    # NumPy: without this, every worker would draw the same NumPy augmentations.
    # (SeededItems then reseeds all three per sample, see sampling.py.)
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    # Ctrl-C reaches the whole process group. The main process finishes its step and
    # saves (project/trainer/preemption.py); a worker dying of it first would break that.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def build_loader(
    dataset: Dataset,
    loader_cfg: Any,
    *,
    train: bool,
    seed: int,
    device: torch.device,
    process: ProcessContext = SINGLE_PROCESS,
) -> DataLoader:
    """`loader.batch_size` is per process; under DDP each rank loads its shard."""
    workers = loader_cfg.num_workers
    pin_memory = device.type == "cuda" if loader_cfg.pin_memory is None else loader_cfg.pin_memory
    batch_size = (
        loader_cfg.batch_size
        if train
        else (loader_cfg.eval_batch_size or 2 * loader_cfg.batch_size)
    )
    # Order and augmentation follow (seed, epoch, index) alone: see project/data/sampling.py.
    # Training shards are even (every rank takes the same steps); evaluation shards hold
    # each item once, so metrics summed over ranks are exact.
    sampler = EpochSampler(
        len(dataset),
        shuffle=train,
        seed=seed,
        rank=process.rank,
        world_size=process.world_size,
        even=train,
    )
    drop_last = train and loader_cfg.drop_last and len(sampler) > batch_size
    in_memory = loader_cfg.in_memory
    if in_memory is not False:
        batched = in_memory_loader(dataset, train, batch_size, sampler, drop_last, seed, device)
        if not isinstance(batched, str):
            return batched
        if in_memory:
            raise UserError(
                f"loader.in_memory=true cannot batch this dataset: {batched}; set "
                "loader.in_memory=null to use the DataLoader where it cannot"
            )
    loader_class, extra = DataLoader, {}
    if train and loader_cfg.background_prefetch:
        loader_class = BackgroundPrefetchLoader
        extra = {"background_prefetch": loader_cfg.background_prefetch}
    return loader_class(
        SeededItems(dataset, seed),
        batch_size=batch_size,
        sampler=sampler,
        collate_fn=getattr(dataset, "collate_fn", None),
        drop_last=drop_last,
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=loader_cfg.persistent_workers and workers > 0,
        prefetch_factor=loader_cfg.prefetch_factor if workers > 0 else None,
        worker_init_fn=init_worker if workers > 0 else None,
        generator=torch.Generator().manual_seed(seed),  # base seeds of the worker processes
        **extra,
    )


def in_memory_loader(dataset, train, batch_size, sampler, drop_last, seed, device):
    """An InMemoryLoader for `dataset`, or why it cannot have one."""
    tensors = in_memory_tensors(dataset)
    if isinstance(tensors, str):
        return tensors
    transform = getattr(dataset, "transform", None)
    if not train and transform is not None:
        return "its evaluation transform runs per sample"
    augmentation = batch_augmentation(transform)
    if isinstance(augmentation, str):
        return f"its transform {augmentation}"
    images, targets = tensors
    return InMemoryLoader(
        dataset, images, targets, batch_size=batch_size, sampler=sampler, drop_last=drop_last,
        augmentation=augmentation if train else None, seed=seed, device=device,
    )  # fmt: skip


def build_loaders(
    datasets: dict[str, Dataset],
    loader_cfg: Any,
    *,
    seed: int,
    device: torch.device,
    process: ProcessContext = SINGLE_PROCESS,
) -> dict[str, DataLoader]:
    loaders = {
        split: build_loader(
            dataset,
            loader_cfg,
            train=split == "train",
            seed=seed,
            device=device,
            process=process,
        )
        for split, dataset in datasets.items()
    }
    if "train" in loaders and len(loaders["train"]) == 0:
        raise UserError(
            "the train split yields no batch; lower loader.batch_size or set loader.drop_last=false"
        )
    return loaders
