"""Seeds and the `trainer.deterministic` switch."""

import os
import random

import numpy as np
import torch

from project.errors import UserError


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def make_deterministic(enabled: bool, on_cuda: bool, cudnn_benchmark: bool | None = None) -> bool:
    """One switch for reproducible runs: deterministic kernels, no cuDNN autotuning.

    Off, cuDNN benchmark mode (unless `cudnn_benchmark=False`) times the conv algorithms
    for each new input shape and keeps the fastest, which can differ run to run. Returns
    whether benchmark mode is on.
    """
    if enabled and cudnn_benchmark:
        raise UserError(
            "trainer.cudnn_benchmark=true contradicts trainer.deterministic=true (autotuning picks kernels that vary run to run); drop one of them"
        )
    if enabled:
        # cuBLAS needs a fixed workspace to be deterministic; must be set before its first use.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled)
    torch.backends.cudnn.deterministic = enabled
    benchmark = on_cuda and not enabled if cudnn_benchmark is None else cudnn_benchmark
    torch.backends.cudnn.benchmark = benchmark
    return benchmark


def rng_state() -> dict:
    """Every random stream the training loop draws from, in a form that
    `torch.load(weights_only=True)` accepts: tensors, ints, lists (no NumPy arrays)."""
    version, python_state, gauss = random.getstate()
    name, keys, position, has_gauss, cached_gauss = np.random.get_state()
    return {
        "python": {"version": version, "state": list(python_state), "gauss": gauss},
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gauss": float(cached_gauss),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: dict) -> None:
    python = state["python"]
    random.setstate((python["version"], tuple(python["state"]), python["gauss"]))
    numpy = state["numpy"]
    np.random.set_state(
        (
            numpy["name"],
            numpy["keys"].numpy().astype(np.uint32),
            numpy["position"],
            numpy["has_gauss"],
            numpy["cached_gauss"],
        )
    )
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
