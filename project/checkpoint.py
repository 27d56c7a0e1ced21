"""Checkpoints: atomic writes, safe loads, and the policy deciding what to keep.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it loads
with `torch.load(weights_only=True)`: no pickled objects, nothing that can run code.

Keys (FORMAT_VERSION 1):
    format_version, project_version   what wrote it
    config                            the resolved run config (plain dict)
    model, optimizer, scheduler, scaler   state dicts (scheduler/scaler may be None)
    epoch, global_step                completed epochs and optimizer steps
    metrics                           the metrics of the epoch that produced it
    best_score, monitor, mode         the policy's state when it was written
"""

import math
import os
from pathlib import Path
from typing import Any

import torch

from project import __version__
from project.errors import UserError

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "config", "model")
CHECKPOINT_DIRNAME = "checkpoints"


def atomic_save(state: dict[str, Any], path: Path) -> None:
    """Write `state` to `path` so that a crash at any moment leaves either the old file or
    the new one, never a truncated mix: temporary file in the same folder, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as file:
            torch.save(state, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    # Persist the rename itself: without syncing the folder, a power cut can lose it.
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint written by this project, or raise a one-line `UserError`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for truncated or foreign files
        reason = (
            str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        )
        raise UserError(
            f"cannot read checkpoint {path}: corrupt or not a checkpoint ({reason})"
        ) from None
    if not isinstance(state, dict) or any(key not in state for key in REQUIRED_KEYS):
        raise UserError(
            f"{path} is not a checkpoint of this project (missing {', '.join(REQUIRED_KEYS)})"
        )
    if state["format_version"] > FORMAT_VERSION:
        raise UserError(
            f"{path} has checkpoint format {state['format_version']}, newer than this code "
            f"reads ({FORMAT_VERSION}); update the project"
        )
    return state


def improves(score: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    """Is `score` better than `best` by more than `min_delta`? NaN never is; anything beats None.

    The one definition of "better" shared by best.pt and early stopping."""
    if math.isnan(score):
        return False
    if best is None:
        return True
    if mode == "max":
        return score > best + min_delta
    return score < best - min_delta


class CheckpointPolicy:
    """Decides when to write `last.pt` and `best.pt` in `<run dir>/checkpoints/`.

    `monitor` names a validation metric (for example `val/acc`) and `mode` says whether
    higher (`max`) or lower (`min`) is better. Only the process that writes (rank 0)
    should own a policy.
    """

    def __init__(self, run_dir: Path, monitor: str, mode: str = "max", save_last: bool = True):
        self.directory = Path(run_dir) / CHECKPOINT_DIRNAME
        self.monitor = monitor
        self.mode = mode
        self.save_last = save_last
        self.best_score: float | None = None

    @property
    def last_path(self) -> Path:
        return self.directory / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.directory / "best.pt"

    def is_improvement(self, score: float) -> bool:
        return improves(score, self.best_score, self.mode)

    def state_dict(self) -> dict[str, Any]:
        return {"best_score": self.best_score, "monitor": self.monitor, "mode": self.mode}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_score = state.get("best_score")

    def on_validation_end(
        self, metrics: dict[str, float], training_state: dict[str, Any]
    ) -> list[Path]:
        """Write the checkpoints this epoch calls for; returns the paths written."""
        written = []
        score = metrics.get(self.monitor)
        improved = score is not None and self.is_improvement(score)
        if improved:
            self.best_score = score
        state = {
            "format_version": FORMAT_VERSION,
            "project_version": __version__,
            **training_state,
            "metrics": dict(metrics),
            **self.state_dict(),
        }
        if improved:
            atomic_save(state, self.best_path)
            written.append(self.best_path)
        if self.save_last:
            atomic_save(state, self.last_path)
            written.append(self.last_path)
        return written


def load_model_weights(model: torch.nn.Module, weights: dict[str, Any], path: Path) -> None:
    """Load a checkpoint's model weights, with a one-line error when they do not fit."""
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise UserError(f"{path} does not fit the model {type(model).__name__}: {first}") from None
