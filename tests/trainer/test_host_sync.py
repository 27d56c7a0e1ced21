"""No host sync in the steady-state step: the CPU can queue GPU work ahead.

A host read of a device tensor (`.item()`, `bool()`, `.tolist()`, `.cpu()`) makes the CPU
wait for the GPU. The trainer reads values only at its sync points: every
`log_every_n_steps` steps (loss check and step logging), before saves, and at epoch ends
(epoch loss, validation). On the CPU the reads are counted by patching those methods;
on CUDA the same run goes under `torch.cuda.set_sync_debug_mode("error")`.
"""

import contextlib
import math
import os
import sys

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from project.schema import LoggerConfig, TrainerConfig
from project.trainer import ClassificationTrainer, base, nonfinite
from project.trainer.position import EpochPosition
from tests.trainer.test_trainer import make_data

HOST_READS = ("item", "__bool__", "tolist", "cpu")
SYNC_POINTS = (
    "check_losses_finite", "check_weights_finite", "evaluate", "on_validation_end",
    "training_state",
)  # fmt: skip
# Helpers base.py calls by name: the step's logging and the epoch's training metrics.
SYNC_FUNCTIONS = ("log_step", "epoch_metrics")
LOG_EVERY = 4
DATALOADER = os.path.join("torch", "utils", "data", "")


def trainer_on(device: torch.device, trainer_class=ClassificationTrainer, **options):
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    return trainer_class(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
        trainer_cfg=TrainerConfig(max_epochs=2, **options),
        logger_cfg=LoggerConfig(tensorboard=False, progress_bar=False, log_every_n_steps=LOG_EVERY),
        device=device,
    )


@contextlib.contextmanager
def inside_sync_points(trainer, on_enter, on_exit):
    """Call `on_enter`/`on_exit` around each of the trainer's sync points."""

    def wrap(function):
        def wrapped(*args, **kwargs):
            on_enter()
            try:
                return function(*args, **kwargs)
            finally:
                on_exit()

        return wrapped

    for name in SYNC_POINTS:
        setattr(trainer, name, wrap(getattr(trainer, name)))
    originals = {name: getattr(base, name) for name in SYNC_FUNCTIONS}
    for name, function in originals.items():
        setattr(base, name, wrap(function))
    try:
        yield
    finally:
        for name, function in originals.items():
            setattr(base, name, function)


def host_reads_outside_sync_points(trainer, monkeypatch) -> tuple[list, int]:
    """Train two epochs; return (reads outside the sync points with their step, reads inside)."""
    depth, outside, inside = [0], [], [0]
    for name in HOST_READS:
        original = getattr(torch.Tensor, name)

        def counting(tensor, *args, _original=original, _name=name, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if depth[0]:
                inside[0] += 1
            elif DATALOADER not in caller:  # its base seed: a CPU scalar, never the device's
                outside.append((_name, trainer.global_step))
            return _original(tensor, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    loader = DataLoader(make_data(samples=48), batch_size=4)  # 12 steps an epoch
    enter = lambda: depth.__setitem__(0, depth[0] + 1)  # noqa: E731
    leave = lambda: depth.__setitem__(0, depth[0] - 1)  # noqa: E731
    with inside_sync_points(trainer, enter, leave):
        trainer.fit(loader, loader)
    monkeypatch.undo()
    return outside, inside[0]


@pytest.mark.parametrize(
    "options", [{}, {"gradient_clip_val": 1.0}, {"ema_decay": 0.9}, {"accumulate_grad_batches": 2}]
)
def test_no_host_read_between_sync_points(monkeypatch, options):
    trainer = trainer_on(torch.device("cpu"), **options)
    outside, inside = host_reads_outside_sync_points(trainer, monkeypatch)
    assert outside == []
    assert inside > 0 and trainer.global_step == (
        24 if not options.get("accumulate_grad_batches") else 12
    )


class ReadsTheLossEveryStep(ClassificationTrainer):
    def training_step(self, batch):
        loss, count = super().training_step(batch)
        loss.item()  # what the check must catch
        return loss, count


def test_the_count_catches_a_per_step_read(monkeypatch):
    trainer = trainer_on(torch.device("cpu"), trainer_class=ReadsTheLossEveryStep)
    outside, _ = host_reads_outside_sync_points(trainer, monkeypatch)
    assert [name for name, _ in outside] == ["item"] * 24
    assert {step for _, step in outside} == set(range(24))  # once before every step


def test_skip_batch_keeps_its_per_step_check(monkeypatch):
    # Documented: nan_policy=skip_batch looks at every loss before backward().
    trainer = trainer_on(torch.device("cpu"), nan_policy="skip_batch")
    outside, _ = host_reads_outside_sync_points(trainer, monkeypatch)
    assert [name for name, _ in outside] == ["__bool__"] * 24


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_no_device_sync_between_sync_points_on_cuda():
    trainer = trainer_on(torch.device("cuda"))
    torch.cuda.set_sync_debug_mode("error")  # any sync raises, except inside sync points
    try:
        with inside_sync_points(
            trainer,
            lambda: torch.cuda.set_sync_debug_mode(0),
            lambda: torch.cuda.set_sync_debug_mode("error"),
        ):
            data = make_data(samples=48)
            trainer.fit(DataLoader(data, batch_size=4), DataLoader(data, batch_size=4))
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert trainer.global_step == 24


def test_the_loss_check_reads_only_the_losses_added_since_the_last_check():
    position = EpochPosition()
    for value in (1.0, 2.0, float("nan"), 3.0, float("inf")):
        position.add(torch.tensor(value).view(1), count=4)  # a loss may be shaped (1,)
        if value == 2.0:
            assert position.stack_new_losses().tolist() == [1.0, 2.0]
    assert position.checked == 2
    new = position.stack_new_losses().tolist()  # the batches from batch `checked` on
    assert nonfinite.first_non_finite(new) == 0 and math.isinf(new[2])
    assert position.checked == 5 and position.stack_new_losses() is None
    assert nonfinite.first_non_finite([1.0, 2.0]) is None
    # The epoch's losses, checked or not, stay whole and in order.
    position.add(torch.tensor(4.0).view(1), count=4)
    values = position.all_losses().tolist()
    assert values[:2] == [1.0, 2.0] and math.isnan(values[2]) and values[3:] == [3.0, math.inf, 4.0]


def test_the_epoch_loss_is_the_per_sample_mean_whatever_the_loss_shape_and_chunking():
    for shape in ((), (1,)):
        position = EpochPosition()
        for value, count in ((1.0, 4), (2.0, 4), (3.0, 2)):
            position.add(torch.tensor(value).view(shape), count)
            if value == 1.0:
                position.stack_new_losses()
        loss_sum, samples, resumed = position.totals(torch.device("cpu"), trained_from=2).tolist()
        assert (loss_sum, samples, resumed) == (18.0, 10.0, 2.0)
