"""logger.csv: metrics.csv, one row per epoch, equal to metrics.json, continued on resume;
a logger that fails is switched off with a warning and never stops training."""

import csv
import json

import pytest

from tests.conftest import run_script


def rows(path) -> list[dict]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_metrics_csv_has_a_row_per_epoch_equal_to_metrics_json_and_resumes(tmp_path):
    run = ["debug=fast", "logger=csv", f"hydra.run.dir={tmp_path}"]
    first = run_script("train.py", *run, "trainer.max_epochs=2")
    assert first.returncode == 0, first.stderr[-3000:]
    assert not list(tmp_path.glob("events.out.tfevents.*"))  # logger=csv alone
    resumed = run_script("train.py", f"resume={tmp_path}", "trainer.max_epochs=3")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    table = rows(tmp_path / "metrics.csv")
    assert [(row["epoch"], row["step"]) for row in table] == [("1", "4"), ("2", "8"), ("3", "12")]
    last = json.loads((tmp_path / "metrics.json").read_text())
    for name, value in table[-1].items():
        if name not in ("epoch", "step"):
            assert float(value) == pytest.approx(last[name], rel=1e-12), name


def test_both_loggers_at_once(tmp_path):
    result = run_script("train.py", "debug=fast", "logger.csv=true", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(tmp_path.glob("events.out.tfevents.*")) and len(rows(tmp_path / "metrics.csv")) == 1


def test_a_failing_logger_is_switched_off_and_training_goes_on(tmp_path):
    (tmp_path / "metrics.csv").mkdir(parents=True)  # cannot be replaced by a file
    result = run_script("train.py", "debug=fast", "logger=csv", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    log = (tmp_path / "train.log").read_text()
    assert "logger: csv failed" in log and "it is off for the rest of the run" in log
    assert (tmp_path / "checkpoints" / "last.pt").is_file()
