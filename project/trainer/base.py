"""BaseTrainer: the training loop every task shares.

A task subclass implements only `training_step` and `validation_step` (see
classification.py). Everything else lives here: epochs, mixed precision, gradient
accumulation and clipping, LR schedules, validation with sample-weighted metrics, early
stopping, checkpoints, progress bars, Python logging and TensorBoard.

The per-step path is kept lean on purpose (one host sync, the loss finiteness check;
no formatting, no TensorBoard call except every `log_every_n_steps`): benchmarks/overhead.py holds it to within a few
percent of a hand-written loop.
"""

import contextlib
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import OneCycleLR, ReduceLROnPlateau
from torch.utils.data import DataLoader
from tqdm.contrib.logging import logging_redirect_tqdm

from project.checkpoint.policy import CheckpointPolicy
from project.data.batches import move_to_device, to_channels_last
from project.data.device_prefetch import prefetch_to_device
from project.data.sampling import EpochSampler
from project.distributed import (
    SINGLE_PROCESS,
    ProcessContext,
    all_reduce_sum,
    any_rank,
    gpu_indices,
    unwrap,
    wrap_model,
)
from project.errors import UserError
from project.seeding import restore_rng_state, rng_state
from project.trainer.data_wait import DataWaitMonitor
from project.trainer.early_stopping import EarlyStopping
from project.trainer.ema import WeightEMA
from project.trainer.nonfinite import (
    NonFiniteLoss,
    non_finite_loss_message,
    non_finite_weights_message,
)
from project.trainer.preemption import Preempted, StopSignals
from project.trainer.profiling import StepProfiler
from project.trainer.progress import progress_bar, progress_bar_enabled
from project.trainer.run_logger import RunLogger

log = logging.getLogger(__name__)

AUTOCAST_DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
# Under DDP the ranks agree on a stop signal every this many optimizer steps: the check is a
# collective (and on CUDA a sync), too dear for every step; a scheduler's grace period is
# seconds to minutes.
STOP_CHECK_EVERY_N_STEPS = 10


def num_batches(loader: DataLoader, limit: int | None) -> int:
    """Batches an epoch runs: the whole loader, or `limit` of them (`limit_*_batches`)."""
    return len(loader) if limit is None else min(limit, len(loader))


class BaseTrainer:
    """Owns the loop; subclasses say what one step computes.

    `trainer_cfg` and `logger_cfg` follow `TrainerConfig` and `LoggerConfig` in
    project/schema.py (a DictConfig from Hydra, or the dataclasses themselves).
    `run_config` is the resolved run config, stored in checkpoints and TensorBoard.
    `strategy` wraps the model for several devices ("ddp", "dp", or None); `process` says
    which rank this is. `self.model` is what the steps call (maybe wrapped), `self.module`
    the bare model that checkpoints, EMA and evaluation use.
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
        self.cfg = trainer_cfg
        # Plain attributes for what the per-step path reads: a DictConfig lookup costs
        # microseconds, which a tiny model's step notices.
        self.accumulate_grad_batches = int(trainer_cfg.accumulate_grad_batches)
        self.gradient_clip_val = float(trainer_cfg.gradient_clip_val)
        self.device = device
        # Batches from a CPU loader are already where a CPU model needs them; on CUDA the
        # next training batch is copied during the current step (device_prefetch.py).
        self.batches_need_moving = device.type != "cpu"
        self.prefetch_to_device = device.type == "cuda"
        self.data_wait = DataWaitMonitor()
        self.process = process
        self.channels_last = bool(trainer_cfg.channels_last)
        self.module = unwrap(model).to(device)
        if self.channels_last:  # convs then run in NHWC kernels: no layout change per layer
            self.module.to(memory_format=torch.channels_last)
        dp_device_ids = (
            gpu_indices(trainer_cfg.gpus, trainer_cfg.devices, torch.cuda.device_count())
            if strategy == "dp"
            else []
        )
        self.model = wrap_model(self.module, strategy, device, dp_device_ids)
        # Compiled on the first step. `self.module` stays the plain model: checkpoints hold
        # its state dict, so no `_orig_mod.` prefix, loadable without torch.compile.
        self.compile_pending = bool(trainer_cfg.compile)
        if self.compile_pending:
            self.model = torch.compile(
                self.model, mode=trainer_cfg.compile_mode, backend=trainer_cfg.compile_backend
            )
        self.grad_norm_every = int(trainer_cfg.log_grad_norm)
        self.skip_non_finite = trainer_cfg.nan_policy == "skip_batch"
        self.skipped_batches = 0
        self.window_has_gradients = False  # a batch of this accumulation window ran backward
        self.profiler: StepProfiler | None = None  # trainer.profile: set up by fit()
        self.ddp = strategy == "ddp"
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.run_dir = run_dir
        self.checkpoint_policy = checkpoint_policy
        self.run_config = run_config or {}
        self.log_every_n_steps = logger_cfg.log_every_n_steps
        self.show_progress = process.is_main and progress_bar_enabled(logger_cfg.progress_bar)
        self.tensorboard = logger_cfg.tensorboard
        self.run_logger = RunLogger(None)  # opened by fit(), which knows the resumed step
        # Early stopping and ReduceLROnPlateau follow the checkpoint's metric; without a
        # policy, the validation loss.
        self.monitor = checkpoint_policy.monitor if checkpoint_policy else "val/loss"
        self.monitor_mode = checkpoint_policy.mode if checkpoint_policy else "min"
        self.early_stopping = EarlyStopping(
            mode=self.monitor_mode,
            patience=trainer_cfg.early_stopping.patience,
            min_delta=trainer_cfg.early_stopping.min_delta,
        )

        dtype = AUTOCAST_DTYPES.get(str(trainer_cfg.precision))
        # nullcontext for fp32: entering a disabled autocast still costs microseconds a step.
        self.autocast = (
            (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else contextlib.nullcontext
        )
        # fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range.
        self.scaler = (
            torch.amp.GradScaler(device.type) if trainer_cfg.precision == "16-mixed" else None
        )

        self.max_steps = trainer_cfg.max_steps
        self.ema = WeightEMA(self.module, trainer_cfg.ema_decay) if trainer_cfg.ema_decay else None
        self.stop_signals = StopSignals()

        self.epoch = 0  # completed epochs
        self.global_step = 0  # completed optimizer steps
        self.batch_in_epoch = 0  # batches of the current epoch already trained on
        # Losses and sample counts of those batches, so that a run resumed mid-epoch logs
        # the same epoch mean as one that never stopped.
        self.epoch_losses: list[Tensor] = []
        self.epoch_counts: list[int] = []
        self.last_metrics: dict[str, float] = {}

    @classmethod
    def from_config(cls, cfg: Any, *args: Any, **kwargs: Any) -> "BaseTrainer":
        """How train.py builds the task's trainer: `cls(*args, **kwargs)`. A task with keys
        of its own (the distillation wing's `distill:`) reads them here from the run config."""
        return cls(*args, **kwargs)

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

    # ---- the loop -----------------------------------------------------------------------

    def fit(
        self, train_loader: DataLoader, val_loader: DataLoader | None = None
    ) -> dict[str, float]:
        """Train up to `max_epochs`; return the last epoch's metrics (plus the best score)."""
        if self.checkpoint_policy:
            self._check_monitor(self.monitor, validating=val_loader is not None)
            self.checkpoint_policy.check_filename(self.logged_metrics())
        # A resumed run continues its TensorBoard curves: events the interrupted run wrote
        # after this step are dropped (purge_step), so no step appears twice.
        self.run_logger = RunLogger(
            self.run_dir if self.process.is_main else None,
            tensorboard=self.tensorboard,
            purge_step=self.global_step or None,
        )
        batch_size = train_loader.batch_size or 0
        log.info(
            "training %s: %d epochs, %d batches per epoch of %d samples per process, "
            "global batch %d (%d processes x %d accumulated), device %s, precision %s",
            type(self.module).__name__,
            self.cfg.max_epochs,
            num_batches(train_loader, self.cfg.limit_train_batches),
            batch_size,
            batch_size * self.process.world_size * self.accumulate_grad_batches,
            self.process.world_size,
            self.accumulate_grad_batches,
            self.device,
            self.cfg.precision,
        )
        self.profiler = (
            StepProfiler(self.run_dir, self.device)
            if self.cfg.profile and self.process.is_main
            else None
        )
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
            self.run_logger.hyperparameters(self.run_config, metrics)
            return metrics
        finally:
            if self.profiler is not None:
                self.profiler.stop()
            self.run_logger.close()

    def _run_epoch(self, train_loader: DataLoader, val_loader: DataLoader | None) -> bool:
        """One epoch of training, then validation and checkpoints; True means stop."""
        metrics = self.train_epoch(train_loader)
        self.check_weights_finite()  # every rank: identical weights, so they stop together
        if self.batch_in_epoch:  # stopped mid-epoch by max_steps; last.pt is saved
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
        self.run_logger.scalars(metrics, step=self.global_step, now=True)
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
                self.monitor,
                self.early_stopping.min_delta,
                self.early_stopping.patience,
            )
            return True
        return False

    def train_epoch(self, loader: DataLoader) -> dict[str, float]:
        """Train one epoch, from `batch_in_epoch` on when resuming mid-epoch. Returns the
        epoch's metrics; on an early stop (max_steps) `batch_in_epoch` stays non-zero."""
        self.model.train()
        start = self.batch_in_epoch
        sampler = loader.sampler if isinstance(loader.sampler, EpochSampler) else None
        if sampler is not None:
            sampler.set_epoch(self.epoch)
        batches = num_batches(loader, self.cfg.limit_train_batches)
        if sampler is not None and start:
            # Skip at the sampler: the batches already trained on are never loaded.
            sampler.set_epoch(self.epoch, start_index=start * loader.batch_size)
        batch_iterator = iter(loader)
        if sampler is None and start:  # a custom loader: skip by drawing (and loading)
            for _ in range(start):
                next(batch_iterator)
        if self.prefetch_to_device:
            batch_iterator = prefetch_to_device(batch_iterator, self.device)
        move_batches = self.batches_need_moving and not self.prefetch_to_device
        accumulate = self.accumulate_grad_batches
        bar = progress_bar(
            batches, f"epoch {self.epoch + 1}/{self.cfg.max_epochs}", self.show_progress
        )
        bar.update(start)
        losses, counts = self.epoch_losses, self.epoch_counts
        policy, stop_signals, max_steps = self.checkpoint_policy, self.stop_signals, self.max_steps
        save_every = policy.every_n_steps if policy is not None and self.process.is_main else None
        distributed = self.process.distributed
        data_wait = compile_seconds = 0.0
        compile_samples = 0
        channels_last, profiler = self.channels_last, self.profiler
        epoch_start = fetch_start = time.perf_counter()
        for batch_index, batch in enumerate(batch_iterator, start=start):
            if batch_index >= batches:
                break
            batch_start = time.perf_counter()
            data_wait += batch_start - fetch_start
            if move_batches:
                batch = move_to_device(batch, self.device)
            if channels_last:
                batch = to_channels_last(batch)
            last_batch = batch_index + 1 == batches
            stepping = (batch_index + 1) % accumulate == 0 or last_batch
            # DDP: accumulate locally, all-reduce gradients only before the optimizer step.
            with self.model.no_sync() if self.ddp and not stepping else contextlib.nullcontext():
                with self.autocast():
                    loss, count = self.training_step(batch)
                if self._loss_is_usable(loss, batch_index):
                    scaled = loss / accumulate if accumulate > 1 else loss
                    (self.scaler.scale(scaled) if self.scaler else scaled).backward()
                    self.window_has_gradients = True
                    losses.append(loss.detach())
                    counts.append(count)
            bar.update()
            if profiler is not None:
                profiler.step()
            if stepping:
                self.optimizer_step()
                self.batch_in_epoch = batch_index + 1
                if self.ema is not None:
                    self.ema.update()
                if self.global_step % self.log_every_n_steps == 0:
                    self._log_step(loss, bar)
                # Rare events, each one cheap test per step (see benchmarks/overhead.py).
                if distributed:  # every rank stops at the same step, or the others hang
                    if self.global_step % STOP_CHECK_EVERY_N_STEPS == 0 and any_rank(
                        stop_signals.received is not None, self.device
                    ):
                        self._stop_for_signal(bar)
                elif stop_signals.received:
                    self._stop_for_signal(bar)
                if max_steps is not None and self.global_step >= max_steps and not last_batch:
                    self._save_resumable("trainer.max_steps reached")
                    bar.close()
                    return {}
                if save_every and self.global_step % save_every == 0:
                    self.run_logger.flush()
                    policy.save_resumable(self.global_step, self.training_state)
            if self.compile_pending:  # the first step compiled the model: time it apart
                self.compile_pending = False
                compile_seconds = time.perf_counter() - batch_start
                compile_samples = count
                log.info(
                    "torch.compile: the first step took %.1f s, compilation included",
                    compile_seconds,
                )
            if last_batch:
                break
            fetch_start = time.perf_counter()
        bar.close()
        # Throughput and data waiting leave out the compiling step (timed above).
        elapsed = time.perf_counter() - epoch_start - compile_seconds
        if not counts:  # every batch skipped for a non-finite loss
            raise NonFiniteLoss(
                f"every batch of epoch {self.epoch + 1} had a NaN or infinite loss (trainer.nan_policy=skip_batch); lower optimizer.lr or check the data"
            )
        weights = torch.tensor(counts, dtype=torch.float64, device=self.device)
        # Summed over ranks: the epoch's loss is the mean over every sample of every rank.
        totals = torch.stack(
            [
                (torch.stack(losses).double() * weights).sum(),
                weights.sum(),
                weights[start:].sum(),  # trained in this call (not before a resume)
            ]
        )
        loss_sum, samples, trained = all_reduce_sum(totals).tolist()
        self.batch_in_epoch, self.epoch_losses, self.epoch_counts = 0, [], []
        # The share of the epoch this process spent waiting for batches (ranks differ
        # little, as they step together; rank 0's is logged).
        data_wait_fraction = data_wait / elapsed
        if self.process.is_main:
            self.data_wait.check(data_wait_fraction, loader)
        metrics = {
            "train/loss": loss_sum / samples,
            "train/samples_per_sec": (trained - compile_samples) / elapsed,
            "train/data_wait_fraction": data_wait_fraction,
            "lr": self.optimizer.param_groups[0]["lr"],
        }
        if compile_seconds:
            metrics["train/compile_seconds"] = compile_seconds
        if self.skip_non_finite:
            metrics["train/skipped_batches"] = float(self.skipped_batches)
        return metrics

    def _loss_is_usable(self, loss: Tensor, batch_index: int) -> bool:
        """False to skip a batch whose loss is NaN or infinite (`nan_policy=skip_batch`);
        with `stop`, such a loss ends the run before `backward()` touches anything.
        One host sync per batch; under DDP the ranks agree, or one would skip the
        gradient all-reduce the others wait in."""
        finite = bool(torch.isfinite(loss.detach()).all())
        if self.process.distributed:
            finite = not any_rank(not finite, self.device)
        if finite:
            return True
        if self.skip_non_finite:
            self.skipped_batches += 1
            log.warning(
                "skipped batch %d of epoch %d: non-finite loss (%d skipped so far)",
                batch_index + 1, self.epoch + 1, self.skipped_batches,
            )  # fmt: skip
            return False
        raise NonFiniteLoss(
            non_finite_loss_message(
                loss.detach().float().mean().item(),
                step=self.global_step + 1,
                epoch=self.epoch + 1,
                batch=batch_index + 1,
                last_checkpoint=self._last_good_checkpoint(),
                lr=self.optimizer.param_groups[0]["lr"],
            )
        )

    def _last_good_checkpoint(self) -> Path | None:
        last = self.checkpoint_policy.last_path if self.checkpoint_policy else None
        return last if last is not None and last.is_file() else None

    def check_weights_finite(self) -> None:
        """Stop, one line, if a weight is NaN or infinite: such weights are never saved.
        (`skip_batch` skips non-finite losses, but a finite loss can still take a step that
        overflows the weights.) One host sync; called at epoch ends and before every save."""
        tensors = dict(self.module.named_parameters())
        tensors.update(self.module.named_buffers())
        tensors = {name: t for name, t in tensors.items() if t.is_floating_point()}
        finite = torch.stack([t.detach().isfinite().all() for t in tensors.values()]).tolist()
        if all(finite):
            return
        raise NonFiniteLoss(
            non_finite_weights_message(
                [name for name, ok in zip(tensors, finite, strict=True) if not ok],
                step=self.global_step,
                epoch=self.epoch + 1,
                last_checkpoint=self._last_good_checkpoint(),
                lr=self.optimizer.param_groups[0]["lr"] if self.optimizer else 0.0,
            )
        )

    def _log_gradient_norms(self) -> None:
        """Total and per-parameter L2 norms of the gradients the step is about to use
        (before clipping), from the .grad tensors backward already filled: no extra pass."""
        named = [(name, p.grad) for name, p in self.module.named_parameters() if p.grad is not None]
        norms = torch.stack([torch.linalg.vector_norm(grad.detach().float()) for _, grad in named])
        values = torch.cat([torch.linalg.vector_norm(norms).view(1), norms]).tolist()  # one sync
        scalars = {"train/grad_norm/total": values[0]}
        scalars.update(
            {f"train/grad_norm/{name}": v for (name, _), v in zip(named, values[1:], strict=True)}
        )
        self.run_logger.scalars(scalars, self.global_step + 1)

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
        self.run_logger.flush()
        path = self.checkpoint_policy.save_resumable(self.global_step, self.training_state)
        log.info(
            "%s at step %d (epoch %d, batch %d): saved %s; continue with: python train.py resume=%s",
            reason,
            self.global_step,
            self.epoch + 1,
            self.batch_in_epoch,
            path,
            path.parent.parent,
        )
        return path

    def optimizer_step(self) -> None:
        if self.window_has_gradients:  # else every batch of the window was skipped
            clip = self.gradient_clip_val
            log_norms = self.grad_norm_every and (self.global_step + 1) % self.grad_norm_every == 0
            if self.scaler and (clip > 0 or log_norms):
                self.scaler.unscale_(self.optimizer)  # the true gradients, not scaled ones
            if log_norms:
                self._log_gradient_norms()
            if clip > 0:
                nn.utils.clip_grad_norm_(self.module.parameters(), clip)
            if self.scaler:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
        self.window_has_gradients = False
        self.optimizer.zero_grad(set_to_none=True)
        if self.scheduler is not None and not isinstance(self.scheduler, ReduceLROnPlateau):
            self.scheduler.step()
        self.global_step += 1

    @torch.no_grad()
    def evaluate(
        self, loader: DataLoader, prefix: str = "val", limit: int | None = None
    ) -> dict[str, float]:
        """Run `validation_step` over `loader`; metrics are per-sample means, `<prefix>/<name>`.
        Under DDP each rank evaluates its own shard (no sample twice, see EpochSampler) and
        the sums are added over ranks, so every rank gets the single-process values."""
        self.model.eval()
        batches = num_batches(loader, limit)
        bar = progress_bar(batches, prefix, self.show_progress)
        totals: dict[str, Tensor] = {}
        samples = 0
        # The bare model under DDP: the wrapper's forward would sync buffers across ranks,
        # which hold shards of different lengths.
        wrapped, self.model = self.model, (self.module if self.ddp else self.model)
        try:
            for batch_index, batch in enumerate(loader):
                if batch_index == batches:
                    break
                batch = move_to_device(batch, self.device)
                if self.channels_last:
                    batch = to_channels_last(batch)
                with self.autocast():
                    sums, count = self.validation_step(batch)
                for name, value in sums.items():
                    value = value.detach().double()
                    totals[name] = totals[name] + value if name in totals else value
                samples += count
                bar.update()
                if self.show_progress and batch_index % 10 == 0:
                    shown = self.reduce_metrics(totals, samples)
                    bar.set_postfix({name: f"{value:.4f}" for name, value in shown.items()})
        finally:
            self.model = wrapped
        bar.close()
        if self.process.distributed:
            totals, samples = self._sum_over_ranks(totals, samples)
        if samples == 0:
            raise UserError(
                f"the {prefix} split produced no batches; check its size and loader.batch_size"
            )
        return {
            f"{prefix}/{name}": value
            for name, value in self.reduce_metrics(totals, samples).items()
        }

    def _sum_over_ranks(
        self, totals: dict[str, Tensor], samples: int
    ) -> tuple[dict[str, Tensor], int]:
        """One all-reduce of every total (flattened into one float64 vector) and the count."""
        if not totals:  # the ranks would disagree on what to add up
            raise UserError(
                f"a rank got no validation batch: the split is smaller than the {self.process.world_size} processes"
            )
        names = sorted(totals)
        shapes = [totals[name].shape for name in names]
        flat = torch.cat(
            [totals[name].reshape(-1) for name in names]
            + [torch.tensor([float(samples)], dtype=torch.float64, device=self.device)]
        )
        flat = all_reduce_sum(flat)
        summed, offset = {}, 0
        for name, shape in zip(names, shapes, strict=True):
            size = shape.numel()
            summed[name] = flat[offset : offset + size].reshape(shape)
            offset += size
        return summed, int(flat[-1].item())

    def reduce_metrics(self, totals: dict[str, Tensor], samples: int) -> dict[str, float]:
        """Epoch metrics from the summed outputs of `validation_step`: per-sample means by
        default. Override for metrics that are not means over samples (mean IoU)."""
        return {name: (total / samples).item() for name, total in totals.items()}

    def on_validation_end(self) -> None:
        """Called after each validation pass, e.g. to log example predictions as images."""

    # ---- state ---------------------------------------------------------------------------

    def training_state(self) -> dict[str, Any]:
        """Everything a checkpoint holds besides the policy's own state: enough to resume
        at the exact step (see `load_training_state`). Never from non-finite weights."""
        self.check_weights_finite()
        return {
            "config": self.run_config,
            "model": self.module.state_dict(),  # bare: never a `module.` prefix
            "optimizer": self.optimizer.state_dict() if self.optimizer else None,
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "ema": self.ema.state_dict() if self.ema else None,
            "inference_weights": "ema" if self.ema else "model",
            "early_stopping": self.early_stopping.state_dict(),
            "epoch": self.epoch,
            "global_step": self.global_step,
            "world_size": self.process.world_size,  # the sampler's shards depend on it
            "position": {
                "batch": self.batch_in_epoch,
                "losses": torch.stack(self.epoch_losses).cpu() if self.epoch_losses else None,
                "counts": list(self.epoch_counts),
            },
            "last_metrics": dict(self.last_metrics),
            "rng": rng_state(),
        }

    def load_training_state(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint written by `training_state`: the next step is the
        one the saved run would have taken, with the same data, RNG draws and LR."""
        saved_world = state.get("world_size", 1)
        if saved_world != self.process.world_size and state["position"]["batch"]:
            raise UserError(
                f"the checkpoint stopped mid-epoch with {saved_world} process(es); resume it with the same number (now {self.process.world_size}), or from an epoch-end checkpoint"
            )
        self.module.load_state_dict(state["model"])
        if self.optimizer is not None and state["optimizer"] is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            planned = getattr(self.scheduler, "total_steps", None)
            self.scheduler.load_state_dict(state["scheduler"])
            if isinstance(self.scheduler, OneCycleLR) and self.scheduler.total_steps != planned:
                # Its state fixes the run's length: stepping past it raises deep in PyTorch.
                raise UserError(
                    f"scheduler=onecycle was planned for {self.scheduler.total_steps} steps, this run for {planned}: resume it with the trainer.max_epochs it started with (a one-cycle schedule cannot be extended)"
                )
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        self.early_stopping.load_state_dict(state["early_stopping"])
        if self.checkpoint_policy is not None and "checkpoint_policy" in state:
            self.checkpoint_policy.load_state_dict(state["checkpoint_policy"])
        self.epoch, self.global_step = state["epoch"], state["global_step"]
        position = state["position"]
        self.batch_in_epoch = position["batch"]
        losses = position["losses"]
        self.epoch_losses = list(losses.to(self.device).unbind()) if losses is not None else []
        self.epoch_counts = list(position["counts"])
        self.last_metrics = dict(state.get("last_metrics", {}))
        restore_rng_state(state["rng"])

    # ---- helpers -------------------------------------------------------------------------

    def logged_metrics(self) -> list[str]:
        """Metrics a checkpoint can be judged and named by."""
        return [f"val/{name}" for name in self.validation_metrics] + ["train/loss"]

    def _check_monitor(self, monitor: str, validating: bool) -> None:
        available = self.logged_metrics()
        if monitor not in available:
            raise UserError(
                f"checkpoint.monitor={monitor!r} is not a metric of this task; choose one of: {', '.join(available)}"
            )
        if monitor.startswith("val/") and not validating:
            raise UserError(
                f"checkpoint.monitor={monitor!r} needs validation, but there is no validation loader"
            )

    def _log_step(self, loss: Tensor, bar) -> None:
        value = loss.item()
        lr = self.optimizer.param_groups[0]["lr"]
        self.run_logger.scalars({"train/loss_step": value, "train/lr_step": lr}, self.global_step)
        # The last validation result rides along so the bar shows loss and metric together.
        shown = {"loss": f"{value:.4f}", "lr": f"{lr:.3g}"}
        shown.update(
            {name: f"{v:.4f}" for name, v in self.last_metrics.items() if name.startswith("val/")}
        )
        bar.set_postfix(shown, refresh=False)


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
