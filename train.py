"""Train a model: `python train.py [group=option ...] [key=value ...]`.

Composes the config (configs/train.yaml), builds the data, model, optimizer and
scheduler from it, and hands them to the task's trainer. All logic lives in project/.
"""

import json
import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from project.checkpoint import CheckpointPolicy
from project.data.loaders import build_datasets, build_loaders
from project.distributed import select_device
from project.errors import exit_on_user_error
from project.models.build import build_model
from project.models.summary import summarize
from project.optim import build_optimizer, build_scheduler
from project.resume import redirect_to_run_folder, resume_checkpoint, resume_config
from project.schema import register_schemas, validate_config
from project.seeding import make_deterministic, seed_everything
from project.trainer import trainer_class
from project.trainer.base import num_batches
from project.trainer.preemption import PREEMPTED_EXIT_CODE, Preempted

log = logging.getLogger("train")
register_schemas()


def train(cfg: DictConfig) -> dict[str, float]:
    validate_config(cfg)
    OmegaConf.resolve(cfg)  # the checkpoint and TensorBoard record concrete values
    run_dir = Path(cfg.paths.output_dir)
    resumed = resume_checkpoint(cfg.resume, run_dir) if cfg.resume else None
    if resumed:
        overrides = list(HydraConfig.get().overrides.task)
        cfg = resume_config(resumed[1]["config"], cfg, overrides)
        validate_config(cfg)
        log.info("resuming from %s (step %d)", resumed[0], resumed[1]["global_step"])
    elif cfg.resume == "auto":
        log.info("resume=auto: no checkpoint in %s yet, starting the run", run_dir)
    device = select_device(cfg.trainer.gpus)
    seed_everything(cfg.seed)
    make_deterministic(cfg.trainer.deterministic, on_cuda=device.type == "cuda")
    task_trainer = trainer_class(cfg.task)

    datasets = build_datasets(cfg.dataset, ("train", "val"))
    loaders = build_loaders(datasets, cfg.loader, seed=cfg.seed, device=device)
    model = build_model(cfg.model, initialize=resumed is None)
    example_input = datasets["train"][0][0].unsqueeze(0)  # multiply-adds of image models
    log.info("model %s", summarize(model, example_input))
    optimizer = build_optimizer(cfg.optimizer, model)
    batches = num_batches(loaders["train"], cfg.trainer.limit_train_batches)
    steps_per_epoch = -(
        -batches // cfg.trainer.accumulate_grad_batches
    )  # ceil: a last partial step
    scheduler = build_scheduler(
        cfg.scheduler, optimizer, steps_per_epoch=steps_per_epoch, max_epochs=cfg.trainer.max_epochs
    )

    trainer = task_trainer(
        model,
        optimizer,
        scheduler,
        trainer_cfg=cfg.trainer,
        logger_cfg=cfg.logger,
        device=device,
        run_dir=run_dir,
        checkpoint_policy=CheckpointPolicy(run_dir, **cfg.checkpoint),
        run_config=OmegaConf.to_container(cfg),
    )
    if resumed:
        trainer.load_training_state(resumed[1])
    metrics = trainer.fit(loaders["train"], loaders["val"])
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    log.info("run folder: %s", run_dir)
    return metrics


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    with exit_on_user_error():
        try:
            metrics = train(cfg)
        except Preempted as stop:
            log.warning(
                "stopped by %s; exit code %d. Continue with: python train.py resume=%s",
                stop.signal_name,
                PREEMPTED_EXIT_CODE,
                cfg.paths.output_dir,
            )
            sys.exit(PREEMPTED_EXIT_CODE)
    # Hydra sweepers (Optuna) optimize the value main returns.
    return metrics.get(cfg.checkpoint.monitor)


if __name__ == "__main__":
    # resume=<run> must write into that run's folder: set before Hydra creates a new one.
    sys.argv = redirect_to_run_folder(sys.argv)
    main()
