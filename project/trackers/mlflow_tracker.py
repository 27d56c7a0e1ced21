"""`logger=mlflow`: the run's metrics, config, config text and images in MLflow.

A local SQLite store (`<paths.log_dir>/mlflow.db`, artifacts in `mlartifacts/` beside it)
unless `logger.mlflow_uri` names a tracking server. (MLflow 3 refuses its old file store
`mlruns/` unless MLFLOW_ALLOW_FILE_STORE=true is set.) The run id is kept in the
checkpoint, so `resume=` continues the same MLflow run; steps logged after the checkpoint
by an interrupted run stay in MLflow's history (it cannot delete metric points), which
TensorBoard's purge and metrics.csv do drop.
mlflow is imported only when this backend is on (the optional extra `tracking`).
"""

import time
from pathlib import Path
from typing import Any

from torch import Tensor

from project.trackers import Tracker, image_pixels, import_optional

MAX_PARAM_LENGTH = 500  # MLflow refuses longer parameter values


def local_artifacts(tracking_uri: str) -> str | None:
    """A local SQLite store keeps its artifacts beside the database, not in MLflow's
    default `./mlartifacts` of whatever folder the run was started from."""
    if not tracking_uri.startswith("sqlite:///"):
        return None  # a server decides
    return (Path(tracking_uri.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()


class MlflowTracker(Tracker):
    name = "mlflow"
    takes_images = True

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        run_name: str,
        run_id: str | None,
        flat_config: dict[str, Any],
    ):
        tracking = import_optional("mlflow.tracking", logger="mlflow", extra="tracking")
        self.client = tracking.MlflowClient(tracking_uri)
        if run_id is None:
            found = self.client.get_experiment_by_name(experiment)
            experiment_id = (
                found.experiment_id
                if found
                else self.client.create_experiment(experiment, local_artifacts(tracking_uri))
            )
            run_id = self.client.create_run(experiment_id, run_name=run_name).info.run_id
            self._log_parameters(run_id, flat_config)
        else:  # its parameters were logged when it started: MLflow refuses to change them
            self.client.update_run(run_id, status="RUNNING")
        self.run_id = run_id

    def scalars(self, batch: list[tuple[dict[str, float], int]]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [
            Metric(name, float(value), now, step)
            for values, step in batch
            for name, value in values.items()
        ]
        for start in range(0, len(metrics), 1000):  # MLflow's batch limit
            self.client.log_batch(self.run_id, metrics=metrics[start : start + 1000])

    def _log_parameters(self, run_id: str, flat_config: dict[str, Any]) -> None:
        from mlflow.entities import Param

        params = [Param(key, str(value)[:MAX_PARAM_LENGTH]) for key, value in flat_config.items()]
        for start in range(0, len(params), 100):
            self.client.log_batch(run_id, params=params[start : start + 100])

    def image(self, tag: str, image: Tensor, step: int) -> None:
        self.client.log_image(
            self.run_id, image_pixels(image), artifact_file=f"{tag}/step_{step:07d}.png"
        )

    def text(self, tag: str, text: str, step: int) -> None:
        self.client.log_text(self.run_id, text, artifact_file=f"{tag}.txt")

    def close(self) -> None:
        self.client.set_terminated(self.run_id)
