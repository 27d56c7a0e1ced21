"""Full training state: signals mid-epoch, EMA weights, RNG states, fine-tuning weights."""

import os
import random
import signal

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from project.checkpoint.format import inference_weights
from project.checkpoint.policy import CheckpointPolicy
from project.errors import Preempted, UserError
from project.models.build import build_model
from project.seeding import restore_rng_state, rng_state
from project.trainer import ClassificationTrainer
from project.trainer.ema import WeightEMA
from tests.conftest import compose_config
from tests.trainer.test_trainer import make_data, make_trainer


class SignalsAtStep(ClassificationTrainer):
    """Sends itself a signal in the middle of a chosen step, as a scheduler would."""

    signal_at_batch = 3
    signum = signal.SIGUSR1

    def training_step(self, batch):
        if self.global_step == self.signal_at_batch:
            os.kill(os.getpid(), self.signum)
        return super().training_step(batch)


@pytest.mark.parametrize("signum", [signal.SIGUSR1, signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_finishes_the_step_and_saves_a_resumable_checkpoint(tmp_path, signum):
    torch.manual_seed(0)
    policy = CheckpointPolicy(tmp_path, monitor="val/acc", save_last=False)
    trainer = make_trainer(nn.Linear(6, 3), policy=policy, max_epochs=2)
    trainer.__class__ = SignalsAtStep
    trainer.signum = signum
    loader = DataLoader(make_data(samples=40), batch_size=4)
    with pytest.raises(Preempted) as stop:
        trainer.fit(loader, loader)
    assert stop.value.signal_name == signal.Signals(signum).name
    state = torch.load(policy.last_path, weights_only=True)  # written although save_last=false
    # The step during which the signal came was finished: 4 steps done, batch 4 of 10.
    assert state["global_step"] == 4 and state["position"]["batch"] == 4
    assert len(state["position"]["losses"]) == 4 and state["position"]["counts"] == [4] * 4
    assert signal.getsignal(signum) in (signal.default_int_handler, signal.SIG_DFL)


def test_ema_warms_up_so_a_short_run_does_not_average_its_random_start():
    model = nn.Linear(2, 1, bias=False)
    nn.init.zeros_(model.weight)
    ema = WeightEMA(model, decay=0.999)
    assert [ema.decay_at(n) for n in (0, 1, 90, 10_000)] == pytest.approx(
        [0.1, 2 / 11, 0.91, 0.999]
    )
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(updates_before=0)  # d = 0.1: mostly the new weights
    assert ema.state_dict()["weight"].flatten().tolist() == pytest.approx([0.9, 0.9])


def test_ema_follows_the_formula_and_is_what_validation_and_best_use(tmp_path):
    model = nn.Linear(2, 1, bias=False)
    nn.init.zeros_(model.weight)
    ema = WeightEMA(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(updates_before=100)  # past the warm-up: d = min(0.9, 101/110) = 0.9
    ema.update(updates_before=101)
    assert ema.state_dict()["weight"].flatten().tolist() == pytest.approx([0.19, 0.19])  # 1 - 0.9^2
    with ema.swapped_in():
        assert model.weight.flatten().tolist() == pytest.approx([0.19, 0.19])
    assert model.weight.tolist() == [[1.0, 1.0]]  # live weights back

    torch.manual_seed(0)
    policy = CheckpointPolicy(tmp_path, monitor="val/acc")
    trainer = make_trainer(nn.Linear(6, 3), policy=policy, max_epochs=2, ema_decay=0.5)
    loader = DataLoader(make_data(samples=40), batch_size=4)
    trainer.fit(loader, loader)
    best = torch.load(policy.best_path, weights_only=True)
    assert best["inference_weights"] == "ema"
    assert not torch.equal(best["ema"]["weight"], best["model"]["weight"])
    assert inference_weights(best) is best["ema"]
    # The validation score in the checkpoint is the EMA weights' score.
    with trainer.ema.swapped_in():
        rescored = trainer.evaluate(loader)["val/acc"]
    last = torch.load(policy.last_path, weights_only=True)
    assert last["metrics"]["val/acc"] == rescored


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    torch.save(rng_state(), tmp_path / "rng.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def checkpoint_of(model: nn.Module, path) -> str:
    torch.save({"format_version": 2, "config": {}, "model": model.state_dict()}, path)
    return str(path)


def test_pretrained_weights_load_strictly_or_report_what_does_not_fit(tmp_path):
    source = build_model(compose_config(overrides=["model=cnn"]).model)
    path = checkpoint_of(source, tmp_path / "source.pt")
    same = build_model(compose_config(overrides=[f"+model.pretrained={path}"]).model)
    assert all(torch.equal(p, source.state_dict()[k]) for k, p in same.state_dict().items())

    # A different head (7 classes instead of 5): strict refuses with the mismatch named ...
    other_head = compose_config(overrides=[f"model.pretrained={path}", "dataset.num_classes=3"])
    with pytest.raises(UserError) as error:
        build_model(other_head.model)
    assert (
        "does not fit the model SmallCNN: 2 shape mismatch (head.3.weight (5, 64) vs (3, 64)"
        in str(error.value)
    )
    assert "model.pretrained_strict=false" in str(error.value)
    # ... and non-strict loads the backbone and leaves the new head as initialized.
    relaxed = compose_config(
        overrides=[
            f"model.pretrained={path}",
            "dataset.num_classes=3",
            "model.pretrained_strict=false",
        ]
    )
    model = build_model(relaxed.model)
    assert torch.equal(model.features[0][0].weight, source.features[0][0].weight)
    assert model.head[3].weight.shape == (3, 64)


def test_pretrained_from_another_architecture_lists_missing_and_unexpected_keys(tmp_path):
    other = build_model(
        compose_config(overrides=["model=mobilenet", "model.width_mult=0.25"]).model
    )
    path = checkpoint_of(other, tmp_path / "mobilenet.pt")
    with pytest.raises(
        UserError,
        match=r"does not fit the model SmallCNN: 20 missing \(features.2.0.weight, .*; 308 unexpected .*; 5 shape mismatch \(features.0.0.weight \(8, 3, 3, 3\) vs \(16, 3, 3, 3\)",
    ):
        build_model(compose_config(overrides=[f"model.pretrained={path}"]).model)


def test_resuming_a_one_cycle_run_with_more_epochs_is_refused_clearly():
    torch.manual_seed(0)

    def one_cycle_trainer(total_steps: int) -> ClassificationTrainer:
        trainer = make_trainer(nn.Linear(6, 3))
        trainer.scheduler = torch.optim.lr_scheduler.OneCycleLR(
            trainer.optimizer, max_lr=0.1, total_steps=total_steps
        )
        return trainer

    state = one_cycle_trainer(20).training_state()
    one_cycle_trainer(20).load_training_state(state)  # the same length: fine
    with pytest.raises(UserError, match="planned for 20 steps, this run for 40"):
        one_cycle_trainer(40).load_training_state(state)
