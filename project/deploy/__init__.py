"""Deployment wing (optional; delete this folder, configs/quantize/, configs/callbacks/qat.yaml,
export.py and tests/deploy/ to drop it): export to ONNX, TorchScript, torch.export and
TensorRT with numerical verification, int8 post-training quantization and
quantization-aware training through torchao's PT2E flow.

It plugs into the core through two seams only: export.py and the quantize group read
checkpoints with `project.models.trained.rebuild_trained_model`, and QAT is a training
callback (`callbacks=qat`, project/callbacks.py)."""
