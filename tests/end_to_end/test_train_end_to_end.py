"""A real 1-epoch `python train.py` run and `python evaluate.py` on its checkpoint."""

import json
import re

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from project.checkpoint.format import FORMAT_VERSION
from tests.conftest import FAST_TRAINING, run_script


def test_run_folder_holds_config_log_events_checkpoints_and_metrics(trained_run):
    assert (trained_run / ".hydra" / "config.yaml").is_file()
    overrides = yaml.safe_load((trained_run / ".hydra" / "overrides.yaml").read_text())
    assert overrides == FAST_TRAINING  # Hydra keeps hydra.* overrides in hydra.yaml

    log_text = (trained_run / "train.log").read_text()
    assert "epoch 1/1" in log_text and "val/acc=" in log_text
    assert f"run folder: {trained_run}" in log_text

    metrics = json.loads((trained_run / "metrics.json").read_text())
    # One epoch already far beats the 20% of guessing among 5 shapes (0.77 measured).
    assert metrics["val/acc"] > 0.5
    assert metrics["best/val/acc"] == metrics["val/acc"]
    assert 0 <= metrics["train/data_wait_fraction"] < 1 and metrics["train/samples_per_sec"] > 0


def test_tensorboard_events_are_readable_by_tensorboard(trained_run):
    events = EventAccumulator(str(trained_run))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    expected = {
        "train/loss_step",
        "train/lr_step",
        "train/loss",
        "val/loss",
        "val/acc",
        "train/samples_per_sec",
        "train/data_wait_fraction",
    }
    assert expected <= tags
    metrics = json.loads((trained_run / "metrics.json").read_text())
    logged_acc = [event.value for event in events.Scalars("val/acc")]
    assert abs(logged_acc[0] - metrics["val/acc"]) < 1e-6
    # 62 steps, per-step values every 10 steps.
    assert [event.step for event in events.Scalars("train/loss_step")] == [10, 20, 30, 40, 50, 60]
    # The HPARAMS tab: the run's config next to its final metrics.
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(
        events.PluginTagToContent("hparams")
    )


def test_checkpoints_are_plain_dicts_loadable_with_weights_only(trained_run):
    for name in ("last.pt", "best.pt"):
        state = torch.load(trained_run / "checkpoints" / name, weights_only=True)
        assert state["format_version"] == FORMAT_VERSION
        assert state["epoch"] == 1 and state["global_step"] == 62  # 8000 // 128 batches
        assert state["config"]["model"]["_target_"] == "project.models.cnn.SmallCNN"
        assert state["config"]["model"]["num_classes"] == 5  # resolved interpolation
        assert (
            state["config"]["scheduler"]["_target_"] == "project.optim.one_cycle"
        )  # with the overrides
        policy = state["checkpoint_policy"]
        assert policy["monitor"] == "val/acc"
        assert policy["best_score"] == state["metrics"]["val/acc"]
        assert "features.0.0.weight" in state["model"] and state["position"]["batch"] == 0
        assert set(state["rng"]) == {"python", "numpy", "torch", "cuda"}
    snapshots = sorted(
        p.name
        for p in (trained_run / "checkpoints").iterdir()
        if not p.name.startswith("eval")  # evaluate.py's eval.json and eval_confusion.png
    )
    assert snapshots == ["best.pt", "epoch=001-step=000062.pt", "last.pt", "manifest.json"]
    # One write, two more names: best.pt and last.pt are hard links to the snapshot.
    inodes = {(trained_run / "checkpoints" / name).stat().st_ino for name in snapshots[:3]}
    assert len(inodes) == 1


def test_evaluate_rebuilds_everything_from_the_checkpoint(trained_run):
    checkpoint = trained_run / "checkpoints" / "best.pt"
    result = run_script(
        "evaluate.py", f"ckpt={checkpoint}", f"hydra.run.dir={trained_run / 'eval'}"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "test/acc" in result.stdout and "test/loss" in result.stdout
    report = json.loads((trained_run / "checkpoints" / "eval.json").read_text())
    assert report["split"] == "test" and report["epoch"] == 1
    assert 0.5 < report["metrics"]["test/acc"] <= 1.0
    assert f"{report['metrics']['test/acc']:.4f}" in result.stdout


def test_without_a_terminal_progress_and_saves_are_log_lines(tmp_path):
    # run_script captures stderr: no terminal, so no bar; text lines in train.log instead.
    result = run_script(
        "train.py", "debug=fast", "logger.log_every_n_steps=2", f"hydra.run.dir={tmp_path}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    log = (tmp_path / "train.log").read_text()
    steps = re.findall(
        r"step (\d)/4 epoch 1/1 loss \d+\.\d{4} lr [\d.e-]+ samples/s \d+ eta \d:\d\d:\d\d", log
    )
    assert steps == ["2", "4"]
    saved = re.search(r"saved (.*) \(val/acc=([\d.]+), epoch 1, step 4\)", log)
    assert saved and str(tmp_path / "checkpoints" / "best.pt") in saved.group(1)
    assert float(saved.group(2)) == pytest.approx(
        json.loads((tmp_path / "metrics.json").read_text())["val/acc"], rel=1e-5
    )
