"""The checkpoint format: what a file holds, and loading one safely.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it loads
with `torch.load(weights_only=True)`: no pickled objects, nothing that can run code. Its
config is checked (project/trusted_config.py) before anyone builds from it.

Keys (FORMAT_VERSION 2):
    format_version, project_version   what wrote it
    config                            the resolved run config (plain dict)
    model, optimizer, scheduler, scaler, ema   state dicts (the last three may be None)
    inference_weights                 "ema" or "model": which weights evaluation and export use
    epoch, global_step                completed epochs and optimizer steps
    position                          batches done in the current epoch and their losses
    early_stopping, rng               early-stopping counter; Python, NumPy, torch RNG states
    metrics                           the latest validation metrics
    checkpoint_policy                 best score, kept snapshots (the manifest's content)

Every file is a full training state, so any of them resumes a run.
"""

import os
import warnings
from pathlib import Path
from typing import Any

import torch

from project.errors import UserError
from project.trusted_config import check_trusted

FORMAT_VERSION = 2
REQUIRED_KEYS = ("format_version", "config", "model")


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint written by this project, or raise a one-line `UserError`."""
    path = Path(path)
    state = _load(path)
    if (
        not isinstance(state, dict)
        or any(key not in state for key in REQUIRED_KEYS)
        or not isinstance(state["config"], dict)
        or not state["config"]
        or not isinstance(state["model"], dict)
    ):
        raise UserError(
            f"{path} is not a checkpoint of this project (it needs {', '.join(REQUIRED_KEYS)}, "
            "with a non-empty config)"
        )
    _check_version(state, path)
    # Everything that rebuilds objects from this config gets it from here: check it first.
    check_trusted(state["config"], path)
    return state


def _load(path: Path) -> Any:
    # weights_only=True: the unpickler accepts tensors and plain containers only, so a
    # file crafted to run code when loaded is refused. Never pass False in this project.
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():  # a raw pickle's protocol warning adds nothing
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for truncated or foreign files
        text = str(error).strip()
        if "Weights only load failed" in text and _starts_as_pickle(path):
            # A pickled object in a zip checkpoint, a legacy (non-zip) torch file or a
            # plain pickle: the restricted unpickler names the global, or the opcode.
            found = (
                f" ({text.split('GLOBAL ', 1)[1].split(' ', 1)[0]})" if "GLOBAL " in text else ""
            )
            raise UserError(
                f"refused to load {path}: it holds pickled Python objects{found}, which could "
                "run code; checkpoints of this project hold only tensors and plain containers"
            ) from None
        reason = text.splitlines()[0][:200] if text else type(error).__name__
        raise UserError(
            f"cannot read checkpoint {path}: corrupt or not a checkpoint ({reason})"
        ) from None


def _starts_as_pickle(path: Path) -> bool:
    """Zip checkpoints, legacy torch files and plain pickles (protocol 2+) all begin with
    a pickle or a zip header; random bytes do not."""
    with open(path, "rb") as file:
        head = file.read(4)
    return head.startswith((b"\x80", b"PK\x03\x04"))


def _check_version(state: dict[str, Any], path: Path) -> None:
    version = state["format_version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise UserError(
            f"{path} is not a checkpoint of this project (format_version {version!r} is not "
            "a positive integer)"
        )
    if version > FORMAT_VERSION:
        raise UserError(
            f"{path} has checkpoint format {state['format_version']}, newer than this code "
            f"reads ({FORMAT_VERSION}); update the project"
        )


def inference_weights(state: dict[str, Any]) -> dict[str, Any]:
    """The weights evaluation, export and fine-tuning should use: the EMA weights when the
    run kept an average and validated with it (`inference_weights: ema`), else the model's."""
    if state.get("inference_weights") == "ema" and state.get("ema") is not None:
        return state["ema"]
    return state["model"]


def read_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Model weights from a checkpoint of this project, or from a plain state-dict file
    (what `torch.save(model.state_dict(), path)` writes); loaded with weights_only=True."""
    path = Path(path)
    state = _load(path)
    if isinstance(state, dict) and "format_version" in state and "model" in state:
        _check_version(state, path)
        check_trusted(state.get("config"), path)  # not built here; refused all the same
        weights = inference_weights(state)
    elif (
        isinstance(state, dict)
        and state
        and all(isinstance(value, torch.Tensor) for value in state.values())
    ):
        weights = state
    else:
        raise UserError(f"{path} holds neither a checkpoint of this project nor a state dict")
    # Third-party files saved from a wrapped model: DataParallel/DDP add "module.",
    # torch.compile "_orig_mod."; this project never saves them.
    for prefix in ("module.", "_orig_mod."):
        if all(key.startswith(prefix) for key in weights):
            weights = {key.removeprefix(prefix): value for key, value in weights.items()}
    return weights
