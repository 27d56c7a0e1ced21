"""Schedules and parameter groups."""

import io

import pytest
import torch
from torch import nn

from project.optim import build_optimizer, build_scheduler, cosine_with_warmup, parameter_groups
from tests.conftest import CONFIG_DIR, compose_config

SCHEDULERS = sorted(path.stem for path in (CONFIG_DIR / "scheduler").glob("*.yaml"))


def lrs(scheduler, optimizer, steps):
    values = []
    for _ in range(steps):
        values.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return values


def test_cosine_warms_up_linearly_then_decays_to_the_floor():
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = cosine_with_warmup(
        optimizer, total_steps=20, steps_per_epoch=5, warmup_epochs=1, min_lr_ratio=0.1
    )
    values = lrs(scheduler, optimizer, 21)
    assert values[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert all(later <= earlier for earlier, later in zip(values[5:], values[6:], strict=False))
    assert values[20] == pytest.approx(0.1)


@pytest.mark.parametrize("name", SCHEDULERS)
def test_every_scheduler_config_builds_steps_and_saves_with_weights_only(name):
    cfg = compose_config("train", [f"scheduler={name}"])
    model = nn.Linear(4, 2)
    optimizer = build_optimizer(cfg.optimizer, model)
    scheduler = build_scheduler(cfg.scheduler, optimizer, steps_per_epoch=10, max_epochs=3)
    for _ in range(10):
        optimizer.step()
        if name == "plateau":
            scheduler.step(0.5)
        else:
            scheduler.step()
    buffer = io.BytesIO()
    torch.save(scheduler.state_dict(), buffer)
    buffer.seek(0)
    restored = build_scheduler(
        cfg.scheduler, build_optimizer(cfg.optimizer, model), steps_per_epoch=10, max_epochs=3
    )
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert restored.state_dict()["last_epoch"] == scheduler.state_dict()["last_epoch"]


def test_weight_decay_skips_biases_and_norm_layers():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    decay, no_decay = parameter_groups(model)
    assert {id(p) for p in decay["params"]} == {id(model[0].weight), id(model[3].weight)}
    assert {id(p) for p in no_decay["params"]} == {
        id(model[0].bias),
        id(model[1].weight),
        id(model[1].bias),
        id(model[3].bias),
    }
    assert no_decay["weight_decay"] == 0.0
    optimizer = build_optimizer(compose_config("train").optimizer, model)
    assert [group["weight_decay"] for group in optimizer.param_groups] == [5e-4, 0.0]
