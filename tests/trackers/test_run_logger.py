"""The run logger batches scalars for the SummaryWriter without losing or reordering any."""

import sys

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

from project.schema import LoggerConfig
from project.trackers.run_logger import RunLogger
from project.trackers.tensorboard import TensorBoardTracker


def steps_on_disk(run_dir, tag):
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return [event.step for event in events.Scalars(tag)] if tag in events.Tags()["scalars"] else []


def test_scalars_are_batched_and_all_reach_disk_in_order(tmp_path):
    logger = RunLogger([TensorBoardTracker(tmp_path, purge_step=None)])
    for step in range(1, 6):
        logger.scalars({"train/loss_step": 1.0 / step}, step)
    assert len(logger.pending) == 5  # held back: no writer-thread wake-up per step
    logger.flush()  # what a checkpoint save does
    assert logger.pending == [] and steps_on_disk(tmp_path, "train/loss_step") == [1, 2, 3, 4, 5]
    logger.scalars({"train/loss_step": 0.1}, 6)
    logger.scalars({"val/acc": 0.5}, 6, now=True)  # an epoch end hands over at once
    assert logger.pending == []
    logger.scalars({"train/loss_step": 0.05}, 7)
    logger.close()
    assert steps_on_disk(tmp_path, "train/loss_step") == [1, 2, 3, 4, 5, 6, 7]


def test_a_steps_scalars_share_one_event_whatever_their_number_type(tmp_path):
    logger = RunLogger([TensorBoardTracker(tmp_path, purge_step=None)])
    values = {"a": 0.5, "b": 3, "c": torch.tensor(0.25), "d": np.float32(1.5)}
    logger.scalars(values, step=7)
    logger.close()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    logged = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in values}
    assert logged == {"a": [(7, 0.5)], "b": [(7, 3.0)], "c": [(7, 0.25)], "d": [(7, 1.5)]}
    file = next(tmp_path.glob("events.out.tfevents.*"))
    scalar_events = [e for e in EventFileLoader(str(file)).Load() if e.summary.value]
    assert [len(event.summary.value) for event in scalar_events] == [4]


def test_scalars_are_handed_over_once_the_batch_interval_passed(tmp_path):
    logger = RunLogger([TensorBoardTracker(tmp_path, purge_step=None)])
    logger.batch_seconds = 0.0
    logger.scalars({"train/loss_step": 1.0}, 1)
    assert logger.pending == []
    logger.close()


class Broken(TensorBoardTracker):
    name = "broken"

    def scalars(self, batch):
        raise OSError(28, "No space left on device")


def test_a_failing_tracker_is_switched_off_and_the_others_go_on(tmp_path, caplog):
    good, broken = TensorBoardTracker(tmp_path, None), Broken(tmp_path / "b", None)
    logger = RunLogger([broken, good])
    logger.scalars({"val/acc": 0.5}, 1, now=True)
    logger.scalars({"val/acc": 0.6}, 2, now=True)
    logger.close()
    assert logger.trackers == [] and steps_on_disk(tmp_path, "val/acc") == [1, 2]
    assert caplog.text.count("logger: broken failed (OSError") == 1  # once, then off


@pytest.mark.parametrize(
    ("name", "modules", "extra"),
    [("mlflow", ["mlflow", "mlflow.tracking"], "tracking"), ("wandb", ["wandb"], "wandb")],
)
def test_a_tracker_whose_package_is_missing_is_off_with_how_to_install_it(
    tmp_path, monkeypatch, caplog, name, modules, extra
):
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)  # `import` now raises ImportError
    logger = RunLogger.open(LoggerConfig(tensorboard=True, **{name: True}), tmp_path)
    assert [tracker.name for tracker in logger.trackers] == ["tensorboard"]  # the run goes on
    expected = f"logger: {name} failed (ImportError: logger={name} needs {name}: uv sync --extra {extra}"  # fmt: skip
    assert expected in caplog.text
    logger.close()
