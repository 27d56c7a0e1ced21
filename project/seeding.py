"""Seeds and the `trainer.deterministic` switch."""

import os
import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def make_deterministic(enabled: bool, on_cuda: bool) -> None:
    """One switch for reproducible runs: deterministic kernels, no cuDNN autotuning.

    Off, cuDNN benchmark mode picks the fastest kernels, which vary run to run.
    """
    if enabled:
        # cuBLAS needs a fixed workspace to be deterministic; must be set before its first use.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = on_cuda and not enabled
