"""BaseTrainer behaviour users rely on, checked against plain PyTorch computations."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from project.checkpoint.policy import CheckpointPolicy
from project.schema import EarlyStoppingConfig, LoggerConfig, TrainerConfig
from project.trainer import ClassificationTrainer

QUIET = LoggerConfig(tensorboard=False, progress_bar=False)


def make_data(
    samples: int = 10, features: int = 6, classes: int = 3, seed: int = 0
) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    return TensorDataset(
        torch.randn(samples, features, generator=generator),
        torch.randint(0, classes, (samples,), generator=generator),
    )


def make_trainer(
    model, lr=0.1, run_dir=None, policy=None, **trainer_options
) -> ClassificationTrainer:
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    return ClassificationTrainer(
        model,
        optimizer,
        trainer_cfg=TrainerConfig(**trainer_options),
        logger_cfg=QUIET,
        device=torch.device("cpu"),
        run_dir=run_dir,
        checkpoint_policy=policy,
    )


def test_validation_metrics_are_exact_per_sample_means_with_an_uneven_last_batch():
    torch.manual_seed(0)
    data = make_data(samples=10)
    model = nn.Linear(6, 3)
    trainer = make_trainer(model)
    metrics = trainer.evaluate(DataLoader(data, batch_size=4), prefix="val")  # batches of 4, 4, 2
    features, targets = data.tensors
    with torch.no_grad():
        logits = model(features)
    assert metrics["val/loss"] == pytest.approx(F.cross_entropy(logits, targets).item(), abs=1e-6)
    assert (
        metrics["val/acc"] == (logits.argmax(1) == targets).sum().item() / 10
    )  # exact, in float64


def test_gradient_accumulation_equals_one_step_on_the_combined_batch():
    torch.manual_seed(0)
    data = make_data(samples=8)
    model = nn.Linear(6, 3)
    reference = copy.deepcopy(model)

    make_trainer(model, accumulate_grad_batches=2, max_epochs=1).fit(DataLoader(data, batch_size=4))

    optimizer = torch.optim.SGD(reference.parameters(), lr=0.1)
    F.cross_entropy(reference(data.tensors[0]), data.tensors[1]).backward()
    optimizer.step()
    for trained, expected in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(trained, expected, rtol=1e-6, atol=1e-7)


def test_gradient_clipping_bounds_the_update():
    torch.manual_seed(0)
    model = nn.Linear(6, 3)
    before = [parameter.detach().clone() for parameter in model.parameters()]
    trainer = make_trainer(model, lr=1.0, gradient_clip_val=1e-3, max_epochs=1)
    trainer.fit(DataLoader(make_data(samples=4), batch_size=4))
    update = torch.cat(
        [(p.detach() - b).flatten() for p, b in zip(model.parameters(), before, strict=True)]
    )
    assert trainer.global_step == 1
    assert update.norm().item() == pytest.approx(1e-3, rel=1e-4)  # lr 1 x the clipped norm


def test_limit_train_batches_counts_optimizer_steps():
    trainer = make_trainer(nn.Linear(6, 3), max_epochs=2, limit_train_batches=3)
    trainer.fit(DataLoader(make_data(samples=40), batch_size=4))
    assert trainer.global_step == 6 and trainer.epoch == 2


def test_early_stopping_stops_after_patience_validations_without_improvement(tmp_path):
    data = make_data(samples=12)
    policy = CheckpointPolicy(tmp_path, monitor="val/acc", mode="max")
    # lr=0: the model never changes, so the first score is never improved on.
    trainer = make_trainer(
        nn.Linear(6, 3),
        lr=0.0,
        policy=policy,
        max_epochs=10,
        early_stopping=EarlyStoppingConfig(patience=2),
    )
    trainer.fit(DataLoader(data, batch_size=4), DataLoader(data, batch_size=4))
    assert trainer.epoch == 3  # the first validation sets the best; two more without improvement
    assert trainer.early_stopping.state_dict() == {"best": policy.best_score, "bad_validations": 2}


def test_without_a_checkpoint_policy_early_stopping_watches_the_validation_loss_going_down():
    torch.manual_seed(0)
    data = make_data(samples=64)
    loader = DataLoader(data, batch_size=64)  # full-batch descent: the loss falls every epoch
    trainer = make_trainer(
        nn.Linear(6, 3), lr=0.1, max_epochs=6, early_stopping=EarlyStoppingConfig(patience=2)
    )
    losses = []
    for _ in range(6):
        trainer._run_epoch(loader, loader)
        losses.append(trainer.last_metrics["val/loss"])
    assert all(later < earlier for earlier, later in zip(losses, losses[1:], strict=False))
    assert trainer.monitor == "val/loss" and trainer.early_stopping.bad_validations == 0


def test_monitor_that_the_task_does_not_log_is_rejected_before_training(tmp_path):
    from project.errors import UserError

    policy = CheckpointPolicy(tmp_path, monitor="val/f1", mode="max")
    trainer = make_trainer(nn.Linear(6, 3), policy=policy)
    with pytest.raises(
        UserError,
        match=r"checkpoint.monitor='val/f1' is not a metric of this task; choose one of: val/loss, val/acc",
    ):
        loader = DataLoader(make_data(), batch_size=4)
        trainer.fit(loader, loader)
    assert trainer.global_step == 0


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_mixed_precision_trains_on_cpu(precision):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 3))
    trainer = make_trainer(model, lr=0.5, precision=precision, max_epochs=20)
    data = make_data(samples=64)
    loader = DataLoader(data, batch_size=16)
    first = trainer.evaluate(loader)["val/loss"]
    trainer.fit(loader)
    assert trainer.evaluate(loader)["val/loss"] < 0.7 * first
    assert (trainer.scaler is not None) == (precision == "16-mixed")
    assert all(parameter.dtype == torch.float32 for parameter in model.parameters())


def test_training_reduces_loss_and_reports_throughput_and_data_wait():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 3))
    trainer = make_trainer(model, lr=0.5, max_epochs=15)
    loader = DataLoader(make_data(samples=64), batch_size=16)
    metrics = trainer.fit(loader)
    assert metrics["train/loss"] < 0.8
    assert metrics["train/samples_per_sec"] > 0
    assert 0 <= metrics["train/data_wait_fraction"] < 1
