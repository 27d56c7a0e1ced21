"""The resumable sampler and per-sample seeded augmentation."""

import torch
from torch.utils.data import DataLoader, Dataset

from project.data.sampling import EpochSampler, SeededItems


def test_epoch_order_depends_on_seed_and_epoch_only_and_start_skips_a_prefix():
    sampler = EpochSampler(50, shuffle=True, seed=3)
    sampler.set_epoch(1)
    full = list(sampler)
    assert sorted(index for _, index in full) == list(range(50))
    sampler.set_epoch(2)
    assert list(sampler) != full
    again = EpochSampler(50, shuffle=True, seed=3)
    again.set_epoch(1, start_index=20)
    assert list(again) == full[20:] and len(again) == 30


def test_ranks_get_disjoint_equal_shards_padded_like_distributed_sampler():
    shards = []
    for rank in range(3):
        sampler = EpochSampler(10, shuffle=True, seed=0, rank=rank, world_size=3)
        sampler.set_epoch(0)
        shards.append([index for _, index in sampler])
    assert [len(shard) for shard in shards] == [4, 4, 4]  # ceil(10 / 3), 2 repeated
    assert set().union(*shards) == set(range(10))
    eval_sampler = EpochSampler(10, shuffle=False, seed=0, rank=1, world_size=3, drop_last=True)
    assert [index for _, index in eval_sampler] == [1, 4, 7]


class Noisy(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, index):
        return torch.rand(1) + index  # an "augmentation" drawn from torch's RNG


def test_augmentation_depends_on_the_sample_not_on_the_order_or_the_workers():
    dataset = SeededItems(Noisy(), seed=5)
    forward = {i: dataset[(1, i)] for i in range(8)}
    backward = {i: dataset[(1, i)] for i in reversed(range(8))}
    assert all(torch.equal(forward[i], backward[i]) for i in range(8))
    assert not torch.equal(dataset[(1, 0)], dataset[(2, 0)])  # a new draw each epoch
    state = torch.get_rng_state()
    dataset[(1, 3)]
    assert torch.equal(torch.get_rng_state(), state)  # main-process stream untouched

    sampler = EpochSampler(8, shuffle=True, seed=5)
    sampler.set_epoch(1)
    with_workers = DataLoader(dataset, batch_size=3, sampler=sampler, num_workers=2)
    values = torch.cat(list(with_workers)).flatten()
    order = [index for _, index in sampler]
    assert torch.equal(values, torch.cat([forward[i] for i in order]).flatten())
