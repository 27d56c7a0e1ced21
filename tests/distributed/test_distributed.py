"""DDP, DataParallel and SyncBN behaviour, on the CPU (gloo) with the project's own spawn."""

import os
import signal
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn
from torch.utils.data import TensorDataset

from project.checkpoint.policy import CheckpointPolicy
from project.data.loaders import build_loader
from project.data.sampling import EpochSampler
from project.distributed import (
    ProcessContext,
    convert_sync_batchnorm,
    gpu_indices,
    process_group,
)
from project.errors import Preempted, UserError
from project.launch import plan_launch, spawn
from project.models.mobilenet import MobileNet
from project.schema import LoaderConfig, LoggerConfig, TrainerConfig
from project.trainer import ClassificationTrainer
from project.trainer.base import STOP_CHECK_EVERY_N_STEPS
from tests.conftest import compose_config

QUIET = LoggerConfig(tensorboard=False, progress_bar=False)
SAMPLES, FEATURES, CLASSES = 64, 6, 3


def make_data() -> TensorDataset:
    generator = torch.Generator().manual_seed(0)
    return TensorDataset(
        torch.randn(SAMPLES, FEATURES, generator=generator),
        torch.randint(0, CLASSES, (SAMPLES,), generator=generator),
    )


def make_model() -> nn.Module:
    torch.manual_seed(0)  # the same initial weights in every process
    return nn.Sequential(nn.Linear(FEATURES, 16), nn.Tanh(), nn.Linear(16, CLASSES))


def train_steps(process: ProcessContext, batch_size: int, steps: int, store=None) -> list[float]:
    """Train `steps` SGD steps (momentum, weight decay) as one rank; return the weights."""
    device = torch.device("cpu")
    strategy = "ddp" if process.distributed else None
    with process_group(process, device, store):
        loader = build_loader(
            make_data(),
            LoaderConfig(batch_size=batch_size),
            train=True,
            seed=1,
            device=device,
            process=process,
        )
        model = make_model()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
        trainer = ClassificationTrainer(
            model,
            optimizer,
            trainer_cfg=TrainerConfig(max_epochs=10, max_steps=steps),
            logger_cfg=QUIET,
            device=device,
            strategy=strategy,
            process=process,
        )
        trainer.fit(loader)
        return torch.cat([p.detach().flatten() for p in trainer.module.parameters()]).tolist()


def test_two_process_ddp_matches_one_process_on_the_combined_batch():
    # 2 ranks x 8 samples per step against 1 process x 16: the same samples each step
    # (EpochSampler shards one permutation), gradients averaged by DDP.
    single = torch.tensor(train_steps(ProcessContext(), batch_size=16, steps=6))
    ddp = torch.tensor(spawn(train_steps, (8, 6), processes=2))
    untrained = torch.cat([p.detach().flatten() for p in make_model().parameters()])
    assert not torch.allclose(single, untrained, atol=1e-3)  # the weights did move
    torch.testing.assert_close(ddp, single, rtol=1e-5, atol=1e-6)


class SignalledOnRankOne(ClassificationTrainer):
    """As if the scheduler's SIGUSR1 reached rank 1 alone, after its third step."""

    def optimizer_step(self) -> None:
        super().optimizer_step()
        if self.process.rank == 1 and self.global_step == 3:
            os.kill(os.getpid(), signal.SIGUSR1)


def train_until_signalled(process: ProcessContext, run_dir: str, store=None) -> None:
    device = torch.device("cpu")
    with process_group(process, device, store):
        loader = build_loader(
            make_data(),
            LoaderConfig(batch_size=2),
            train=True,
            seed=1,
            device=device,
            process=process,
        )
        model = make_model()
        trainer = SignalledOnRankOne(
            model,
            torch.optim.SGD(model.parameters(), lr=0.1),
            trainer_cfg=TrainerConfig(max_epochs=5),
            logger_cfg=QUIET,
            device=device,
            run_dir=Path(run_dir),
            checkpoint_policy=CheckpointPolicy(Path(run_dir), monitor="train/loss", mode="min"),
            strategy="ddp",
            process=process,
        )
        trainer.fit(loader)


def test_a_stop_signal_to_one_rank_stops_all_ranks_at_the_same_step(tmp_path):
    # Rank 1 alone is signalled at step 3; the ranks agree at step 10 (STOP_CHECK_EVERY_N_STEPS),
    # rank 0 writes last.pt, and the parent reports the preemption (exit code 75 in train.py).
    with pytest.raises(Preempted):
        spawn(train_until_signalled, (str(tmp_path),), processes=2)
    # A trainer built in code, without a run config: read the raw state (evaluate.py would
    # refuse a checkpoint without a config).
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert STOP_CHECK_EVERY_N_STEPS == 10
    assert (state["global_step"], state["position"]["batch"], state["world_size"]) == (10, 10, 2)


def test_evaluation_shards_hold_every_item_once_and_training_shards_are_even():
    shards = [
        EpochSampler(37, shuffle=False, seed=0, rank=r, world_size=2, even=False) for r in (0, 1)
    ]
    items = [index for shard in shards for _, index in shard]
    assert sorted(items) == list(range(37)) and [len(s) for s in shards] == [19, 18]
    even = [EpochSampler(37, shuffle=True, seed=0, rank=r, world_size=2) for r in (0, 1)]
    assert [len(s) for s in even] == [19, 19]


def test_dataparallel_and_ddp_checkpoints_have_no_module_prefix():
    # DataParallel without GPUs runs the module as is; the wrapper is still in place.
    trainer = ClassificationTrainer(
        make_model(),
        torch.optim.SGD(make_model().parameters(), lr=0.1),
        trainer_cfg=TrainerConfig(),
        logger_cfg=QUIET,
        device=torch.device("cpu"),
        strategy="dp",
    )
    assert isinstance(trainer.model, nn.DataParallel)
    keys = list(trainer.training_state()["model"])
    assert keys == ["0.weight", "0.bias", "2.weight", "2.bias"]
    make_model().load_state_dict(trainer.training_state()["model"])  # an unwrapped model


def test_sync_batchnorm_conversion_replaces_every_batchnorm():
    model = MobileNet(num_classes=3, width_mult=0.25)
    batchnorms = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    weights = {name: value.clone() for name, value in model.state_dict().items()}
    converted = convert_sync_batchnorm(model)
    assert batchnorms > 10
    assert sum(isinstance(m, nn.SyncBatchNorm) for m in converted.modules()) == batchnorms
    assert not any(type(m) is nn.BatchNorm2d for m in converted.modules())
    for name, value in converted.state_dict().items():
        torch.testing.assert_close(value, weights[name])


def trainer_options(*overrides: str):
    return compose_config(overrides=list(overrides)).trainer


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["trainer.sync_bn=true"], "trainer.sync_bn=true needs CUDA GPUs"),
        (["trainer.gpus=4"], "trainer.gpus=4 but this machine has"),
        (["trainer.strategy=dp"], "trainer.strategy=dp needs trainer.gpus>=2"),
        (
            ["trainer.gpus=1", "trainer.num_processes=2"],
            "trainer.num_processes=2 is for DDP on the CPU",
        ),
    ],
)
def test_impossible_device_settings_are_refused_before_any_work(overrides, message):
    if torch.cuda.device_count() >= 4:
        pytest.skip("this machine has the GPUs these settings ask for")
    with pytest.raises(UserError, match=message):
        plan_launch(trainer_options(*overrides))


def test_launch_plans():
    assert plan_launch(trainer_options()).spawn == 0
    plan = plan_launch(trainer_options("trainer.num_processes=3"))
    assert (plan.spawn, plan.strategy) == (3, "ddp")


def test_trainer_devices_pick_one_gpu_per_sweep_job():
    assert gpu_indices(2, None, available=8) == [0, 1]
    assert gpu_indices(1, [5], available=4) == [1]  # job 5 of a sweep on 4 GPUs
    with pytest.raises(
        UserError, match=r"trainer.devices=\[0, 1\] names 2 device\(s\) but trainer.gpus=1"
    ):
        gpu_indices(1, [0, 1], available=4)


def test_devices_key_accepts_the_job_number_interpolation():
    cfg = compose_config(overrides=["trainer.gpus=1", "trainer.devices=[3]"])
    assert OmegaConf.to_container(cfg.trainer.devices) == [3]
    with pytest.raises(Exception, match="devices"):
        compose_config(overrides=["trainer.devices=abc"])
