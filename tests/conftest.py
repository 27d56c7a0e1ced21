"""Shared helpers: run the real entry points in a subprocess, compose configs in-process."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

# One thread per process: pytest runs 2 workers on 2 cores, and their training subprocesses
# and DDP workers would otherwise each start a thread per core and spin against each other.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from project.schema import register_schemas

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "configs"

# A real training run that takes seconds: one epoch of the default data (62 steps).
# One-cycle instead of the default's one-epoch warmup, so one epoch learns something.
FAST_TRAINING = [
    "trainer.max_epochs=1",
    "scheduler=onecycle",
    "logger.log_every_n_steps=10",
]

register_schemas()


def run_script(
    script: str, *overrides: str, cwd: Path = REPO_ROOT, timeout: float = 300
) -> subprocess.CompletedProcess:
    """`python <script> <overrides>` as a user would type it; output captured as text."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    env.pop("PROJECT_ROOT", None)
    return subprocess.run(
        [sys.executable, script, *overrides],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def sigterm_mid_training(
    run_dir: Path, *overrides: str, after_s: float, timeout: float = 180
) -> subprocess.CompletedProcess:
    """Start `python train.py hydra.run.dir=<run_dir> <overrides>` as a scheduler would (its
    own session: the signal reaches train.py only), send SIGTERM `after_s` seconds after
    training began, and wait for it to exit."""
    process = subprocess.Popen(
        [sys.executable, "train.py", f"hydra.run.dir={run_dir}", *overrides],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    log = run_dir / "train.log"
    deadline = time.monotonic() + timeout
    while not (log.is_file() and "training SmallCNN" in log.read_text()):
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.2)
    time.sleep(after_s)  # mid-epoch
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=timeout)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def compose_config(
    config_name: str = "train",
    overrides: list[str] | None = None,
    return_hydra_config: bool = False,
):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(
            config_name, overrides=overrides or [], return_hydra_config=return_hydra_config
        )


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """One real 1-epoch training through `python train.py`, shared by the tests that read it."""
    run_dir = tmp_path_factory.mktemp("run")
    result = run_script("train.py", *FAST_TRAINING, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir
