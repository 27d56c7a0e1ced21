"""What a run logs besides train.log: TensorBoard events (`logger.tensorboard`), a
`metrics.csv` with one row per epoch (`logger.csv`) and an MLflow run (`logger.mlflow`,
mlflow_run.py), from rank 0 only.

The trainer talks to one `RunLogger`: scalars at steps, epoch metrics, images, text,
hyper-parameters with the final metrics. A backend that fails (a full disk, a broken
server) is switched off with one warning; training and checkpoints go on.
"""

import csv
import io
import logging
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summary

from project.checkpoint.files import atomic_write_text
from project.errors import UserError

log = logging.getLogger(__name__)
METRICS_CSV = "metrics.csv"


def flatten_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a/b": 1}; values TensorBoard's hparams cannot show become strings."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_config(value, prefix=f"{name}/"))
        elif isinstance(value, bool | int | float | str):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat


class RunLogger:
    """Writes TensorBoard events into the run folder; a no-op when disabled or not rank 0.

    Scalars are held in a list and handed to the SummaryWriter in batches, at most every
    `batch_seconds` (and at epoch ends and close). Handing them over one by one wakes the
    writer's background thread for every event, and the thread switches cost a tiny model
    about 2 ms per logged step: 9.6% of its training time at log_every_n_steps=50, 2%
    when batched (benchmarks/overhead.py). The writer itself only flushes to disk every
    120 s, so the batching does not delay what TensorBoard shows.
    """

    batch_seconds = 30.0

    def __init__(
        self,
        run_dir: Path | None,
        tensorboard: bool = True,
        purge_step: int | None = None,
        csv: bool = False,
        mlflow: dict[str, Any] | None = None,
    ):
        """`mlflow`: {"uri", "experiment", "run_name", "run_id"} to log to MLflow too."""
        # purge_step: a resumed run tells TensorBoard to discard events at or after this
        # step that the interrupted run had written, so curves continue without overlap.
        self.writer = (
            SummaryWriter(log_dir=str(run_dir), purge_step=purge_step)
            if tensorboard and run_dir
            else None
        )
        self.csv = CsvEpochLog(run_dir / METRICS_CSV, purge_step) if csv and run_dir else None
        self.mlflow = None
        if mlflow and run_dir:
            try:
                from project.trainer.mlflow_run import MlflowRun

                self.mlflow = MlflowRun(mlflow["uri"], mlflow["experiment"],
                                        mlflow["run_name"], mlflow.get("run_id"))  # fmt: skip
            except Exception as error:  # a server that is down, a missing package
                self._failed("mlflow", error)
        self.pending: list[tuple[dict[str, float], int]] = []
        self.last_handover = time.monotonic()

    def _failed(self, backend: str, error: Exception) -> None:
        """A logger must never stop training: switch the backend off, say so once."""
        log.warning("logger: %s failed (%s: %s); it is off for the rest of the run",
                    backend, type(error).__name__, error)  # fmt: skip
        setattr(self, {"tensorboard": "writer"}.get(backend, backend), None)

    def epoch_metrics(self, metrics: dict[str, float], epoch: int, step: int) -> None:
        """An epoch's metrics: TensorBoard scalars at `step`, and a row of metrics.csv."""
        self.scalars(metrics, step=step, now=True)
        if self.csv is not None:
            try:
                self.csv.append({"epoch": epoch, "step": step, **metrics})
            except (OSError, UserError) as error:  # UserError: atomic_write_text's OSError
                self._failed("csv", error)

    @property
    def tracker_ids(self) -> dict[str, str]:
        """What a checkpoint keeps so that a resumed run continues the same tracker runs."""
        return {"mlflow_run_id": self.mlflow.run_id} if self.mlflow is not None else {}

    def _to_mlflow(self, action, *args) -> None:
        if self.mlflow is not None:
            try:
                action(*args)
            except Exception as error:  # the server went away: go on without it
                self._failed("mlflow", error)

    def scalars(self, values: dict[str, float], step: int, now: bool = False) -> None:
        """Log `values` at `step`; `now` hands everything pending to the writer at once."""
        if self.writer is None and self.mlflow is None:
            return
        self.pending.append((values, step))
        if now or time.monotonic() - self.last_handover > self.batch_seconds:
            self.hand_over()

    def hand_over(self) -> None:
        if self.pending:
            self._to_mlflow(lambda: self.mlflow.metrics(self.pending))
        try:
            for values, step in self.pending if self.writer is not None else []:
                for name, value in values.items():
                    self.writer.add_scalar(name, value, step)
        except Exception as error:  # the writer's own errors vary (OSError, RuntimeError)
            self._failed("tensorboard", error)
        self.pending.clear()
        self.last_handover = time.monotonic()

    def flush(self) -> None:
        """Everything logged so far onto disk: called when a checkpoint is written, so a
        crash right after loses no event from before the checkpoint."""
        self.hand_over()
        if self.writer is not None:
            self.writer.flush()

    def training_step(self, step: int, loss: Tensor, lr: float) -> float:
        """The step's loss and LR (every `log_every_n_steps`); returns the loss as a float."""
        value = loss.item()
        self.scalars({"train/loss_step": value, "train/lr_step": lr}, step)
        return value

    def gradient_norms(self, module: nn.Module, step: int) -> None:
        """Total and per-parameter L2 norms of the gradients the step is about to use
        (before clipping), from the .grad tensors backward already filled: no extra pass.
        One host read (`trainer.log_grad_norm` steps only)."""
        named = [(name, p.grad) for name, p in module.named_parameters() if p.grad is not None]
        norms = torch.stack([torch.linalg.vector_norm(grad.detach().float()) for _, grad in named])
        values = torch.cat([torch.linalg.vector_norm(norms).view(1), norms]).tolist()
        scalars = {"train/grad_norm/total": values[0]}
        scalars.update(
            {f"train/grad_norm/{name}": v for (name, _), v in zip(named, values[1:], strict=True)}
        )
        self.scalars(scalars, step)

    def image(self, tag: str, image, step: int) -> None:
        """A (3, H, W) float image in 0..1."""
        self._to_mlflow(lambda: self.mlflow.image(tag, image, step))
        if self.writer is not None:
            self.hand_over()  # keep events in step order
            self.writer.add_image(tag, image, step)

    def hyperparameters(self, config: dict[str, Any], metrics: dict[str, float]) -> None:
        """The run's flattened config next to its final metrics (TensorBoard's HPARAMS tab).

        Written into the run's own event file, not the sub-folder `add_hparams` would make,
        so one run stays one folder. The tab reads each metric's values from the scalars of
        the same tag, which the caller has already logged at their real steps.
        """
        self._to_mlflow(lambda: self.mlflow.parameters(flatten_config(config)))
        if self.writer is None:
            return
        self.hand_over()
        experiment, start, end = hparams_summary(flatten_config(config), metrics)
        for summary in (experiment, start, end):
            self.writer.file_writer.add_summary(summary)

    def close(self) -> None:
        self.hand_over()
        self._to_mlflow(lambda: self.mlflow.close())
        if self.writer is not None:
            self.writer.close()


class CsvEpochLog:
    """`metrics.csv`: one row per epoch, a column per metric (the union over epochs).

    The file is rewritten whole and atomically at each epoch, so it is always readable
    with the csv module, even after a crash. A resumed run keeps the rows before its
    checkpoint's step and drops the ones the interrupted run wrote after it.
    """

    def __init__(self, path: Path, purge_step: int | None = None):
        self.path = path
        self.rows: list[dict[str, Any]] = []
        if purge_step is not None and path.is_file():
            with open(path, newline="") as file:
                self.rows = [row for row in csv.DictReader(file) if int(row["step"]) < purge_step]

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        columns = list(dict.fromkeys(key for row in self.rows for key in row))
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns)
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(text.getvalue(), self.path)
