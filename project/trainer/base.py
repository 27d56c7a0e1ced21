"""BaseTrainer: the training loop every task shares.

A task subclass implements only `training_step` and `validation_step` (see
classification.py). This file is the loop: fit -> epochs -> steps, validation and saves
at epoch ends. Each concern the loop touches has a small file beside it: mixed precision
and the optimizer step (precision.py), the position inside an epoch (position.py), what
a checkpoint holds (state.py), the validation pass (validation.py), an epoch's training
metrics (epoch_metrics.py), non-finite losses and weights (nonfinite.py), where the model
runs (placement.py), progress bars and log lines (progress.py), EMA, early stopping,
signals, profiling; the trackers live in project/trackers/.

The per-step path is kept lean on purpose: no host sync (a NaN loss is looked for every
`log_every_n_steps` steps, before saves and at epoch ends, not per step), no formatting,
no TensorBoard call except every `log_every_n_steps`; benchmarks/overhead.py holds it to
within a few percent of a hand-written loop.
"""

import contextlib
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import Tensor, nn
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torch.utils.data import DataLoader
from tqdm.contrib.logging import logging_redirect_tqdm

from project.checkpoint.policy import CheckpointPolicy
from project.data.batches import move_to_device, to_channels_last
from project.data.device_prefetch import prefetch_to_device
from project.data.sampling import EpochSampler
from project.distributed import (
    SINGLE_PROCESS,
    ProcessContext,
    any_rank,
)
from project.errors import Preempted
from project.trackers.run_logger import RunLogger
from project.trainer import nonfinite, state
from project.trainer.data_wait import DataWaitMonitor
from project.trainer.early_stopping import EarlyStopping
from project.trainer.ema import WeightEMA
from project.trainer.epoch_metrics import epoch_metrics
from project.trainer.placement import place_model
from project.trainer.position import EpochPosition
from project.trainer.precision import Precision
from project.trainer.preemption import StopSignals
from project.trainer.profiling import StepProfiler
from project.trainer.progress import (
    ProgressLine,
    describe_plan,
    format_metrics,
    log_step,
    progress_bar,
    progress_bar_enabled,
)
from project.trainer.validation import num_batches, validate

log = logging.getLogger(__name__)

# Under DDP the ranks agree on a stop signal every this many optimizer steps: the check is a
# collective (and on CUDA a sync), too dear for every step; a scheduler's grace period is
# seconds to minutes.
STOP_CHECK_EVERY_N_STEPS = 10
NO_CONTEXT = contextlib.nullcontext()  # reusable: one object, not one per step


class BaseTrainer:
    """Owns the loop; subclasses say what one step computes.

    `trainer_cfg` and `logger_cfg` are `TrainerConfig` and `LoggerConfig` objects
    (project/schema.py). `run_config` is the resolved run config, stored in checkpoints
    and TensorBoard. `strategy` wraps the model for several devices ("ddp", "dp", or None);
    `process` says which rank this is. `self.model` is what the steps call (maybe
    wrapped), `self.module` the bare model that checkpoints, EMA and evaluation use.
    """

    #: Names of the metrics `validation_step` returns, logged with a "val/" prefix.
    validation_metrics: tuple[str, ...] = ("loss",)

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None,
        scheduler: Any = None,
        *,
        trainer_cfg: Any,
        logger_cfg: Any,
        device: torch.device,
        run_dir: Path | None = None,
        checkpoint_policy: CheckpointPolicy | None = None,
        run_config: dict[str, Any] | None = None,
        strategy: str | None = None,
        process: ProcessContext = SINGLE_PROCESS,
    ):
        self.cfg, self.device, self.process = trainer_cfg, device, process
        # Plain attributes for what the per-step path reads: a config lookup costs
        # microseconds, which a tiny model's step notices.
        self.accumulate_grad_batches = int(trainer_cfg.accumulate_grad_batches)
        self.gradient_clip_val = float(trainer_cfg.gradient_clip_val)
        self.grad_norm_every = int(trainer_cfg.log_grad_norm)
        self.log_every_n_steps = int(logger_cfg.log_every_n_steps)
        self.max_steps = trainer_cfg.max_steps
        self.channels_last = bool(trainer_cfg.channels_last)
        self.skip_non_finite = trainer_cfg.nan_policy == "skip_batch"
        self.skipped_batches = 0
        # On CUDA the next batch is copied during the current step (device_prefetch.py).
        self.prefetch_to_device = device.type == "cuda"

        self.module, self.model = place_model(model, trainer_cfg, device, strategy)
        self.ddp = strategy == "ddp"
        self.compile_pending = bool(trainer_cfg.compile)  # on the first step, timed apart
        self.precision = Precision(trainer_cfg.precision, device.type)
        self.optimizer, self.scheduler = optimizer, scheduler
        self.ema = WeightEMA(self.module, trainer_cfg.ema_decay) if trainer_cfg.ema_decay else None
        self.window_has_gradients = False  # a batch of this accumulation window ran backward

        self.run_dir, self.checkpoint_policy = run_dir, checkpoint_policy
        # Mid-epoch last.pt every N steps: rank 0 writes (None: never).
        self.save_every_n_steps = (
            checkpoint_policy.every_n_steps if checkpoint_policy and process.is_main else None
        )
        self.run_config = run_config or {}
        self.show_progress = process.is_main and progress_bar_enabled(logger_cfg.progress_bar)
        self.logger_cfg = logger_cfg
        self.resumed_trackers: dict[str, str] = {}  # tracker run ids from a checkpoint
        self.run_logger = RunLogger()  # opened by fit(), which knows the resumed step
        self.profiler: StepProfiler | None = None  # trainer.profile: set up by fit()
        self.data_wait = DataWaitMonitor()
        self.progress_line = ProgressLine(process.world_size)
        self.stop_signals = StopSignals()
        # Early stopping and ReduceLROnPlateau follow the checkpoint's metric; without a
        # policy, the validation loss.
        self.monitor = checkpoint_policy.monitor if checkpoint_policy else "val/loss"
        self.monitor_mode = checkpoint_policy.mode if checkpoint_policy else "min"
        self.early_stopping = EarlyStopping(
            mode=self.monitor_mode,
            patience=trainer_cfg.early_stopping.patience,
            min_delta=trainer_cfg.early_stopping.min_delta,
        )

        self.epoch = 0  # completed epochs
        self.global_step = 0  # completed optimizer steps
        self.position = EpochPosition()
        self.last_metrics: dict[str, float] = {}

    @classmethod
    def from_config(cls, cfg: Any, *args: Any, **kwargs: Any) -> "BaseTrainer":
        """How train.py builds the task's trainer: `cls(*args, **kwargs)`. A task with keys
        of its own (the distillation wing's `distill:`) reads them here from the run config."""
        return cls(*args, **kwargs)

    @property
    def scaler(self) -> torch.amp.GradScaler | None:
        return self.precision.scaler

    # ---- what a task implements -------------------------------------------------------

    def training_step(self, batch: Any) -> tuple[Tensor, int]:
        """Return the mean loss of the batch and the number of samples in it."""
        raise NotImplementedError

    def validation_step(self, batch: Any) -> tuple[dict[str, Tensor], int]:
        """Return metric *sums* over the batch (e.g. summed loss, correct count) and its
        sample count; the trainer adds them up over the split and `reduce_metrics` turns
        the totals into epoch values (by default totals / samples, exactly the per-sample
        mean whatever the batch sizes). A sum may be a vector, e.g. per-class counts."""
        raise NotImplementedError

    def reduce_metrics(self, totals: dict[str, Tensor], samples: int) -> dict[str, float]:
        """Epoch metrics from the summed outputs of `validation_step`: per-sample means by
        default. Override for metrics that are not means over samples (mean IoU)."""
        return {name: (total / samples).item() for name, total in totals.items()}

    def on_validation_end(self) -> None:
        """Called after each validation pass, e.g. to log example predictions as images."""

    # ---- the loop -----------------------------------------------------------------------

    def fit(
        self, train_loader: DataLoader, val_loader: DataLoader | None = None
    ) -> dict[str, float]:
        """Train up to `max_epochs`; return the last epoch's metrics (plus the best score)."""
        if self.checkpoint_policy:
            self.checkpoint_policy.check_metrics(self.logged_metrics(), val_loader is not None)
        # A resumed run continues its curves: what the interrupted run logged after the
        # checkpoint's step is dropped (purge_step), so no step appears twice; what it
        # logged at that step (an epoch's metrics) stays, as the resumed run will not.
        self.run_logger = RunLogger.open(
            self.logger_cfg,
            self.run_dir if self.process.is_main else None,
            purge_step=self.global_step + 1 if self.global_step else None,
            resumed_ids=self.resumed_trackers,
            config=self.run_config,
        )
        if self.run_config and not self.global_step:  # TensorBoard's TEXT tab, an MLflow file
            self.run_logger.text("config", OmegaConf.to_yaml(self.run_config), 0)
        batches = num_batches(train_loader, self.cfg.limit_train_batches)
        log.info("training %s", describe_plan(self, train_loader, batches))
        if self.cfg.profile and self.process.is_main:
            self.profiler = StepProfiler(self.run_dir, self.device)
        try:
            with (
                logging_redirect_tqdm(),
                self.stop_signals,
                torch.autograd.set_detect_anomaly(bool(self.cfg.detect_anomaly)),
            ):
                while self.epoch < self.cfg.max_epochs and not self.reached_max_steps():
                    if self._run_epoch(train_loader, val_loader):
                        break
            metrics = dict(self.last_metrics)
            if self.checkpoint_policy and self.checkpoint_policy.best_score is not None:
                best = {f"best/{self.monitor}": self.checkpoint_policy.best_score}
                self.run_logger.scalars(best, step=self.global_step)
                metrics.update(best)
            self.run_logger.hyperparameters(metrics)
            return metrics
        finally:
            if self.profiler is not None:
                self.profiler.stop()
            self.run_logger.close()

    def _run_epoch(self, train_loader: DataLoader, val_loader: DataLoader | None) -> bool:
        """One epoch of training, then validation and checkpoints; True means stop."""
        metrics = self.train_epoch(train_loader)
        self.check_weights_finite()  # every rank: identical weights, so they stop together
        if self.position.batch:  # stopped mid-epoch by max_steps; last.pt is saved
            return True
        validating = (
            val_loader is not None
            and self.cfg.limit_val_batches != 0
            and (self.epoch + 1) % self.cfg.check_val_every_n_epoch == 0
        )
        if validating:
            # With an EMA, validation (and so best.pt) judges the averaged weights.
            with self.ema.swapped_in() if self.ema else contextlib.nullcontext():
                metrics.update(
                    self.evaluate(val_loader, prefix="val", limit=self.cfg.limit_val_batches)
                )
                self.on_validation_end()
        self.epoch += 1
        self.last_metrics = metrics
        self.run_logger.epoch_metrics(metrics, epoch=self.epoch, step=self.global_step)
        log.info("epoch %d/%d %s", self.epoch, self.cfg.max_epochs, format_metrics(metrics))
        if not validating:
            return False
        score = metrics.get(self.monitor, math.nan)
        if isinstance(self.scheduler, ReduceLROnPlateau):
            self.scheduler.step(score)
        if self.checkpoint_policy and self.process.is_main:
            self.run_logger.flush()
            self.checkpoint_policy.on_validation_end(
                metrics, self.epoch, self.global_step, self.training_state
            )
        if self.early_stopping.update(score):
            log.info(
                "early stopping: %s has not improved by more than %g for %d validations",
                self.monitor, self.early_stopping.min_delta, self.early_stopping.patience,
            )  # fmt: skip
            return True
        return False

    def train_epoch(self, loader: DataLoader) -> dict[str, float]:
        """Train one epoch, from `position.batch` on when resuming mid-epoch. Returns the
        epoch's metrics; on an early stop (max_steps) `position.batch` stays non-zero."""
        self.model.train()
        if isinstance(loader.sampler, EpochSampler):  # the whole epoch: len(loader) counts it
            loader.sampler.set_epoch(self.epoch)
        start, batches = self.position.batch, num_batches(loader, self.cfg.limit_train_batches)
        accumulate, channels_last = self.accumulate_grad_batches, self.channels_last
        bar = progress_bar(batches, f"epoch {self.epoch + 1}/{self.cfg.max_epochs}", self.show_progress)  # fmt: skip
        bar.update(start)
        self.epoch_first_step = self.global_step - start // accumulate
        self.steps_per_epoch = -(-batches // accumulate)
        self.progress_line.start_epoch(sum(self.position.counts), self.global_step)
        data_wait = compile_seconds = 0.0
        compile_samples = 0
        epoch_start = fetch_start = time.perf_counter()
        for batch_index, batch in enumerate(self._epoch_batches(loader, start), start=start):
            if batch_index >= batches:
                break
            step_start = time.perf_counter()
            data_wait += step_start - fetch_start
            if channels_last:
                batch = to_channels_last(batch)
            last_batch = batch_index + 1 == batches
            stepping = (batch_index + 1) % accumulate == 0 or last_batch
            # DDP: accumulate locally, all-reduce gradients only before the optimizer step.
            with self.model.no_sync() if self.ddp and not stepping else NO_CONTEXT:
                with self.precision.autocast():
                    loss, count = self.training_step(batch)
                if not self.skip_non_finite or nonfinite.loss_is_finite(self, loss, batch_index):
                    self.precision.backward(loss, accumulate)
                    self.window_has_gradients = True
                    self.position.add(loss, count)
            bar.update()
            if self.profiler is not None:
                self.profiler.step()
            if stepping:
                self.optimizer_step()
                self.position.batch = batch_index + 1
                if self._after_step(loss, bar, last_batch):
                    return {}  # trainer.max_steps reached mid-epoch; last.pt is saved
            if self.compile_pending:  # the first step compiled the model: time it apart
                self.compile_pending = False
                compile_seconds, compile_samples = time.perf_counter() - step_start, count
                log.info("torch.compile: the first step took %.1f s, compilation included", compile_seconds)  # fmt: skip
            if last_batch:
                break
            fetch_start = time.perf_counter()
        bar.close()
        # Throughput and data waiting leave out the compiling step (timed above).
        return epoch_metrics(
            self,
            loader, start, data_wait, time.perf_counter() - epoch_start - compile_seconds,
            compile_seconds, compile_samples,
        )  # fmt: skip

    def _epoch_batches(self, loader: DataLoader, start: int):
        """The epoch's batches from batch `start` on, on the training device."""
        sampler = loader.sampler if isinstance(loader.sampler, EpochSampler) else None
        if sampler is not None and start:
            # Skip at the sampler: the batches already trained on are never loaded.
            sampler.set_epoch(self.epoch, start_index=start * loader.batch_size)
        batches = iter(loader)
        if sampler is None and start:  # a custom loader: skip by drawing (and loading)
            for _ in range(start):
                next(batches)
        if self.prefetch_to_device:
            return prefetch_to_device(batches, self.device)
        if self.device.type != "cpu":  # a CPU loader's batches are already in place
            return (move_to_device(batch, self.device) for batch in batches)
        return batches

    def _after_step(self, loss: Tensor, bar, last_batch: bool) -> bool:
        """EMA, logging and the rare events after an optimizer step, each one cheap test
        per step (see benchmarks/overhead.py). True: stop the epoch (max_steps)."""
        step = self.global_step
        if self.ema is not None:
            self.ema.update(updates_before=step - 1)
        if step % self.log_every_n_steps == 0:
            self.check_losses_finite(agree=True)
            log_step(self, loss, bar)
        if self.process.distributed:  # every rank stops at the same step, or the others hang
            if step % STOP_CHECK_EVERY_N_STEPS == 0 and any_rank(
                self.stop_signals.received is not None, self.device
            ):
                self._stop_for_signal(bar)
        elif self.stop_signals.received:
            self._stop_for_signal(bar)
        if self.max_steps is not None and step >= self.max_steps and not last_batch:
            self._save_resumable("trainer.max_steps reached")
            bar.close()
            return True
        every = self.save_every_n_steps
        if every and step % every == 0:
            policy = self.checkpoint_policy
            self.check_losses_finite(agree=False)
            self.run_logger.flush()
            policy.save_resumable(step, self.training_state)
        return False

    def optimizer_step(self) -> None:
        if self.window_has_gradients:  # else every batch of the window was skipped
            log_norms = self.grad_norm_every and (self.global_step + 1) % self.grad_norm_every == 0
            self.precision.step(
                self.optimizer,
                self.module.parameters(),
                self.gradient_clip_val,
                inspect_gradients=(
                    (lambda: self.run_logger.gradient_norms(self.module, self.global_step + 1))
                    if log_norms
                    else None
                ),
            )
        self.window_has_gradients = False
        self.optimizer.zero_grad(set_to_none=True)
        if self.scheduler is not None and not isinstance(self.scheduler, ReduceLROnPlateau):
            self.scheduler.step()
        self.global_step += 1

    # ---- non-finite values, signals and max_steps -----------------------------------------

    def check_losses_finite(self, agree: bool) -> None:
        """`nan_policy=stop`: one host read of the losses since the last check, every
        `log_every_n_steps` steps, before a save and at the epoch end; none in between.
        (`skip_batch` looked at each loss before its backward: they are only stacked.)"""
        if self.skip_non_finite:
            self.position.stack_new_losses()
        else:
            nonfinite.check_losses(self, agree)

    def check_weights_finite(self) -> None:
        """One host sync; at epoch ends and before every save (nonfinite.py)."""
        nonfinite.check_weights(self)

    def reached_max_steps(self) -> bool:
        return self.max_steps is not None and self.global_step >= self.max_steps

    def _stop_for_signal(self, bar) -> None:
        bar.close()
        # Under DDP a rank may stop for a signal another rank received.
        received = self.stop_signals.received or "a stop signal to another rank"
        self._save_resumable(f"{received} received")
        raise Preempted(received)

    def _save_resumable(self, reason: str) -> Path | None:
        if not self.process.is_main:
            return None
        if self.checkpoint_policy is None:
            log.warning(
                "%s at step %d; no checkpoint policy, nothing saved", reason, self.global_step
            )
            return None
        self.check_losses_finite(agree=False)
        self.run_logger.flush()
        path = self.checkpoint_policy.save_resumable(self.global_step, self.training_state)
        log.info(
            "%s at step %d (epoch %d, batch %d): saved %s; continue with: python train.py resume=%s",
            reason, self.global_step, self.epoch + 1, self.position.batch, path,
            path.parent.parent,
        )  # fmt: skip
        return path

    # ---- validation ----------------------------------------------------------------------

    def evaluate(
        self, loader: DataLoader, prefix: str = "val", limit: int | None = None
    ) -> dict[str, float]:
        """Run `validation_step` over `loader`: `<prefix>/<name>` metrics, per-sample
        means, the single-process values under DDP too (validation.py)."""
        return validate(self, loader, prefix, limit)

    # ---- state ---------------------------------------------------------------------------

    def training_state(self) -> dict[str, Any]:
        """Everything a checkpoint holds besides the policy's own state (state.py); never
        from non-finite weights."""
        self.check_weights_finite()
        return state.capture(self)

    def load_training_state(self, saved: dict[str, Any]) -> None:
        """Continue from a checkpoint written by `training_state`: the next step is the
        one the saved run would have taken, with the same data, RNG draws and LR."""
        state.restore(self, saved)

    # ---- helpers -------------------------------------------------------------------------

    def logged_metrics(self) -> list[str]:
        """Metrics a checkpoint can be judged and named by."""
        return [f"val/{name}" for name in self.validation_metrics] + ["train/loss"]
