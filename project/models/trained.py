"""A trained model rebuilt from its checkpoint: the one way evaluate, export, a
distillation teacher, QAT and the benchmarks get a checkpoint's model."""

from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn

from project.callbacks import build_callbacks
from project.checkpoint.format import inference_weights
from project.models.build import build_model
from project.models.repvgg import reparameterize
from project.models.weights import load_model_weights


def rebuild_trained_model(
    state: dict[str, Any], path: Path, *, dataset: Any = None, deploy_form: bool = False
) -> nn.Module:
    """The model of a loaded checkpoint (`format.load_checkpoint`, which checked its config),
    built from the config saved in it, shaped by its callbacks (QAT's fake-quantized graph;
    `dataset` gives them example inputs), with the weights the run validated best with (the
    EMA weights when it chose them). `deploy_form`: in `inference_form`."""
    run_cfg = OmegaConf.create(state["config"])
    model = build_model(run_cfg.model, initialize=False)
    weights = inference_weights(state)
    for callback in build_callbacks(run_cfg):
        model = callback.setup_model(model, run_cfg, dataset, weights=weights)
    load_model_weights(model, weights, path)
    return inference_form(model) if deploy_form else model


def revert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """The inverse of `nn.SyncBatchNorm.convert_sync_batchnorm`: SyncBatchNorm runs only
    under torch.distributed on CUDA, so an exported or quantized model needs BatchNorm2d
    (same statistics and affine weights; SyncBN only differs while training)."""
    converted = module
    if isinstance(module, nn.SyncBatchNorm):
        converted = nn.BatchNorm2d(
            module.num_features, module.eps, module.momentum, module.affine,
            module.track_running_stats,
        )  # fmt: skip
        if module.affine:
            with torch.no_grad():
                converted.weight.copy_(module.weight)
                converted.bias.copy_(module.bias)
        converted.running_mean = module.running_mean
        converted.running_var = module.running_var
        converted.num_batches_tracked = module.num_batches_tracked
        converted.train(module.training)
    for name, child in module.named_children():
        converted.add_module(name, revert_sync_batchnorm(child))
    return converted


def inference_form(model: nn.Module) -> nn.Module:
    """`model` in eval mode with RepVGG blocks fused into one 3x3 conv each and SyncBatchNorm
    turned into BatchNorm: what deployment runs. Same outputs as `model.eval()`."""
    model = revert_sync_batchnorm(model)
    reparameterize(model)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model.eval()
