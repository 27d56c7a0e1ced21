"""logger=csv: metrics.csv, one row per epoch, equal to metrics.json, continued on resume;
logger=mlflow against a real MLflow server started here; logger=wandb offline, read back
from its run files; several at once with logger=[...]; a logger that fails is switched
off with a warning and never stops training."""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from project.errors import PREEMPTED_EXIT_CODE
from tests.conftest import REPO_ROOT, run_script, sigterm_mid_training


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


def test_several_loggers_at_once(tmp_path):
    run = ["debug=fast", "logger=[tensorboard,csv]", f"hydra.run.dir={tmp_path}"]
    result = run_script("train.py", *run)
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(tmp_path.glob("events.out.tfevents.*")) and len(rows(tmp_path / "metrics.csv")) == 1
    assert not (tmp_path / "wandb").exists()


def test_a_failing_logger_is_switched_off_and_training_goes_on(tmp_path):
    (tmp_path / "metrics.csv").mkdir(parents=True)  # cannot be replaced by a file
    result = run_script("train.py", "debug=fast", "logger=csv", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    log = (tmp_path / "train.log").read_text()
    assert "logger: csv failed" in log and "it is off for the rest of the run" in log
    assert (tmp_path / "checkpoints" / "last.pt").is_file()


@pytest.fixture
def mlflow_server(tmp_path):
    """A real MLflow tracking server on 127.0.0.1 and a free port, stopped afterwards."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1",
         "--port", str(port), "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
         "--artifacts-destination", str(tmp_path / "artifacts"), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            assert server.poll() is None and time.monotonic() < deadline, "no MLflow server"
            time.sleep(1)
    yield uri
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=30)


def test_mlflow_gets_metrics_params_and_images_and_a_resume_continues_the_run(
    tmp_path, mlflow_server
):
    from mlflow.tracking import MlflowClient

    run_dir = tmp_path / "run"
    tracked = ["logger=[tensorboard,mlflow]", f"logger.mlflow_uri={mlflow_server}"]
    first = run_script(
        "train.py", "debug=fast", "trainer.max_epochs=2", *tracked, f"hydra.run.dir={run_dir}"
    )
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = run_script("train.py", f"resume={run_dir}", "trainer.max_epochs=3")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    client = MlflowClient(mlflow_server)
    [experiment] = [e for e in client.search_experiments() if e.name == "default"]
    [run] = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    history = client.get_metric_history(run.info.run_id, "val/acc")
    assert [point.step for point in history] == [4, 8, 12]  # one run, continued, no repeats
    last = json.loads((run_dir / "metrics.json").read_text())
    assert history[-1].value == pytest.approx(last["val/acc"])
    assert run.data.params["model/_target_"] == "project.models.cnn.SmallCNN"
    images = [a.path for a in client.list_artifacts(run.info.run_id, "val/confusion_matrix")]
    assert len(images) == 3 and images[0].endswith("step_0000004.png")
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert state["trackers"] == {"mlflow_run_id": run.info.run_id}
    config_text = client.download_artifacts(run.info.run_id, "config.txt", str(tmp_path))
    assert "SmallCNN" in Path(config_text).read_text()


def wandb_records(path: Path):
    """The records of a W&B run file (`run-<id>.wandb`): LevelDB's log format (32 KiB
    blocks of chunks with a 7-byte header) after a 7-byte W&B header, each record a
    protobuf `Record`. wandb reads these files in Go only, so the test reads them here."""
    from wandb.proto import wandb_internal_pb2

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B"
    position, pending = 7, b""
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a header: padding
            position += block - position % block
            continue
        length, kind = (
            int.from_bytes(data[position + 4 : position + 6], "little"),
            data[position + 6],
        )
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def wandb_history(path: Path) -> dict[int, dict]:
    """step -> {key: value} of a W&B run file."""
    history = {}
    for record in wandb_records(path):
        if record.WhichOneof("record_type") == "history":
            row = {
                "/".join(i.nested_key) or i.key: json.loads(i.value_json)
                for i in record.history.item
            }
            history[row["_step"]] = row
    return history


def test_wandb_offline_logs_the_run_and_a_resume_keeps_its_id(tmp_path):
    run_dir = tmp_path / "run"
    first = run_script(
        "train.py",
        "debug=fast",
        "trainer.max_epochs=2",
        "logger=[csv,wandb]",
        f"hydra.run.dir={run_dir}",
    )
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = run_script("train.py", f"resume={run_dir}", "trainer.max_epochs=3")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    run_id = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["trackers"][
        "wandb_run_id"
    ]
    folders = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert [folder.name.rsplit("-", 1)[1] for folder in folders] == [run_id, run_id]  # one run
    before, after = (wandb_history(folder / f"run-{run_id}.wandb") for folder in folders)
    epochs = [row for row in {**before, **after}.values() if "val/acc" in row]
    assert [row["_step"] for row in epochs] == [4, 8, 12]
    table = rows(run_dir / "metrics.csv")
    assert [row["val/acc"] for row in epochs] == pytest.approx([float(r["val/acc"]) for r in table])
    assert min(after) > max(before)  # the resumed run goes on from the checkpoint's step
    assert before[4]["val/confusion_matrix/_type"] == "image-file"
    images = list(folders[0].glob("files/media/images/val/*.png"))
    assert {image.name.split("_")[0] for image in images} == {"confusion", "worst"}
    # The config goes in when the run opens (a preempted run shows it too): its run record.
    [opened] = [
        r.run for r in wandb_records(folders[0] / f"run-{run_id}.wandb") if r.HasField("run")
    ]
    assert {"/".join(i.nested_key) or i.key for i in opened.config.update} >= {"model/_target_"}


def test_mlflow_without_a_server_logs_to_a_sqlite_store_in_the_log_folder(tmp_path):
    """Preempted mid-run: the run's config is in MLflow already (logged when it opened)."""
    from mlflow.tracking import MlflowClient

    run = ["logger=mlflow", f"paths.log_dir={tmp_path}"]
    result = sigterm_mid_training(tmp_path / "run", *run, after_s=1.0)
    assert result.returncode == PREEMPTED_EXIT_CODE, result.stderr[-3000:]
    assert "logger: mlflow failed" not in (tmp_path / "run" / "train.log").read_text()
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    [experiment] = [e for e in client.search_experiments() if e.name == "default"]
    [logged] = client.search_runs([experiment.experiment_id])
    assert logged.data.params["model/_target_"] == "project.models.cnn.SmallCNN"
    artifacts = [a.path for a in client.list_artifacts(logged.info.run_id)]
    assert "config.txt" in artifacts and (tmp_path / "mlartifacts").is_dir()


def test_an_mlflow_server_that_is_down_is_a_warning(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once closed
    result = subprocess.run(
        [sys.executable, "train.py", "debug=fast", "logger=mlflow",
         f"logger.mlflow_uri=http://127.0.0.1:{port}", f"hydra.run.dir={tmp_path}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "logger: mlflow failed" in (tmp_path / "train.log").read_text()
    assert (tmp_path / "checkpoints" / "last.pt").is_file()
