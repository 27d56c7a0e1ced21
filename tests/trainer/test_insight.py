"""Gradient norms, anomaly detection, the non-finite-loss policy, the profiler, and probes."""

import copy
import logging

import pytest
import torch
import torch.nn.functional as F
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from project.checkpoint.policy import CheckpointPolicy
from project.errors import UserError
from project.models.cnn import SmallCNN
from project.probes import input_gradient, record_activations, record_gradients
from project.schema import LoggerConfig, TrainerConfig
from project.trainer import ClassificationTrainer
from project.trainer.nonfinite import NonFiniteLoss


def data(samples: int = 32, nan_at: int | None = None) -> TensorDataset:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(samples, 6, generator=generator)
    if nan_at is not None:
        inputs[nan_at, 0] = float("nan")
    return TensorDataset(inputs, torch.randint(0, 3, (samples,), generator=generator))


def trainer_for(model, run_dir=None, tensorboard=False, policy=None, **options):
    return ClassificationTrainer(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        trainer_cfg=TrainerConfig(**options),
        logger_cfg=LoggerConfig(tensorboard=tensorboard, progress_bar=False, log_every_n_steps=1),
        device=torch.device("cpu"),
        run_dir=run_dir,
        checkpoint_policy=policy,
    )


def test_gradient_norms_are_logged_before_clipping(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3))
    expected_model = copy.deepcopy(model)
    inputs, targets = data(8)[:]
    F.cross_entropy(expected_model(inputs), targets).backward()
    expected = {name: p.grad.norm().item() for name, p in expected_model.named_parameters()}
    total = torch.cat([p.grad.flatten() for p in expected_model.parameters()]).norm().item()

    trainer = trainer_for(
        model, run_dir=tmp_path, tensorboard=True, max_epochs=1, log_grad_norm=1,
        gradient_clip_val=1e-3,  # clipping would shrink the norms if they were taken after it
    )  # fmt: skip
    trainer.fit(DataLoader(data(8), batch_size=8))
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    logged = {tag: events.Scalars(tag)[0] for tag in events.Tags()["scalars"] if "grad_norm" in tag}
    assert logged["train/grad_norm/total"].step == 1
    assert logged["train/grad_norm/total"].value == pytest.approx(total, rel=1e-5)
    for name, value in expected.items():
        assert logged[f"train/grad_norm/{name}"].value == pytest.approx(value, rel=1e-5)


def test_a_nan_loss_stops_the_run_names_its_step_and_never_reaches_a_checkpoint(tmp_path):
    # nan_policy=stop looks at the losses lazily (no host sync per step): the NaN step's
    # update reaches the live weights, but never a file.
    torch.manual_seed(0)
    model = nn.Linear(6, 3)
    policy = CheckpointPolicy(tmp_path, monitor="train/loss", mode="min", every_n_steps=1)
    trainer = trainer_for(model, run_dir=tmp_path, policy=policy, max_epochs=1)
    loader = DataLoader(data(32, nan_at=19), batch_size=8)  # in the 3rd batch
    with pytest.raises(NonFiniteLoss) as stop:
        trainer.fit(loader)
    message = str(stop.value)
    assert isinstance(stop.value, UserError)  # one line and exit code 2 from the entry points
    assert "the loss is nan at step 3 (epoch 1, batch 3)" in message
    assert f"last good checkpoint: {tmp_path / 'checkpoints' / 'last.pt'}" in message
    assert "trainer.detect_anomaly=true" in message and "learning rate" in message
    saved = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert saved["global_step"] == 2  # the last good step's file, not overwritten since
    assert all(torch.isfinite(tensor).all() for tensor in saved["model"].values())


def test_skip_batch_trains_on_without_the_bad_batch():
    torch.manual_seed(0)
    model = nn.Linear(6, 3)
    trainer = trainer_for(model, max_epochs=2, nan_policy="skip_batch")
    metrics = trainer.fit(DataLoader(data(32, nan_at=19), batch_size=8))
    assert metrics["train/skipped_batches"] == 2.0  # once per epoch
    assert torch.isfinite(model.weight).all() and metrics["train/loss"] == metrics["train/loss"]
    assert trainer.global_step == 8  # the schedule still counts the skipped step


class NanInBackward(nn.Module):
    """A finite loss whose backward produces NaN: sqrt'(0) = inf, times 0 in MulBackward."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(6, 3)

    def forward(self, inputs):
        logits = self.linear(inputs)
        return logits + torch.sqrt(logits[:, :1] * 0)


def test_detect_anomaly_names_the_operation_that_made_a_nan():
    trainer = trainer_for(NanInBackward(), max_epochs=1, detect_anomaly=True)
    with pytest.raises(RuntimeError, match=r"Function '\w+Backward0' returned nan values"):
        trainer.fit(DataLoader(data(8), batch_size=8))
    assert not torch.is_anomaly_enabled()  # switched off again after fit


def test_profile_writes_a_trace_and_logs_the_top_operators(tmp_path, caplog):
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    trainer = trainer_for(model, run_dir=tmp_path, max_epochs=1, profile=True)
    with caplog.at_level(logging.INFO):
        trainer.fit(
            DataLoader(data(64), batch_size=4)
        )  # 16 steps: 5 skipped, 2 warm-up, 5 recorded
    traces = list((tmp_path / "profiler").glob("*.pt.trace.json"))
    assert len(traces) == 1 and '"traceEvents"' in traces[0].read_text()
    [report] = [
        r.message for r in caplog.records if r.message.startswith("profile of 5 training steps")
    ]
    assert "aten::addmm" in report and "Self CPU" in report


def test_probes_capture_activations_gradients_and_input_gradients():
    torch.manual_seed(0)
    model = SmallCNN(num_classes=5, width=8).eval()
    images, labels = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    with record_activations(model, ["head"]) as activations:
        logits = model(images)
    assert torch.equal(activations["head"], logits.detach())

    with record_gradients(model, ["head"]) as gradients:
        logits = model(images)
        F.cross_entropy(logits, labels).backward()
    expected = (logits.softmax(1) - F.one_hot(labels, 5)) / 4  # d mean CE / d logits
    assert torch.allclose(gradients["head"], expected.detach(), atol=1e-6)

    model.zero_grad(set_to_none=True)
    saliency = input_gradient(model, images, labels)
    assert saliency.shape == images.shape and saliency.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())  # only the asked-for derivative
    step = 1e-3 * saliency.sign()
    with torch.no_grad():
        uphill = F.cross_entropy(model(images + step), labels)
        assert uphill > F.cross_entropy(model(images), labels)  # it points up the loss
    with (
        pytest.raises(UserError, match="no layer named nope in SmallCNN"),
        record_activations(model, ["nope"]),
    ):
        pass
