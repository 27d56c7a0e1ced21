"""`kill -9` at any moment, including during a save, never leaves the newest checkpoint
unloadable, and `resume=auto` then completes the run exactly."""

import json
import multiprocessing
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from project.checkpoint.policy import MANIFEST, CheckpointPolicy
from tests.conftest import REPO_ROOT, run_script


def save_forever(directory, ready, weights) -> None:
    """Save ~4 MB checkpoints in a loop through the real policy (top-2 snapshots, best,
    last, manifest), so that a kill lands inside a write most of the time.

    Runs in a forked child: it computes nothing with torch (the tensors come from the
    parent), because OpenMP kernels can deadlock in a child forked after the parent used
    them."""
    policy = CheckpointPolicy(directory, monitor="val/loss", mode="min", save_top_k=2)
    for epoch in range(1, 100_000):
        state = lambda: {"config": {}, "model": {"w": weights[epoch % 3]}, "epoch": epoch}  # noqa: B023, E731
        policy.on_validation_end({"val/loss": float(epoch % 7)}, epoch, epoch, state)
        ready.set()


def assert_checkpoints_consistent(directory):
    last = torch.load(directory / "last.pt", weights_only=True)
    manifest = json.loads((directory / MANIFEST).read_text())
    listed = [entry["file"] for entry in manifest["top_k"]] + ["best.pt", "last.pt"]
    for name in listed:  # everything the manifest lists exists and is complete
        state = torch.load(directory / name, weights_only=True)
        assert state["model"]["w"].numel() == 1_000_000
    return last["epoch"]


def test_kill_9_during_saves_never_leaves_an_unloadable_checkpoint(tmp_path):
    # A forked child (torch is already imported here) is killed with SIGKILL, 12 times.
    context = multiprocessing.get_context("fork")
    rng = random.Random(0)
    epochs = []
    weights = [torch.full((1_000_000,), float(i)) for i in range(3)]
    for _ in range(12):
        ready = context.Event()
        saver = context.Process(target=save_forever, args=(tmp_path, ready, weights))
        saver.start()
        assert ready.wait(timeout=60)
        time.sleep(rng.uniform(0.0, 0.5))
        saver.kill()
        saver.join()
        assert saver.exitcode == -signal.SIGKILL
        epochs.append(assert_checkpoints_consistent(tmp_path / "checkpoints"))
    assert all(epoch >= 1 for epoch in epochs)
    # A killed save leaves at most its hidden temporary file, which the next policy removes.
    CheckpointPolicy(tmp_path, monitor="val/loss")
    assert not list((tmp_path / "checkpoints").glob(".*.tmp"))
    # top 2, plus one when a kill fell between writing a new one and evicting an old one
    assert len(list((tmp_path / "checkpoints").glob("epoch=*.pt"))) <= 3


@pytest.mark.slow
def test_training_killed_at_random_moments_resumes_to_the_same_weights(tmp_path):
    common = [
        "dataset.train_size=1200", "dataset.val_size=200", "trainer.max_epochs=16",
        "trainer.deterministic=true", "loader.batch_size=64", "checkpoint.every_n_steps=3",
        "logger.progress_bar=false",
    ]  # fmt: skip
    reference = run_script("train.py", *common, f"hydra.run.dir={tmp_path / 'reference'}")
    assert reference.returncode == 0, reference.stderr[-3000:]

    run_dir = tmp_path / "killed"
    command = [sys.executable, "train.py", *common, "resume=auto", f"hydra.run.dir={run_dir}"]
    rng = random.Random(1)
    kills = 0
    while kills < 10:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        log = run_dir / "train.log"
        # Wait until training runs (imports take ~10 s), then kill somewhere in it.
        deadline = time.monotonic() + 120
        while process.poll() is None and not (
            log.is_file() and log.read_text().count("training SmallCNN") > kills
        ):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        if process.poll() is not None:
            break  # it finished before we could kill it
        time.sleep(rng.uniform(0.0, 2.0))
        process.kill()
        process.wait()
        kills += 1
    finished = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert kills >= 10
    expected = torch.load(tmp_path / "reference" / "checkpoints" / "last.pt", weights_only=True)
    actual = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert actual["global_step"] == expected["global_step"] == 16 * 18
    # The kills landed during training: each restart resumed from a later step.
    log = (run_dir / "train.log").read_text()
    resumed_steps = [
        int(line.rsplit("(step ", 1)[1].rstrip(")"))
        for line in log.splitlines()
        if "resuming from" in line
    ]
    assert len(resumed_steps) >= 10 and max(resumed_steps) < 16 * 18
    for name, tensor in expected["model"].items():
        assert torch.equal(tensor, actual["model"][name]), name
