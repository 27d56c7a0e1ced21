"""int8 quantization through torchao's PT2E flow (torch.ao.quantization's eager and FX
APIs are deprecated): export the model's graph, let a backend's quantizer annotate it,
observe activation ranges on calibration batches (or train with fake quantization), then
convert to a graph with int8 weights and quantize/dequantize pairs around each op, which
Inductor fuses into int8 kernels on x86 CPUs (oneDNN; VNNI or AMX where present).
"""

import io
import itertools
import types
from collections.abc import Iterable

import torch
from torch import Tensor, nn
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e, prepare_qat_pt2e
from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
    X86InductorQuantizer,
    get_default_x86_inductor_quantization_config,
)

from project.deploy.export import export_with_batch_axis

CALIBRATION_BATCHES = 16  # the default of configs/quantize/int8.yaml


def calibration_images(loader: Iterable, batches: int) -> list[Tensor]:
    """The images of the first `batches` batches of `loader`, for calibration."""
    return [images for images, *_ in itertools.islice(loader, batches)]


def _quantizer(is_qat: bool) -> X86InductorQuantizer:
    # Per-channel symmetric int8 weights, per-tensor affine uint8 activations: the
    # configuration Inductor's x86 int8 kernels take.
    config = get_default_x86_inductor_quantization_config(is_qat=is_qat)
    return X86InductorQuantizer().set_global(config)


def _graph(model: nn.Module, example: Tensor) -> torch.fx.GraphModule:
    return export_with_batch_axis(model, example).module()


def quantize_post_training(
    model: nn.Module, calibration_batches: Iterable[Tensor], example: Tensor
) -> torch.fx.GraphModule:
    """Static post-training quantization of `model` (in eval mode) to int8, with
    activation ranges observed on `calibration_batches`."""
    prepared = prepare_pt2e(_graph(model.eval(), example), _quantizer(is_qat=False))
    with torch.no_grad():
        for images in calibration_batches:
            prepared(images)
    return drop_unused_weights(convert_pt2e(prepared))


def prepare_quantization_aware(model: nn.Module, example: Tensor) -> torch.fx.GraphModule:
    """`model` with fake quantization inserted, ready to fine-tune (callbacks=qat). Its
    `.train()` and `.eval()` switch BatchNorm and dropout as a normal module's do, and
    switch the observers on and off."""
    from torchao.quantization.pt2e import allow_exported_model_train_eval

    prepared = prepare_qat_pt2e(_graph(model.train(), example), _quantizer(is_qat=True))
    return _observe_only_in_training(allow_exported_model_train_eval(prepared))


def _observe_only_in_training(prepared: torch.fx.GraphModule) -> torch.fx.GraphModule:
    # Observers left on in eval mode would move the quantization ranges to each validation
    # set they see: the scores would not be those of the saved state, and evaluating the
    # same checkpoint twice would give two numbers. The int8 model is built from the ranges
    # the training batches set.
    from torchao.quantization.pt2e.fake_quantize import disable_observer, enable_observer

    switch_batchnorm_and_dropout = prepared.train

    def train(self, mode: bool = True):
        switch_batchnorm_and_dropout(mode)
        self.apply(enable_observer if mode else disable_observer)
        for module in self.modules():
            module.training = mode
        return self

    prepared.train = types.MethodType(train, prepared)
    prepared.eval = types.MethodType(lambda self: self.train(False), prepared)
    return prepared


def size_observers_like(prepared: torch.fx.GraphModule, weights: dict[str, Tensor]) -> None:
    """Observers and fake quantizers size their per-channel buffers (min/max, scale, zero
    point) on the first batch they see: a freshly prepared graph holds placeholders of shape
    (0,) or (1,) where a trained checkpoint has (C,). Their own load_state_dict resizes them,
    but our shape check (load_model_weights) runs first; give the placeholders the saved
    shapes."""
    for name, buffer in prepared.named_buffers():
        saved = weights.get(name)
        if saved is not None and buffer.numel() <= 1 and saved.shape != buffer.shape:
            buffer.resize_(saved.shape)


def convert_quantization_aware(prepared: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """The int8 model a quantization-aware fine-tuning arrived at."""
    prepared.eval()
    return drop_unused_weights(convert_pt2e(prepared))


def drop_unused_weights(model: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """convert_pt2e folds each weight into an int8 constant but keeps the float parameter
    as an attribute; exporting would save both. Remove what the graph no longer reads."""
    used = {node.target for node in model.graph.nodes if node.op == "get_attr"}
    for name, _ in list(model.named_parameters()):
        if name not in used:
            owner, _, attribute = name.rpartition(".")
            delattr(model.get_submodule(owner) if owner else model, attribute)
    return model


def serialized_bytes(model: nn.Module) -> int:
    """Size of the model's weights as `torch.save(model.state_dict())` writes them."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()


def signal_to_quantization_noise(reference: Tensor, quantized: Tensor) -> float:
    """SQNR in dB: 10 log10(|reference|^2 / |reference - quantized|^2); 20 dB means the
    error is a tenth of the signal's magnitude, 40 dB a hundredth."""
    noise = (reference - quantized).pow(2).sum()
    return (10 * torch.log10(reference.pow(2).sum() / noise.clamp_min(1e-30))).item()
