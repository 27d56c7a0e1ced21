"""Quantization-aware fine-tuning: `python train.py model.pretrained=<ckpt> callbacks=qat`.

The trained model is exported to a graph with fake quantization (torchao PT2E), the
Trainer fine-tunes that graph as any model, and when the run ends the best weights are
converted to int8 and compared with post-training quantization of the starting weights.
"""

import json
import logging
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn

from project.callbacks import Callback
from project.checkpoint.format import inference_weights, load_checkpoint
from project.data.loaders import build_dataset
from project.deploy.export import export_with_batch_axis, save_program
from project.deploy.int8 import accuracy, predict
from project.deploy.quantize import (
    CALIBRATION_BATCHES,
    calibration_images,
    convert_quantization_aware,
    prepare_quantization_aware,
    quantize_post_training,
    size_observers_like,
)
from project.errors import UserError
from project.models.build import build_model
from project.models.trained import inference_form
from project.trainer import is_classifier

log = logging.getLogger(__name__)


def check_qat_config(cfg: DictConfig) -> None:
    """callbacks=qat fine-tunes one exported graph in one process, in fp32."""
    trainer = cfg.trainer
    conflicts = {
        "trainer.ema_decay": trainer.ema_decay > 0,
        "trainer.compile": trainer.compile,
        "trainer.precision": trainer.precision != "32",
        "trainer.gpus": trainer.gpus > 1,
        "trainer.num_processes": trainer.num_processes > 1,
        "trainer.channels_last": trainer.channels_last,
    }
    used = [key for key, conflict in conflicts.items() if conflict]
    if used:
        raise UserError(
            f"callbacks=qat runs in one process in fp32 without EMA, compile or "
            f"channels_last; unset {', '.join(used)}"
        )
    if not is_classifier(cfg.task):
        raise UserError(f"callbacks=qat takes classifiers; this run's task is {cfg.task}")
    if not cfg.model.get("pretrained"):
        log.warning(
            "callbacks=qat without model.pretrained: quantization-aware training from "
            "random weights; it usually fine-tunes a trained checkpoint"
        )


def example_batch(dataset) -> torch.Tensor:
    # Two images: with one, torch.export would fix the batch axis to 1.
    return torch.stack([dataset[0][0], dataset[1][0]])


def prepare(
    model: nn.Module, cfg: DictConfig, train_dataset, weights: dict | None = None
) -> nn.Module:
    """The fake-quantized graph to fine-tune; with `weights` (the checkpoint of such a run,
    to evaluate) its observers are sized to take them."""
    check_qat_config(cfg)
    log.info("callbacks=qat: fine-tuning with int8 fake quantization (torchao PT2E)")
    prepared = prepare_quantization_aware(model, example_batch(train_dataset))
    if weights is not None:
        size_observers_like(prepared, weights)
    return prepared


def finish(
    module: nn.Module, cfg: DictConfig, run_dir: Path, best_checkpoint: Path, loaders
) -> dict:
    """Convert the best fine-tuned weights to int8, save `checkpoints/int8.pt2`, and write
    qat.json with its accuracy next to post-training quantization's."""
    module = module.cpu()
    if best_checkpoint.exists():
        module.load_state_dict(inference_weights(load_checkpoint(best_checkpoint)))
    int8 = convert_quantization_aware(module)
    logits, targets = predict(int8, loaders["val"])
    calibration = calibration_images(loaders["train"], CALIBRATION_BATCHES)
    path = best_checkpoint.with_name("int8.pt2")
    save_program(export_with_batch_axis(int8, calibration[0]), path)

    report = {"int8_model": str(path), "qat_int8_accuracy": accuracy(logits, targets)}
    if cfg.model.get("pretrained"):  # the baseline: quantize the starting weights directly
        start = inference_form(build_model(cfg.model))
        ptq = quantize_post_training(start, calibration, calibration[0])
        report["pretrained_fp32_accuracy"] = accuracy(*predict(start, loaders["val"]))
        report["ptq_int8_accuracy"] = accuracy(*predict(ptq, loaders["val"]))
    (run_dir / "qat.json").write_text(json.dumps(report, indent=2) + "\n")
    log.info(
        "callbacks=qat: int8 model %s; %s",
        path,
        ", ".join(f"{key}={value:.4f}" for key, value in report.items() if key != "int8_model"),
    )
    return report


class QuantizationAwareTraining(Callback):
    """`callbacks=qat` (configs/callbacks/qat.yaml): the core calls these two methods."""

    def setup_model(
        self, model: nn.Module, cfg: DictConfig, dataset, weights: dict | None = None
    ) -> nn.Module:
        if dataset is None:  # a checkpoint rebuilt without data at hand: the example inputs
            dataset = build_dataset(cfg.dataset, "val")
        return prepare(model, cfg, dataset, weights)

    def on_fit_end(self, trainer, cfg: DictConfig, loaders) -> None:
        if trainer.process.is_main:
            best = trainer.checkpoint_policy.best_path
            finish(trainer.module, cfg, trainer.run_dir, best, loaders)
