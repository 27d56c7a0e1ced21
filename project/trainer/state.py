"""What a checkpoint holds of a trainer, and putting it back: the exact-resume contract.

`capture` is everything besides the checkpoint policy's own state; `restore` makes the
next step the one the saved run would have taken, with the same data, RNG draws and LR.
"""

from typing import TYPE_CHECKING, Any

from torch.optim.lr_scheduler import OneCycleLR

from project.errors import UserError
from project.seeding import restore_rng_state, rng_state

if TYPE_CHECKING:
    from project.trainer.base import BaseTrainer


def capture(trainer: "BaseTrainer") -> dict[str, Any]:
    return {
        "config": trainer.run_config,
        "model": trainer.module.state_dict(),  # bare: never a `module.` prefix
        "optimizer": trainer.optimizer.state_dict() if trainer.optimizer else None,
        "scheduler": trainer.scheduler.state_dict() if trainer.scheduler else None,
        "scaler": trainer.precision.state_dict(),
        "ema": trainer.ema.state_dict() if trainer.ema else None,
        "inference_weights": "ema" if trainer.ema else "model",
        "early_stopping": trainer.early_stopping.state_dict(),
        "epoch": trainer.epoch,
        "global_step": trainer.global_step,
        "world_size": trainer.process.world_size,  # the sampler's shards depend on it
        "position": trainer.position.state_dict(),
        "last_metrics": dict(trainer.last_metrics),
        "trackers": trainer.run_logger.tracker_ids,  # resume continues the same runs
        "rng": rng_state(),
    }


def restore(trainer: "BaseTrainer", state: dict[str, Any]) -> None:
    saved_world, world = state.get("world_size", 1), trainer.process.world_size
    if saved_world != world and state["position"]["batch"]:
        raise UserError(
            f"the checkpoint stopped mid-epoch with {saved_world} process(es); resume it with the same number (now {world}), or from an epoch-end checkpoint"
        )
    trainer.module.load_state_dict(state["model"])
    if trainer.optimizer is not None and state["optimizer"] is not None:
        trainer.optimizer.load_state_dict(state["optimizer"])
    if trainer.scheduler is not None and state["scheduler"] is not None:
        _restore_scheduler(trainer.scheduler, state["scheduler"])
    trainer.precision.load_state_dict(state["scaler"])
    if trainer.ema is not None and state.get("ema") is not None:
        trainer.ema.load_state_dict(state["ema"])
    trainer.early_stopping.load_state_dict(state["early_stopping"])
    if trainer.checkpoint_policy is not None and "checkpoint_policy" in state:
        trainer.checkpoint_policy.load_state_dict(state["checkpoint_policy"])
    trainer.epoch, trainer.global_step = state["epoch"], state["global_step"]
    trainer.position.load_state_dict(state["position"], trainer.device)
    trainer.last_metrics = dict(state.get("last_metrics", {}))
    trainer.resumed_trackers = dict(state.get("trackers") or {})
    restore_rng_state(state["rng"])


def _restore_scheduler(scheduler: Any, state: dict[str, Any]) -> None:
    planned = getattr(scheduler, "total_steps", None)
    scheduler.load_state_dict(state)
    if isinstance(scheduler, OneCycleLR) and scheduler.total_steps != planned:
        # Its state fixes the run's length: stepping past it raises deep in PyTorch.
        raise UserError(
            f"scheduler=onecycle was planned for {scheduler.total_steps} steps, this run for {planned}: resume it with the trainer.max_epochs it started with (a one-cycle schedule cannot be extended)"
        )
