"""Experiment trackers behind `logger=`: TensorBoard, metrics.csv, MLflow, Weights & Biases.

The trainer and the tasks talk to one `RunLogger` (run_logger.py); it hands what they log
to each backend that is on, a `Tracker` subclass in its own file here. Several can be on
at once: `logger=[tensorboard,csv,mlflow,wandb]`. Adding one (say, Neptune): subclass
`Tracker`, override what it can record, add it to the table in `open_backends` below,
a flag to `LoggerConfig` (project/schema.py) and a configs/logger/<name>.yaml setting it.
"""

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

from torch import Tensor


class Tracker:
    """One backend. Each method is a no-op here: a backend overrides what it records."""

    name = "tracker"
    takes_images = False
    run_id: str | None = None  # kept in checkpoints: a resume continues the same run

    def scalars(self, batch: list[tuple[dict[str, float], int]]) -> None:
        """(values, step) pairs in step order, handed over in batches (run_logger.py)."""

    def epoch_metrics(self, metrics: dict[str, float], epoch: int, step: int) -> None:
        """An epoch's metrics, once per epoch (they also arrive through `scalars`)."""

    def image(self, tag: str, image: Tensor, step: int) -> None:
        """A (3, H, W) float image in 0..1."""

    def text(self, tag: str, text: str, step: int) -> None: ...

    def hyperparameters(self, flat_config: dict[str, Any], metrics: dict[str, float]) -> None:
        """The run's flattened config beside its final metrics, once at the end."""

    def flush(self) -> None: ...

    def close(self) -> None: ...


def open_backends(
    settings: Any,
    run_dir: Path,
    purge_step: int | None,
    resumed_ids: dict[str, str],
    flat_config: dict[str, Any],
) -> list[tuple[str, Any]]:
    """(name, a function that opens it) for each backend `settings` (a LoggerConfig)
    turns on. Opening is left to the caller, which turns a failure into a warning.
    Trackers with a run of their own get the config when it opens, so a run that crashes
    or is preempted still shows what it trained."""
    from project.trackers.csv_log import CsvTracker
    from project.trackers.mlflow_tracker import MlflowTracker
    from project.trackers.tensorboard import TensorBoardTracker
    from project.trackers.wandb_tracker import WandbTracker

    backends = {
        "tensorboard": lambda: TensorBoardTracker(run_dir, purge_step),
        "csv": lambda: CsvTracker(run_dir, purge_step),
        "mlflow": lambda: MlflowTracker(
            settings.mlflow_uri,
            settings.mlflow_experiment,
            run_dir.name,
            resumed_ids.get("mlflow_run_id"),
            flat_config,
        ),
        "wandb": lambda: WandbTracker(
            run_dir,
            settings.wandb_project,
            settings.wandb_entity,
            settings.wandb_mode,
            resumed_ids.get("wandb_run_id"),
            flat_config,
        ),
    }
    return [(name, opener) for name, opener in backends.items() if getattr(settings, name)]


def import_optional(module: str, logger: str, extra: str) -> ModuleType:
    """`module` of an optional tracker, or an ImportError saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        package = module.partition(".")[0]
        raise ImportError(
            f"logger={logger} needs {package}: uv sync --extra {extra} (make env includes it)"
        ) from None


def flatten_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a/b": 1}; values trackers cannot show become strings."""
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


def image_pixels(image: Tensor):
    """A (3, H, W) float image in 0..1 as an (H, W, 3) uint8 numpy array."""
    return (image.detach().clamp(0, 1).permute(1, 2, 0).cpu() * 255).round().byte().numpy()
