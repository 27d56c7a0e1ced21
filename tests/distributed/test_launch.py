"""DDP as users start it, run as real commands: workers spawned by train.py on the CPU
(gloo), torchrun, a stop signal, and DDP/DataParallel on two GPUs where there are two."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from evaluate import evaluate
from project.checkpoint.format import load_checkpoint
from project.errors import PREEMPTED_EXIT_CODE
from project.launch import refuse_deprecated_launcher
from tests.conftest import REPO_ROOT, compose_config, run_script, sigterm_mid_training

# One short epoch; the validation split is odd-sized (301) so the two ranks' shards differ.
SHORT_DDP_RUN = [
    "trainer.num_processes=2",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "dataset.train_size=1000",
    "dataset.val_size=301",
    "logger.progress_bar=false",
]


def run_folders(log_dir: Path, task_name: str = "train") -> list[Path]:
    return sorted(path for path in (log_dir / task_name / "runs").iterdir() if path.is_dir())


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> Path:
    """`python train.py trainer.num_processes=2 ...`: 2 gloo DDP workers spawned by train.py."""
    log_dir = tmp_path_factory.mktemp("logs")
    result = run_script("train.py", *SHORT_DDP_RUN, f"paths.log_dir={log_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    folders = run_folders(log_dir)
    assert len(folders) == 1, folders  # the workers share the parent's run folder
    return folders[0]


def test_spawned_ddp_writes_one_run_from_rank_zero(ddp_run):
    log = (ddp_run / "train.log").read_text()
    assert "starting 2 DDP worker processes" in log
    assert "global batch 256 (2 processes x 1 accumulated)" in log
    assert log.count("training SmallCNN") == 1  # rank 1 does not log info lines
    assert len(list(ddp_run.glob("events.out.tfevents.*"))) == 1
    assert (ddp_run / ".hydra" / "config.yaml").is_file()
    state = load_checkpoint(ddp_run / "checkpoints" / "last.pt")
    assert state["world_size"] == 2
    assert not [key for key in state["model"] if key.startswith("module.")]


def test_ddp_validation_metrics_equal_a_single_process_evaluation(ddp_run):
    trained = json.loads((ddp_run / "metrics.json").read_text())
    checkpoint = ddp_run / "checkpoints" / "last.pt"
    # evaluate.py's own function, in this (single) process.
    evaluated = evaluate(compose_config("evaluate", [f"ckpt={checkpoint}", "split=val"]))
    assert trained["val/acc"] == evaluated["val/acc"]  # 301 samples, each counted once
    assert trained["val/loss"] == pytest.approx(evaluated["val/loss"], rel=1e-5)


def test_torchrun_ranks_share_rank_zero_run_folder(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    result = subprocess.run(
        # README: torchrun --standalone --nproc-per-node=2 train.py (and a short run)
        [str(torchrun), "--standalone", "--nproc-per-node=2", "train.py", "debug=fast",
         f"paths.log_dir={tmp_path}", "logger.progress_bar=false"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    folders = run_folders(tmp_path, "debug")  # debug=fast runs go to logs/debug/
    assert len(folders) == 1, folders
    run = folders[0]
    assert (run / "metrics.json").is_file() and (run / "checkpoints" / "last.pt").is_file()
    assert sorted(path.name for path in (run / ".hydra").iterdir()) == [
        "config.yaml", "hydra.yaml", "overrides.yaml"
    ]  # fmt: skip
    log = (run / "train.log").read_text()
    assert "global batch 256 (2 processes" in log and log.count("training SmallCNN") == 1


def test_the_deprecated_launcher_is_pointed_to_torchrun(capsys):
    # train.py calls this first thing; `python -m torch.distributed.launch` adds --local-rank.
    with pytest.raises(SystemExit) as stop:
        refuse_deprecated_launcher(["train.py", "--local-rank=0", "trainer.gpus=1"])
    assert stop.value.code == 2
    stderr = capsys.readouterr().err
    assert "torch.distributed.launch is deprecated" in stderr and "use torchrun" in stderr
    refuse_deprecated_launcher(["train.py", "trainer.gpus=1"])  # anything else passes


@pytest.mark.slow
def test_a_user_error_in_the_workers_is_reported_once_with_exit_code_2(tmp_path):
    # checkpoint.monitor is checked inside the trainer, that is in the spawned workers.
    result = run_script(
        "train.py", *SHORT_DDP_RUN, "checkpoint.monitor=val/nope", f"paths.log_dir={tmp_path}"
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.count("checkpoint.monitor='val/nope' is not a metric") == 1
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_sigterm_stops_every_ddp_rank_at_the_same_step_and_resumes(tmp_path):
    run_dir = tmp_path / "run"
    result = sigterm_mid_training(
        run_dir, "trainer.num_processes=2", "trainer.max_epochs=50", "dataset.train_size=4000",
        "dataset.val_size=200", "logger.progress_bar=false", after_s=3,
    )  # fmt: skip
    assert result.returncode == PREEMPTED_EXIT_CODE, result.stderr[-3000:]
    log = run_dir / "train.log"
    assert f"stopped by SIGTERM; exit code {PREEMPTED_EXIT_CODE}" in log.read_text()
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    steps_per_epoch = 4000 // 2 // 128
    assert state["global_step"] % 10 == 0  # the ranks agree every 10 steps
    # A stop on an epoch's last step is saved before the epoch counts as done (batch 15).
    assert state["position"]["batch"] == state["global_step"] - state["epoch"] * steps_per_epoch
    epochs = state["epoch"] + 1
    result = run_script(
        "train.py", f"resume={run_dir}", f"trainer.max_epochs={epochs}", timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert (resumed["global_step"], resumed["epoch"]) == (steps_per_epoch * epochs, epochs)


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs")
def test_two_gpu_ddp_and_dataparallel_train(tmp_path):
    for strategy in ("ddp", "dp"):
        result = run_script(
            "train.py", "trainer.gpus=2", f"trainer.strategy={strategy}", "debug=fast",
            f"hydra.run.dir={tmp_path / strategy}",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        state = load_checkpoint(tmp_path / strategy / "checkpoints" / "last.pt")
        assert not [key for key in state["model"] if key.startswith("module.")]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def two_nodes(tmp_path: Path, *overrides: str) -> list[subprocess.CompletedProcess]:
    """README: `torchrun --nnodes=2 --node-rank=<0|1> --nproc-per-node=1 --rdzv-backend=c10d
    --rdzv-endpoint=<host>:<port> train.py ...`, both "nodes" on this machine, each in its
    own working folder, with one shared log folder (as a cluster's shared filesystem)."""
    torchrun = Path(sys.executable).with_name("torchrun")
    port = free_port()
    nodes = []
    for node_rank in (0, 1):
        workdir = tmp_path / f"node{node_rank}"
        workdir.mkdir(exist_ok=True)
        nodes.append(subprocess.Popen(
            [str(torchrun), "--nnodes=2", f"--node-rank={node_rank}", "--nproc-per-node=1",
             "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}",
             str(REPO_ROOT / "train.py"), "debug=fast", "logger.progress_bar=false",
             f"paths.log_dir={tmp_path / 'logs'}", *overrides],
            cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        ))  # fmt: skip
    results = []
    for node in nodes:
        stdout, stderr = node.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(node.args, node.returncode, stdout, stderr))
    return results


def files_under(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file())


@pytest.mark.slow
def test_two_simulated_nodes_write_one_run_folder_and_resume(tmp_path):
    run_dir = tmp_path / "logs" / "run"
    command = [f"hydra.run.dir={run_dir}", "resume=auto"]
    for epochs in (1, 2):  # the same two commands, started again as a requeued job would be
        for result in two_nodes(tmp_path, *command, f"trainer.max_epochs={epochs}"):
            assert result.returncode == 0, result.stderr[-3000:]
        state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
        assert state["epoch"] == epochs and state["world_size"] == 2
        assert state["global_step"] == 4 * epochs  # debug=fast: 4 batches an epoch
    # Only rank 0 wrote, and only into the run folder: nothing in either node's working
    # folder, no second run folder, one training per command in the one log.
    assert files_under(tmp_path / "node0") == files_under(tmp_path / "node1") == []
    assert [path.name for path in (tmp_path / "logs").iterdir()] == ["run"]
    log = (run_dir / "train.log").read_text()
    assert log.count("training SmallCNN") == 2 and "2 processes" in log
    assert len([p for p in (run_dir / ".hydra").iterdir() if p.name.startswith("resume-")]) == 1
