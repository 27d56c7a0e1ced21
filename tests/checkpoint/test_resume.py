"""Exact resume: a run stopped mid-epoch and resumed ends bitwise identical to one that
never stopped; the resumed run writes into the same folder; bad resumes are refused."""

import subprocess
import sys

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from project.errors import PREEMPTED_EXIT_CODE, USER_ERROR_EXIT_CODE, UserError
from project.resume import resume_checkpoint
from tests.conftest import REPO_ROOT, run_script, sigterm_mid_training

# 600 training images at batch 64 = 9 steps per epoch, 3 epochs; flips on (the default
# augmentation), deterministic. Stopping at step 13 is mid-epoch 2 (batch 4 of 9).
EXACT = [
    "dataset.train_size=600",
    "dataset.val_size=150",
    "trainer.max_epochs=3",
    "trainer.deterministic=true",
    "loader.batch_size=64",
    "logger.log_every_n_steps=2",
]
STOP_STEP = 13


def final_state(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)


def job_dirs_by_overrides(sweep_dir):
    jobs = {}
    for job_dir in sorted(p for p in sweep_dir.iterdir() if p.is_dir()):
        overrides = yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text())
        workers = next(o for o in overrides if o.startswith("loader.num_workers="))
        stop = next(o for o in overrides if o.startswith("trainer.max_steps="))
        jobs[(workers.split("=")[1], stop.split("=")[1])] = job_dir
    return jobs


@pytest.fixture(scope="module")
def exact_runs(tmp_path_factory):
    """Four jobs in one multirun: 0 and 2 workers, each run through and stopped at step 13;
    then the two stopped runs resumed, concurrently."""
    sweep = tmp_path_factory.mktemp("exact")
    result = run_script(
        "train.py", "-m", *EXACT, "loader.num_workers=0,2", f"trainer.max_steps=null,{STOP_STEP}",
        f"hydra.sweep.dir={sweep}", timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = job_dirs_by_overrides(sweep)
    stopped = {workers: jobs[(workers, str(STOP_STEP))] for workers in ("0", "2")}
    for run_dir in stopped.values():
        state = final_state(run_dir)
        assert state["global_step"] == STOP_STEP and state["position"]["batch"] == 4
    resumes = [
        subprocess.Popen(
            [sys.executable, "train.py", f"resume={run_dir}", "trainer.max_steps=null"],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for run_dir in stopped.values()
    ]
    for process in resumes:
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-3000:]
    return jobs


@pytest.mark.parametrize("workers", ["0", "2"])
def test_resumed_run_ends_bitwise_identical_with_identical_metrics(exact_runs, workers):
    through = final_state(exact_runs[(workers, "null")])
    resumed = final_state(exact_runs[(workers, str(STOP_STEP))])
    assert through["global_step"] == resumed["global_step"] == 27
    for name, tensor in through["model"].items():
        assert torch.equal(tensor, resumed["model"][name]), name
    for name in ("train/loss", "val/loss", "val/acc", "lr"):
        assert through["metrics"][name] == resumed["metrics"][name], name
    assert through["optimizer"]["state"].keys() == resumed["optimizer"]["state"].keys()
    for key, value in through["optimizer"]["state"].items():
        assert torch.equal(
            value["momentum_buffer"], resumed["optimizer"]["state"][key]["momentum_buffer"]
        )


def test_worker_count_does_not_change_the_result(exact_runs):
    # Augmentation is seeded per (seed, epoch, sample), not per worker process.
    zero, two = final_state(exact_runs[("0", "null")]), final_state(exact_runs[("2", "null")])
    assert all(torch.equal(t, two["model"][name]) for name, t in zero["model"].items())


def test_resumed_run_continues_its_folder_log_and_tensorboard(exact_runs):
    run_dir = exact_runs[("0", str(STOP_STEP))]
    log = (run_dir / "train.log").read_text()
    assert log.count("training SmallCNN") == 2  # appended, not replaced
    assert "trainer.max_steps reached at step 13 (epoch 2, batch 4)" in log
    assert f"resuming from {run_dir / 'checkpoints' / 'last.pt'} (step 13)" in log
    # The original Hydra record is kept; the resuming command's sits beside it.
    assert f"trainer.max_steps={STOP_STEP}" in (run_dir / ".hydra" / "overrides.yaml").read_text()
    [resume_record] = (run_dir / ".hydra").glob("resume-*/overrides.yaml")
    assert "trainer.max_steps=null" in resume_record.read_text()

    events = EventAccumulator(str(run_dir))
    events.Reload()
    steps = [event.step for event in events.Scalars("train/loss_step")]
    assert steps == list(range(2, 28, 2))  # every 2nd step once, across both processes
    assert [event.step for event in events.Scalars("val/acc")] == [9, 18, 27]


def test_resume_refuses_overrides_that_change_what_is_trained(exact_runs):
    run_dir = exact_runs[("0", "null")]
    before = (run_dir / "checkpoints" / "last.pt").read_bytes()
    result = run_script("train.py", f"resume={run_dir}", "model.width=24", "optimizer=adamw")
    assert result.returncode == USER_ERROR_EXIT_CODE
    message = result.stderr.strip()
    assert message.startswith("error: resume: these overrides change what is trained: ")
    assert (
        "model.width: 16 -> 24" in message
        and "optimizer=adamw (changes the optimizer config)" in message
    )
    assert (run_dir / "checkpoints" / "last.pt").read_bytes() == before


def test_resume_auto_on_a_finished_run_has_nothing_left_to_do(exact_runs):
    run_dir = exact_runs[("2", "null")]
    before = final_state(run_dir)
    result = run_script(
        "train.py", "resume=auto", f"hydra.run.dir={run_dir}", "loader.num_workers=0"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    after = final_state(run_dir)
    assert after["global_step"] == before["global_step"] == 27


def test_resume_of_a_missing_run_names_it(tmp_path):
    with pytest.raises(UserError, match=r"resume=.*nope: no such checkpoint or run folder"):
        resume_checkpoint(str(tmp_path / "nope"), tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"no checkpoint in .*empty/checkpoints"):
        resume_checkpoint(str(tmp_path / "empty"), tmp_path)
    assert resume_checkpoint("auto", tmp_path / "empty") is None  # auto: start the run


def test_sigterm_finishes_the_step_saves_and_exits_with_the_documented_code(tmp_path):
    # SIGINT and SIGUSR1 take the same path; tests/checkpoint/test_training_state.py sends all three.
    run_dir = tmp_path / "run"
    result = sigterm_mid_training(
        run_dir, "trainer.max_epochs=50", "dataset.train_size=2000", "dataset.val_size=200",
        "logger.progress_bar=false", after_s=1.5, timeout=120,
    )  # fmt: skip
    assert result.returncode == PREEMPTED_EXIT_CODE, result.stderr[-3000:]
    log = run_dir / "train.log"
    text = log.read_text()
    assert "SIGTERM received: stopping after the current step" in text
    assert (
        f"stopped by SIGTERM; exit code {PREEMPTED_EXIT_CODE}. "
        f"Continue with: python train.py resume={run_dir}"
    ) in text
    state = final_state(run_dir)
    # A stop on an epoch's last step is saved before the epoch counts as done (batch 15).
    assert state["global_step"] > 0
    assert state["position"]["batch"] == state["global_step"] - state["epoch"] * 15
    # It resumes (exactness is checked above); here: it continues from that step to the
    # end of its epoch, with the shorter max_epochs applied (15 steps per epoch).
    epochs = state["epoch"] + 1
    result = run_script("train.py", f"resume={run_dir}", f"trainer.max_epochs={epochs}")
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = final_state(run_dir)
    assert (resumed["global_step"], resumed["epoch"]) == (15 * epochs, epochs)


COUNT_CHECKPOINT_READS = """
import atexit, runpy, sys, torch
reads = []
original = torch.load
def counting(file, *args, **kwargs):
    reads.append(str(file))
    return original(file, *args, **kwargs)
torch.load = counting
atexit.register(lambda: print("checkpoint reads:", [r for r in reads if r.endswith(".pt")]))
sys.argv = ["train.py", *sys.argv[1:]]
runpy.run_path("train.py", run_name="__main__")
"""


def test_a_resumed_checkpoint_is_read_once(tmp_path):
    """Hydra's on_run_start validates the resume (before anything is written) and reads
    the checkpoint; train() then uses what it read instead of loading it again."""
    first = run_script("train.py", "debug=fast", f"hydra.run.dir={tmp_path}")
    assert first.returncode == 0, first.stderr[-3000:]
    result = subprocess.run(
        [sys.executable, "-c", COUNT_CHECKPOINT_READS, f"resume={tmp_path}", "trainer.max_epochs=2"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"checkpoint reads: ['{tmp_path / 'checkpoints' / 'last.pt'}']" in result.stdout
