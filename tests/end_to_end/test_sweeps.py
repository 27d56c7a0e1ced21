"""Hydra multirun sweeps: DDP jobs (two sweeps at once), the submitit launcher, Optuna."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from project.distributed import ProcessContext
from project.launch import export_slurm_environment, launched_externally, plan_launch
from tests.conftest import REPO_ROOT, compose_config, run_script


def start_sweep(sweep_dir: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "train.py", "-m", "optimizer.lr=0.1,0.01", "trainer.num_processes=2",
         "debug=fast", "logger.progress_bar=false", f"hydra.sweep.dir={sweep_dir}"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


@pytest.mark.slow
def test_two_multiruns_of_ddp_jobs_at_once_do_not_collide(tmp_path):
    # 2 sweeps x 2 jobs x 2 processes; each job's rendezvous is on its own OS-picked port.
    sweeps = [start_sweep(tmp_path / name) for name in ("a", "b")]
    for sweep in sweeps:
        _, stderr = sweep.communicate(timeout=900)
        assert sweep.returncode == 0, stderr[-3000:]
    for name in ("a", "b"):
        for job in ("0", "1"):
            metrics = json.loads((tmp_path / name / job / "metrics.json").read_text())
            assert 0 <= metrics["val/acc"] <= 1
            assert (
                "global batch 256 (2 processes" in (tmp_path / name / job / "train.log").read_text()
            )


@pytest.mark.slow
def test_a_multirun_of_ddp_jobs_runs_each_job_in_its_folder(tmp_path):
    sweep = start_sweep(tmp_path)
    _, stderr = sweep.communicate(timeout=600)
    assert sweep.returncode == 0, stderr[-3000:]
    lrs = [
        yaml.safe_load((tmp_path / job / ".hydra" / "config.yaml").read_text())["optimizer"]["lr"]
        for job in ("0", "1")
    ]
    assert lrs == [0.1, 0.01]
    for job in ("0", "1"):
        assert (tmp_path / job / "checkpoints" / "last.pt").is_file()


@pytest.mark.slow  # 35 s; the SLURM config and environment tests below stay in the default run
def test_submitit_local_launcher_runs_a_one_epoch_job(tmp_path):
    result = run_script(
        "train.py", "-m", "hydra/launcher=submitit_local", "debug=fast",
        "logger.progress_bar=false", f"hydra.sweep.dir={tmp_path}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "0" / "metrics.json").read_text())
    assert metrics["val/acc"] > 0
    assert list((tmp_path / ".submitit").iterdir())  # it went through submitit


@pytest.mark.slow  # ~2 min: an Optuna sweep of 2-process DDP jobs
def test_optuna_sweep_of_ddp_jobs_maximizes_rank_zero_metric(tmp_path):
    # Two trials of two DDP processes each: also the multirun-of-DDP-jobs case.
    result = run_script(
        "train.py", "hparams_search=optuna", "hydra.sweeper.n_trials=2", "debug=fast",
        "trainer.num_processes=2", "logger.progress_bar=false", f"hydra.sweep.dir={tmp_path}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    results = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    trials = [json.loads((tmp_path / job / "metrics.json").read_text()) for job in ("0", "1")]
    # main() returns rank 0's best val/acc of each run; the study reports the larger one.
    assert results["best_value"] == max(trial["best/val/acc"] for trial in trials)
    assert set(results["best_params"]) == {"optimizer.lr", "optimizer.weight_decay"}
    for job in ("0", "1"):
        log = (tmp_path / job / "train.log").read_text()
        assert "global batch 256 (2 processes" in log and log.count("training SmallCNN") == 1


def test_slurm_launcher_config_asks_for_one_task_per_gpu():
    cfg = compose_config(
        overrides=["hydra/launcher=submitit_slurm", "trainer.gpus=4", "hydra.launcher.nodes=2"],
        return_hydra_config=True,
    )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.tasks_per_node, launcher.gpus_per_node, launcher.nodes) == (4, 4, 2)


DDP_VARIABLES = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
)


def test_slurm_tasks_become_ddp_ranks(monkeypatch):
    for name in DDP_VARIABLES:  # set, then removed: monkeypatch restores the original state
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    # Task 5 of a 2-node job with 4 tasks per node, as SLURM describes it to the task.
    slurm = {
        "SUBMITIT_EXECUTOR": "slurm",
        "SLURM_JOB_ID": "4242",
        "SLURM_NTASKS": "8",
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_NODEID": "1",
        "SLURM_JOB_NODELIST": "gpu[07-08]",
        "SLURM_PROCID": "5",
        "SLURM_LOCALID": "1",
    }
    for name, value in slurm.items():
        monkeypatch.setenv(name, value)
    export_slurm_environment()
    assert ProcessContext.from_environment() == ProcessContext(rank=5, local_rank=1, world_size=8)
    assert os.environ["MASTER_ADDR"] == "gpu07"  # the job's first node hosts the rendezvous
    assert launched_externally()
    assert plan_launch(compose_config(overrides=["trainer.gpus=4"]).trainer).spawn == 0
