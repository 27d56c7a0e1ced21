"""Export a trained model to a deployable file and prove it computes what PyTorch does.

Every format is written with a dynamic batch axis to a temporary name, loaded back by its
own runtime, run on real validation batches (the run's full batch and a batch of one,
which exercises the dynamic axis), compared with the PyTorch model, and only then moved
to its final name: a file that failed verification never replaces a good one.
"""

import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from project.checkpoint.format import inference_weights, load_checkpoint
from project.data.loaders import build_datasets, build_loaders
from project.errors import UserError
from project.models.trained import rebuild_trained_model
from project.schema import typed
from project.trainer import is_image_model

log = logging.getLogger(__name__)

FORMATS = ("onnx", "torchscript", "exported_program", "tensorrt")
SUFFIXES = {
    "onnx": ".onnx",
    "torchscript": ".torchscript.pt",
    "exported_program": ".pt2",
    "tensorrt": ".trt.ep",
}
CPU = torch.device("cpu")  # export and verification run on the CPU (TensorRT excepted)
MAX_BATCH = 4096  # upper bound of the dynamic batch axis (torch.export needs one)


@dataclass
class TrainedModel:
    """A checkpoint's model in its inference form, with the run's config and real inputs."""

    model: nn.Module
    run_cfg: DictConfig
    checkpoint: Path
    weights: str  # "model" or "ema": which weights the checkpoint said are the best

    def loader(self, split: str, num_workers: int = 0):
        """The run's own data for `split`, with the run's loader settings (in-process)."""
        datasets = build_datasets(self.run_cfg.dataset, (split,))
        loader_cfg = typed(
            "loader",
            OmegaConf.merge(
                self.run_cfg.loader, {"num_workers": num_workers, "background_prefetch": 0}
            ),
        )
        return build_loaders(datasets, loader_cfg, seed=self.run_cfg.seed, device=CPU)[split]

    def validation_batch(self) -> Tensor:
        images, *_ = next(iter(self.loader("val")))
        return images


def load_trained_model(checkpoint: str | os.PathLike) -> TrainedModel:
    path = Path(checkpoint)
    state = load_checkpoint(path)
    run_cfg = OmegaConf.create(state["config"])
    if not is_image_model(run_cfg.task):
        raise UserError(
            f"{path}: export takes image models (classification or segmentation tasks); "
            f"this run's task is {run_cfg.task}"
        )
    if is_quantization_aware(run_cfg):
        raise UserError(
            f"{path} is a quantization-aware training checkpoint; its int8 model is "
            f"{path.parent / 'int8.pt2'}, written when that run ended"
        )
    weights = "ema" if inference_weights(state) is not state["model"] else "model"
    model = rebuild_trained_model(state, path, deploy_form=True)
    return TrainedModel(model, run_cfg, path, weights)


def is_quantization_aware(run_cfg: DictConfig) -> bool:
    """A run fine-tuned with `callbacks=qat` (qat.py): its weights belong to the
    fake-quantized graph, and its deployable form is the int8.pt2 it wrote."""
    return any(
        str(node.get("_target_", "")).endswith(".QuantizationAwareTraining")
        for node in (run_cfg.get("callbacks") or {}).values()
    )


def check_format(export_format: str | None) -> None:
    if export_format not in FORMATS:
        raise UserError(
            f"format={export_format!r} is not valid; choose one of: {', '.join(FORMATS)}"
        )


def batch_axis(name: str = "batch") -> torch.export.Dim:
    return torch.export.Dim(name, min=1, max=MAX_BATCH)


def export_with_batch_axis(model: nn.Module, example: Tensor) -> torch.export.ExportedProgram:
    """torch.export of `model` with a dynamic batch axis. `example` must hold two or more
    images: with one, torch.export would fix the axis to 1."""
    return torch.export.export(model, (example,), dynamic_shapes=({0: batch_axis()},))


# Each exporter writes `model` to `path` and returns a function that runs the file.


def export_onnx(model: nn.Module, example: Tensor, path: Path) -> Callable[[Tensor], Tensor]:
    import onnxruntime

    program = torch.onnx.export(
        model,
        (example,),
        dynamo=True,
        input_names=["images"],
        output_names=["logits"],
        dynamic_shapes=({0: batch_axis()},),
        verbose=False,
    )
    program.save(str(path))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    return lambda images: torch.from_numpy(session.run(None, {input_name: images.numpy()})[0])


def export_torchscript(model: nn.Module, example: Tensor, path: Path) -> Callable[[Tensor], Tensor]:
    # Tracing records one execution; the image models here have no data-dependent control
    # flow, and verification on two batch sizes would catch a shape baked in.
    traced = torch.jit.trace(model, example, check_trace=False)
    torch.jit.save(traced, str(path))
    loaded = torch.jit.load(str(path))
    return loaded


def export_program(model: nn.Module, example: Tensor, path: Path) -> Callable[[Tensor], Tensor]:
    save_program(export_with_batch_axis(model, example), path)
    return torch.export.load(str(path)).module()


def save_program(program: torch.export.ExportedProgram, path: Path) -> None:
    """Save `program` under a temporary name and rename it, so an interrupted save never
    leaves a truncated file where a good one was."""
    # torch.export keeps the example inputs in the file (a whole validation batch, 1.5 MB
    # for the default data); a deployed model does not need them.
    program._example_inputs = None
    temporary = path.with_name(f".tmp-{path.name}")  # torch.export wants the .pt2 suffix
    torch.export.save(program, str(temporary))
    os.replace(temporary, path)


def export_tensorrt(model: nn.Module, example: Tensor, path: Path) -> Callable[[Tensor], Tensor]:
    if not torch.cuda.is_available():
        raise UserError("format=tensorrt needs a CUDA GPU; this machine has none")
    try:
        import torch_tensorrt
    except ImportError:
        raise UserError(
            "format=tensorrt needs torch-tensorrt, built for this torch "
            f"({torch.__version__}): pip install torch-tensorrt"
        ) from None
    model, example = model.cuda(), example.cuda()
    inputs = [
        torch_tensorrt.Input(
            min_shape=(1, *example.shape[1:]),
            opt_shape=tuple(example.shape),
            max_shape=(max(len(example), 64), *example.shape[1:]),
            dtype=torch.float32,
        )
    ]
    compiled = torch_tensorrt.compile(
        model, ir="dynamo", inputs=inputs, enabled_precisions={torch.float32}
    )
    torch_tensorrt.save(compiled, str(path), inputs=[example])
    loaded = torch.export.load(str(path)).module()
    return lambda images: loaded(images.cuda()).cpu()


EXPORTERS = {
    "onnx": export_onnx,
    "torchscript": export_torchscript,
    "exported_program": export_program,
    "tensorrt": export_tensorrt,
}


def max_abs_difference(
    model: nn.Module, run_artifact: Callable[[Tensor], Tensor], batches: list[Tensor]
) -> float:
    difference = 0.0
    with torch.no_grad():
        for images in batches:
            expected = model(images)
            actual = run_artifact(images)
            if actual.shape != expected.shape:
                raise UserError(
                    f"the exported model returned shape {tuple(actual.shape)} for input "
                    f"{tuple(images.shape)}; PyTorch returns {tuple(expected.shape)}"
                )
            difference = max(difference, (actual - expected).abs().max().item())
    return difference


def export_and_verify(
    trained: TrainedModel, export_format: str, tolerance: float, output: Path | None = None
) -> tuple[Path, float]:
    """Write `trained.model` in `export_format` next to its checkpoint (or to `output`);
    return the path and the largest absolute difference from PyTorch on validation data."""
    check_format(export_format)
    path = output or trained.checkpoint.with_suffix(SUFFIXES[export_format])
    images = trained.validation_batch()
    batches = [images, images[:1]]
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as scratch:
        temporary = Path(scratch) / path.name
        run_artifact = EXPORTERS[export_format](trained.model, images, temporary)
        difference = max_abs_difference(trained.model, run_artifact, batches)
        if difference > tolerance:
            raise UserError(
                f"format={export_format}: the exported model differs from PyTorch by up to "
                f"{difference:.3g} on validation data, above tolerance={tolerance:g}; "
                "nothing was written"
            )
        os.replace(temporary, path)
    return path, difference
