"""`python export.py ckpt=<path> quantize=int8`: quantize a trained classifier, save it, and
measure what quantization cost and gained, all in one run on the run's own data."""

import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from project.deploy.export import TrainedModel, export_with_batch_axis, save_program
from project.deploy.quantize import (
    calibration_images,
    quantize_post_training,
    serialized_bytes,
    signal_to_quantization_noise,
)
from project.errors import UserError
from project.trainer import is_classifier


def predict(model: nn.Module, loader) -> tuple[Tensor, Tensor]:
    """Logits and targets over a whole split."""
    logits, targets = [], []
    with torch.no_grad():
        for images, labels in loader:
            logits.append(model(images))
            targets.append(labels)
    return torch.cat(logits), torch.cat(targets)


def accuracy(logits: Tensor, targets: Tensor) -> float:
    return (logits.argmax(dim=1) == targets).float().mean().item()


def latency_ms(model: nn.Module, images: Tensor, runs: int) -> float:
    """Median milliseconds per batch of `model` compiled by Inductor with frozen weights,
    the way a CPU deployment runs it (int8 graphs only become int8 kernels when compiled)."""
    with torch.no_grad(), torch._inductor.config.patch(freezing=True):
        compiled = torch.compile(model)
        for _ in range(3):  # compile, then warm caches
            compiled(images)
        timings = []
        for _ in range(runs):
            start = time.perf_counter()
            compiled(images)
            timings.append(time.perf_counter() - start)
    return sorted(timings)[len(timings) // 2] * 1e3


def program_bytes(model: nn.Module, example: Tensor) -> int:
    """Size of the model saved as a torch.export program (graph and weights)."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "model.pt2"
        save_program(export_with_batch_axis(model, example), path)
        return path.stat().st_size


def export_int8(trained: TrainedModel, quantize_cfg: DictConfig) -> tuple[Path, dict[str, Any]]:
    """Write `<checkpoint>.int8.pt2` and return its path with the figures."""
    if not is_classifier(trained.run_cfg.task):
        raise UserError(
            f"quantize=int8 takes classifiers (its report compares accuracy); "
            f"{trained.checkpoint} is a {trained.run_cfg.task} run"
        )
    if quantize_cfg.calibration_batches < 1:
        raise UserError(
            f"quantize.calibration_batches={quantize_cfg.calibration_batches} is out of "
            "range; it must be at least 1"
        )
    fp32 = trained.model
    calibration = calibration_images(trained.loader("train"), quantize_cfg.calibration_batches)
    int8 = quantize_post_training(fp32, calibration, calibration[0])

    val_loader = trained.loader("val")
    fp32_logits, targets = predict(fp32, val_loader)
    int8_logits, _ = predict(int8, val_loader)
    example = next(iter(val_loader))[0][: quantize_cfg.latency_batch_size]
    fp32_ms = latency_ms(fp32, example, quantize_cfg.latency_runs)
    int8_ms = latency_ms(int8, example, quantize_cfg.latency_runs)

    path = trained.checkpoint.with_suffix(".int8.pt2")
    save_program(export_with_batch_axis(int8, calibration[0]), path)
    report = {
        "checkpoint": str(trained.checkpoint),
        "weights": trained.weights,
        "calibration_batches": len(calibration),
        "fp32_accuracy": accuracy(fp32_logits, targets),
        "int8_accuracy": accuracy(int8_logits, targets),
        "sqnr_db": signal_to_quantization_noise(fp32_logits, int8_logits),
        "fp32_weights_bytes": serialized_bytes(fp32),
        "int8_weights_bytes": serialized_bytes(int8),
        "fp32_file_bytes": program_bytes(fp32, calibration[0]),
        "int8_file_bytes": path.stat().st_size,
        "latency_batch_size": len(example),
        "fp32_latency_ms": fp32_ms,
        "int8_latency_ms": int8_ms,
    }
    report["accuracy_drop_points"] = 100 * (report["fp32_accuracy"] - report["int8_accuracy"])
    report["weights_size_ratio"] = report["fp32_weights_bytes"] / report["int8_weights_bytes"]
    report["file_size_ratio"] = report["fp32_file_bytes"] / report["int8_file_bytes"]
    report["latency_speedup"] = fp32_ms / int8_ms
    return path, report
