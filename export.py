"""Export a checkpoint and verify it: `python export.py ckpt=<path> [format=onnx|torchscript|
exported_program|tensorrt] [quantize=int8]`.

The model is rebuilt from the config saved in the checkpoint, put in its inference form
(RepVGG fused, SyncBatchNorm as BatchNorm, the EMA weights when the run validated with
them) and written next to the checkpoint. The report is printed and saved beside the
artifact as <artifact>.json.
"""

import json
import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from project.deploy.export import check_format, export_and_verify, load_trained_model
from project.errors import UserError, exit_on_user_error
from project.schema import validate_config

log = logging.getLogger("export")


def export(cfg: DictConfig) -> dict:
    validate_config(cfg)  # ckpt is required
    quantize = cfg.get("quantize")  # absent unless quantize=int8 selected the group
    if cfg.format is not None:
        check_format(cfg.format)
    if quantize is not None and cfg.format not in (None, "exported_program"):
        raise UserError(
            f"quantize=int8 writes a torch.export program; format={cfg.format} is not "
            "available for int8 (leave format unset or use format=exported_program)"
        )
    trained = load_trained_model(cfg.ckpt)
    if quantize is not None:
        from project.deploy.int8 import export_int8  # torchao: imported when needed

        path, report = export_int8(trained, quantize)
        lines = [
            f"int8 model: {path}",
            f"accuracy fp32 {report['fp32_accuracy']:.4f}  int8 {report['int8_accuracy']:.4f}"
            f"  (drop {report['accuracy_drop_points']:.2f} points)",
            f"SQNR of the logits {report['sqnr_db']:.1f} dB",
            f"weights {report['weights_size_ratio']:.2f}x smaller, file "
            f"{report['file_size_ratio']:.2f}x smaller ({report['fp32_file_bytes']:,} -> "
            f"{report['int8_file_bytes']:,} bytes)",
            f"CPU latency (batch {report['latency_batch_size']}) fp32 "
            f"{report['fp32_latency_ms']:.3f} ms  int8 {report['int8_latency_ms']:.3f} ms "
            f"({report['latency_speedup']:.2f}x)",
        ]
    else:
        export_format = cfg.format or "onnx"
        path, difference = export_and_verify(trained, export_format, cfg.tolerance)
        report = {
            "checkpoint": str(trained.checkpoint),
            "format": export_format,
            "weights": trained.weights,
            "max_abs_difference": difference,
            "tolerance": cfg.tolerance,
        }
        lines = [
            f"{export_format}: {path}",
            f"max abs difference from PyTorch on validation data: {difference:.3g} "
            f"(tolerance {cfg.tolerance:g})",
        ]
    report["artifact"] = str(path)
    print("\n".join(lines))
    Path(f"{path}.json").write_text(json.dumps(report, indent=2) + "\n")
    log.info("wrote %s and %s.json", path, path)
    return report


@hydra.main(version_base="1.3", config_path="configs", config_name="export")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        export(cfg)


if __name__ == "__main__":
    main()
