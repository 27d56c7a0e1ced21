"""tqdm progress bars that stay quiet when nobody watches a terminal (CI, log files, SLURM),
and the one-line metric summaries of the log."""

import logging
import sys
import time

from tqdm import tqdm

log = logging.getLogger(__name__)


def progress_bar_enabled(setting: bool | None) -> bool:
    return sys.stderr.isatty() if setting is None else setting


def progress_bar(total: int, description: str, enabled: bool) -> tqdm:
    return tqdm(
        total=total,
        desc=description,
        disable=not enabled,
        leave=False,
        dynamic_ncols=True,
    )


def format_metrics(metrics: dict[str, float]) -> str:
    parts = []
    for name, value in metrics.items():
        if name.endswith("fraction"):
            parts.append(f"{name}={value:.1%}")
        elif name.endswith("per_sec"):
            parts.append(f"{name}={value:.0f}")
        else:
            parts.append(f"{name}={value:.4g}")
    return " ".join(parts)


def format_duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


class ProgressLine:
    """Where no progress bar is drawn (CI, SLURM, nohup): one log line every
    `log_every_n_steps` steps with step, epoch, loss, LR, samples/s since the last line,
    and the time left at that pace."""

    def __init__(self, world_size: int):
        self.world_size = world_size
        self.mark = (time.perf_counter(), 0, 0)  # (time, samples this epoch, step)

    def start_epoch(self, samples: int, step: int) -> None:
        self.mark = (time.perf_counter(), samples, step)

    def log(self, *, step: int, total_steps: int, epoch: str, samples: int, loss: float, lr: float):
        now = time.perf_counter()
        since, samples_then, step_then = self.mark
        if samples < samples_then:  # a new epoch began since the last line
            samples_then = 0
        elapsed = max(now - since, 1e-9)
        rate = (samples - samples_then) * self.world_size / elapsed
        steps_per_second = max(step - step_then, 1) / elapsed
        log.info(
            "step %d/%d epoch %s loss %.4f lr %.3g samples/s %.0f eta %s",
            step, total_steps, epoch, loss, lr, rate,
            format_duration((total_steps - step) / steps_per_second),
        )  # fmt: skip
        self.mark = (now, samples, step)


def describe_plan(trainer, loader, batches: int) -> str:
    """What `fit` is about to do, for the log: model, epochs, batches, devices."""
    batch_size, world = loader.batch_size or 0, trainer.process.world_size
    accumulated = trainer.accumulate_grad_batches
    return (
        f"{type(trainer.module).__name__}: {trainer.cfg.max_epochs} epochs, {batches} batches "
        f"per epoch of {batch_size} samples per process, global batch "
        f"{batch_size * world * accumulated} ({world} processes x {accumulated} accumulated), "
        f"device {trainer.device}, precision {trainer.cfg.precision}"
    )


def log_step(trainer, loss, bar) -> None:
    """Every `log_every_n_steps` steps: the step's loss and LR to the trackers, a text
    line where no bar is drawn, and the bar's postfix. One host read (the loss)."""
    lr = trainer.optimizer.param_groups[0]["lr"]
    value = trainer.run_logger.training_step(trainer.global_step, loss, lr)
    if not trainer.show_progress and trainer.process.is_main:  # CI, SLURM, nohup
        total = trainer.cfg.max_epochs * trainer.steps_per_epoch
        trainer.progress_line.log(
            step=trainer.global_step,
            total_steps=min(total, trainer.max_steps) if trainer.max_steps else total,
            epoch=f"{trainer.epoch + 1}/{trainer.cfg.max_epochs}",
            samples=sum(trainer.position.counts),
            loss=value,
            lr=lr,
        )
    # The last validation result rides along so the bar shows loss and metric together.
    shown = {"loss": f"{value:.4f}", "lr": f"{lr:.3g}"}
    shown.update(
        {name: f"{v:.4f}" for name, v in trainer.last_metrics.items() if name.startswith("val/")}
    )
    bar.set_postfix(shown, refresh=False)
