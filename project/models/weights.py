"""Fitting weights into a model (`model.pretrained=`, evaluate, export), and saying
exactly what does not fit: missing and unexpected keys, shape mismatches."""

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from project.checkpoint.format import read_weights
from project.errors import UserError

log = logging.getLogger(__name__)


def load_model_weights(
    model: torch.nn.Module, weights: dict[str, Any], path: Path, strict: bool = True
) -> dict[str, list[str]]:
    """Load `weights` into `model`. Strict: every key must exist on both sides with the same
    shape, else one line listing what differs. Not strict: load what matches; return the
    rest by kind (missing, unexpected, shape) for the caller to report."""
    expected = model.state_dict()
    mismatched = [
        key for key in expected if key in weights and weights[key].shape != expected[key].shape
    ]
    problems = {
        "missing": [key for key in expected if key not in weights],
        "unexpected": [key for key in weights if key not in expected],
        "shape": [
            f"{key} {tuple(weights[key].shape)} vs {tuple(expected[key].shape)}"
            for key in mismatched
        ],
    }
    if strict and any(problems.values()):
        raise UserError(
            f"{path} does not fit the model {type(model).__name__}: {describe(problems)}"
            "; model.pretrained_strict=false loads only what fits"
        )
    matching = {k: v for k, v in weights.items() if k in expected and k not in mismatched}
    model.load_state_dict(matching, strict=False)
    return problems


def describe(problems: dict[str, list[str]], shown: int = 3) -> str:
    parts = []
    for kind, label in (
        ("missing", "missing"),
        ("unexpected", "unexpected"),
        ("shape", "shape mismatch"),
    ):
        items = problems[kind]
        if items:
            more = f", ... {len(items) - shown} more" if len(items) > shown else ""
            parts.append(f"{len(items)} {label} ({', '.join(items[:shown])}{more})")
    return "; ".join(parts)


def load_pretrained(model: nn.Module, path: str, strict: bool) -> None:
    """Start from another run's weights (fine-tuning): weights only, no optimizer state.
    The EMA weights when that run validated with them."""
    problems = load_model_weights(model, read_weights(path), path, strict=strict)
    if any(problems.values()):
        log.warning(
            "model.pretrained=%s: loaded what fits; not loaded: %s", path, describe(problems)
        )
    else:
        log.info("model.pretrained=%s: all weights loaded", path)
