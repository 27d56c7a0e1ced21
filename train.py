"""Train a model: `python train.py [group=option ...] [key=value ...]`.

Composes the config (configs/train.yaml), builds the data, model, optimizer and
scheduler from it, and hands them to the task's trainer. All logic lives in project/.
"""

import json
import logging
import sys
import warnings
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from project.callbacks import build_callbacks
from project.checkpoint.format import load_checkpoint
from project.checkpoint.policy import CheckpointPolicy
from project.data.loaders import build_datasets, build_loaders, overfit_datasets
from project.distributed import (
    ProcessContext,
    convert_sync_batchnorm,
    process_group,
    select_device,
)
from project.errors import PREEMPTED_EXIT_CODE, Preempted, exit_on_user_error
from project.launch import (
    LaunchPlan,
    configure_logging,
    export_slurm_environment,
    plan_launch,
    prepare_command_line,
    spawn,
)
from project.models.build import build_model
from project.models.summary import summarize
from project.optim import build_optimizer, build_scheduler
from project.resume import resume_run
from project.schema import register_schemas, typed, validate_config
from project.seeding import make_deterministic, seed_everything
from project.trainer import trainer_class
from project.trainer.validation import num_batches

log = logging.getLogger("train")
register_schemas()
# configs/hydra/launcher/submitit_*.yaml share their names with the plugin's schemas, so
# Hydra validates them against those schemas (what we want) and warns that this matching
# is deprecated; the shipped names are the ones the plugin documents.
warnings.filterwarnings("ignore", message="(?s).*is validated against ConfigStore schema")
CONFIG_DIR = Path(__file__).parent / "configs"


def train(cfg: DictConfig) -> dict[str, float]:
    """Check the config, then train here or in spawned DDP workers; rank 0's metrics."""
    if not cfg.resume:  # a resume was validated by Hydra's on_run_start (resume.py)
        validate_config(cfg)
    OmegaConf.resolve(cfg)  # the checkpoint and TensorBoard record concrete values
    state = checkpoint = None
    if cfg.resume:  # its checkpoint was read then too: resume_run hands over what it read
        resumption = resume_run(cfg, list(HydraConfig.get().overrides.task))
        log.info(resumption.describe())
        cfg, checkpoint, state = resumption.config, resumption.checkpoint, resumption.state
    export_slurm_environment()
    plan = plan_launch(cfg.trainer)
    if plan.spawn:  # each worker reads the checkpoint: cheaper than pickling it over
        return spawn(fit, (cfg, plan, checkpoint), plan.spawn)
    process = ProcessContext.from_environment()  # torchrun and SLURM set it; else rank 0 of 1
    configure_logging(process, logging_config=None)  # Hydra did rank 0's
    return fit(process, cfg, plan, checkpoint, resumed=state)


def fit(
    process: ProcessContext,
    cfg: DictConfig,
    plan: LaunchPlan,
    checkpoint: Path | None = None,
    store=None,
    resumed: dict | None = None,
) -> dict:
    """Build everything from the config and train, as one rank of `process.world_size`,
    continuing from `checkpoint` (its state `resumed` if this process has read it) if given."""
    run_dir = Path(cfg.paths.output_dir)
    if checkpoint and resumed is None:
        resumed = load_checkpoint(checkpoint)
    device = select_device(cfg.trainer.gpus, process, cfg.trainer.devices)
    seed_everything(cfg.seed)  # the same on every rank: identical initial weights
    make_deterministic(
        cfg.trainer.deterministic,
        on_cuda=device.type == "cuda",
        cudnn_benchmark=cfg.trainer.cudnn_benchmark,
    )
    task_trainer = trainer_class(cfg.task)
    # Typed config objects (project/schema.py) for the code that reads these groups.
    trainer_cfg, logger_cfg = typed("trainer", cfg.trainer), typed("logger", cfg.logger)
    checkpoint_cfg = typed("checkpoint", cfg.checkpoint)
    if logger_cfg.mlflow and not logger_cfg.mlflow_uri:  # a SQLite store beside the runs
        logger_cfg.mlflow_uri = f"sqlite:///{Path(cfg.paths.log_dir).resolve() / 'mlflow.db'}"
    logger_cfg.wandb_project = logger_cfg.wandb_project or cfg.task_name

    with process_group(process, device, store):
        # The model first: a bad model key fails in a second, not after the data is built.
        # (Datasets draw from their own generators: the order leaves the weights unchanged.)
        model = build_model(cfg.model, initialize=resumed is None)
        datasets = build_datasets(cfg.dataset, ("train", "val"), process)
        if cfg.trainer.overfit_batches:  # debug=overfit
            datasets = overfit_datasets(
                datasets["train"], cfg.trainer.overfit_batches, cfg.loader.batch_size
            )
        loaders = build_loaders(datasets, cfg.loader, seed=cfg.seed, device=device, process=process)
        example_input = datasets["train"][0][0].unsqueeze(0)  # multiply-adds of image models
        log.info("model %s", summarize(model, example_input))
        callbacks = build_callbacks(cfg)  # optional features (project/callbacks.py)
        for callback in callbacks:
            model = callback.setup_model(model, cfg, datasets["train"])
        if plan.sync_bn and process.distributed:
            model = convert_sync_batchnorm(model)
        optimizer = build_optimizer(cfg.optimizer, model)
        batches = num_batches(loaders["train"], cfg.trainer.limit_train_batches)
        steps_per_epoch = -(
            -batches // cfg.trainer.accumulate_grad_batches
        )  # ceil: a last partial step
        scheduler = build_scheduler(
            cfg.scheduler,
            optimizer,
            steps_per_epoch=steps_per_epoch,
            max_epochs=cfg.trainer.max_epochs,
        )

        trainer = task_trainer.from_config(
            cfg,
            model,
            optimizer,
            scheduler,
            trainer_cfg=trainer_cfg,
            logger_cfg=logger_cfg,
            device=device,
            run_dir=run_dir,
            checkpoint_policy=CheckpointPolicy.from_config(
                run_dir, checkpoint_cfg, process.is_main
            ),
            run_config=OmegaConf.to_container(cfg),
            strategy=plan.strategy,
            process=process,
        )
        if resumed:
            trainer.load_training_state(resumed)
        metrics = trainer.fit(loaders["train"], loaders["val"])
        for callback in callbacks:
            callback.on_fit_end(trainer, cfg, loaders)
    if process.is_main:
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
    # Hydra sweepers (Optuna) optimize the value main returns: the run's best score.
    monitor = cfg.checkpoint.monitor
    return metrics.get(f"best/{monitor}", metrics.get(monitor))


if __name__ == "__main__":
    sys.argv = prepare_command_line(sys.argv, CONFIG_DIR, "train")  # resume=, torchrun
    main()
