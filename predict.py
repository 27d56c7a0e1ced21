"""Predict new inputs: `python predict.py ckpt=<path> input=<file | folder | list>
[output=preds.csv] [batch_size=64] [top_k=3] [gpus=0]`.

The model and its preprocessing are rebuilt from the checkpoint (its config is checked
first, as for evaluate.py); one CSV row per input, masks for a segmentation run.
"""

import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from project.checkpoint.format import load_checkpoint
from project.distributed import inference_device
from project.errors import UserError, exit_on_user_error
from project.models.trained import rebuild_trained_model
from project.prediction import list_inputs, output_path, predict_files, summary_lines
from project.schema import validate_config

log = logging.getLogger("predict")


def predict(cfg: DictConfig) -> dict:
    validate_config(cfg)  # ckpt and input are required
    if cfg.batch_size < 1 or cfg.top_k < 1:
        raise UserError(f"batch_size={cfg.batch_size} and top_k={cfg.top_k} must be >= 1")
    checkpoint = Path(cfg.ckpt)
    state = load_checkpoint(checkpoint)  # refused before anything else if not trusted
    files = list_inputs(str(cfg.input))
    run_cfg = OmegaConf.create(state["config"])
    device = inference_device(run_cfg.trainer.gpus, cfg.gpus)
    model = rebuild_trained_model(state, checkpoint)
    output = output_path(cfg.output, HydraConfig.get().runtime.output_dir)
    summary = predict_files(model, run_cfg, files, output, device, cfg.batch_size, cfg.top_k)
    for line in summary_lines(summary):
        print(line)
    return summary


@hydra.main(version_base="1.3", config_path="configs", config_name="predict")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        predict(cfg)


if __name__ == "__main__":
    main()
