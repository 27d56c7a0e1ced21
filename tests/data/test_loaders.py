"""The loader factory's switches, the background prefetch thread, and the data-wait warning."""

import logging
import threading
import time

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from project.data.background import BackgroundPrefetchLoader, background_batches
from project.data.loaders import build_loader
from project.errors import UserError
from project.schema import LoaderConfig, LoggerConfig, TrainerConfig, validate_config
from project.trainer import ClassificationTrainer
from tests.conftest import compose_config

CPU = torch.device("cpu")


def numbered(samples: int = 40) -> TensorDataset:
    return TensorDataset(torch.arange(samples).float().view(-1, 1), torch.arange(samples) % 3)


def batches(loader) -> list[torch.Tensor]:
    return [inputs for inputs, _ in loader]


def test_background_prefetch_yields_the_same_batches_in_the_same_order():
    plain = build_loader(numbered(), LoaderConfig(batch_size=8), train=True, seed=3, device=CPU)
    prefetching = build_loader(
        numbered(),
        LoaderConfig(batch_size=8, background_prefetch=2),
        train=True,
        seed=3,
        device=CPU,
    )
    assert isinstance(prefetching, BackgroundPrefetchLoader) and len(prefetching) == len(plain) == 5
    for epoch in range(2):  # the trainer sets the epoch on the sampler; order follows it
        plain.sampler.set_epoch(epoch)
        prefetching.sampler.set_epoch(epoch)
        assert [b.tolist() for b in batches(prefetching)] == [b.tolist() for b in batches(plain)]
    # Validation loaders never get the thread: they are read once per epoch, in order.
    val = build_loader(
        numbered(), LoaderConfig(background_prefetch=2), train=False, seed=3, device=CPU
    )
    assert type(val) is DataLoader


class FailsAt(Dataset):
    def __init__(self, index: int):
        self.index = index

    def __len__(self) -> int:
        return 20

    def __getitem__(self, index: int):
        if index == self.index:
            raise UserError(f"image {index}: cannot be decoded")
        return torch.zeros(1), 0


def test_an_error_in_the_background_thread_reaches_the_training_loop():
    loader = BackgroundPrefetchLoader(FailsAt(13), batch_size=4, background_prefetch=2)
    seen = []
    with pytest.raises(UserError, match="image 13: cannot be decoded"):
        for inputs, _ in loader:
            seen.append(len(inputs))
    assert seen == [4, 4, 4]  # the batches before the bad one, then the error (no hang)


def test_breaking_off_an_epoch_stops_the_thread_and_frees_its_batches():
    before = threading.active_count()
    loader = BackgroundPrefetchLoader(numbered(400), batch_size=4, background_prefetch=4)
    for _ in range(3):  # three epochs each cut short, as limit_train_batches does
        for step, _ in enumerate(loader):
            if step == 2:
                break
    # A plain BackgroundGenerator would leave one thread per epoch blocked on a full queue.
    assert threading.active_count() == before

    thread_batches = background_batches(iter(range(100)), max_prefetch=3)
    assert next(thread_batches) == 0
    thread_batches.close()  # what dropping the generator does
    assert threading.active_count() == before


def test_background_prefetch_is_bounded_by_the_schema():
    cfg = compose_config("train", ["loader.background_prefetch=17"])
    with pytest.raises(UserError, match=r"loader.background_prefetch=17 .*16"):
        validate_config(cfg)


def test_pin_memory_follows_the_device_unless_set_and_workers_options_pass_through():
    data = numbered()
    on_cuda = build_loader(data, LoaderConfig(), train=True, seed=0, device=torch.device("cuda"))
    on_cpu = build_loader(data, LoaderConfig(), train=True, seed=0, device=CPU)
    forced = build_loader(
        data, LoaderConfig(pin_memory=False), train=True, seed=0, device=torch.device("cuda")
    )
    assert (on_cuda.pin_memory, on_cpu.pin_memory, forced.pin_memory) == (True, False, False)
    workers = build_loader(
        data, LoaderConfig(num_workers=2, prefetch_factor=4, persistent_workers=True, batch_size=16),
        train=False, seed=0, device=CPU,
    )  # fmt: skip
    assert (workers.num_workers, workers.prefetch_factor, workers.persistent_workers) == (
        2,
        4,
        True,
    )
    assert workers.batch_size == 32  # eval batches default to twice the training batch


class Slow(Dataset):
    """Items that take `seconds` to load, like files on a slow disk."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def __len__(self) -> int:
        # 16 batches an epoch: one stall of the machine (a busy CI core) while a batch is
        # fetched is then a few percent of the epoch, not the quarter it was with 4.
        return 128

    def __getitem__(self, index: int):
        time.sleep(self.seconds)
        return torch.ones(4), index % 2


class SlowStep(nn.Linear):
    """A step that takes 20 ms, like a GPU busy with a real model."""

    def forward(self, inputs):
        time.sleep(0.02)
        return super().forward(inputs)


@pytest.mark.parametrize("seconds", [0.0, 0.004])
def test_a_data_starved_run_warns_once_with_advice(caplog, seconds):
    model = SlowStep(4, 2)
    trainer = ClassificationTrainer(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        trainer_cfg=TrainerConfig(max_epochs=3),
        logger_cfg=LoggerConfig(tensorboard=False, progress_bar=False),
        device=CPU,
    )
    loader = build_loader(Slow(seconds), LoaderConfig(batch_size=8), train=True, seed=0, device=CPU)
    with caplog.at_level(logging.INFO):
        trainer.fit(loader)
    warnings = [record.message for record in caplog.records if "waited for data" in record.message]
    epochs = [record.message for record in caplog.records if record.message.startswith("epoch ")]
    assert len(epochs) == 3 and all("train/data_wait_fraction=" in line for line in epochs)
    if seconds:  # 32 ms of loading per batch against a 20 ms step
        assert len(warnings) == 1
        assert "over 20%" in warnings[0] and "set loader.num_workers (0 now" in warnings[0]
    else:
        assert warnings == []
