"""What the trainer and the tasks log to: one `RunLogger`, in front of the trackers that
`logger=` turns on (rank 0 only; on other ranks it holds none and does nothing).

It records scalars at steps, epoch metrics, images, text, and the config with the final
metrics. A tracker that fails (a full disk, a server gone) is switched off with one
warning; training and checkpoints go on.

Scalars are held in a list and handed to the trackers in batches, at most every
`batch_seconds` (and at epoch ends, saves and close). Handing them over one by one wakes
TensorBoard's writer thread for every event, which cost a tiny model about 2 ms per logged
step: 9.6% of its training time at log_every_n_steps=50, 2% when batched
(benchmarks/overhead.py). The writer itself only flushes to disk every 120 s, so the
batching does not delay what TensorBoard shows.
"""

import logging
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from project.trackers import Tracker, flatten_config, open_backends

log = logging.getLogger(__name__)


class RunLogger:
    batch_seconds = 30.0

    def __init__(self, trackers: list[Tracker] | None = None, flat_config: dict | None = None):
        self.trackers = list(trackers or [])
        self.flat_config = flat_config or {}  # the run's config, flattened once
        self.pending: list[tuple[dict[str, float], int]] = []
        self.last_handover = time.monotonic()

    @classmethod
    def open(
        cls,
        settings: Any,
        run_dir: Path | None,
        purge_step: int | None = None,
        resumed_ids: dict[str, str] | None = None,
        config: dict[str, Any] | None = None,
    ) -> "RunLogger":
        """The trackers `settings` (a LoggerConfig) turns on, writing into `run_dir`
        (None: none, as on ranks other than 0). `purge_step`: a resumed run drops what the
        interrupted run logged from that step on, where the tracker can."""
        trackers, flat_config = [], {}
        if run_dir is not None:  # other ranks log nothing: no config to flatten
            flat_config = flatten_config(config or {})
            openers = open_backends(settings, run_dir, purge_step, resumed_ids or {}, flat_config)
            for name, opener in openers:
                try:
                    trackers.append(opener())
                except Exception as error:  # a server that is down, a missing package
                    _warn(name, error)
        return cls(trackers, flat_config)

    @property
    def takes_images(self) -> bool:
        return any(tracker.takes_images for tracker in self.trackers)

    @property
    def tracker_ids(self) -> dict[str, str]:
        """What a checkpoint keeps so that a resumed run continues the same tracker runs."""
        return {f"{t.name}_run_id": t.run_id for t in self.trackers if t.run_id is not None}

    def _each(self, method: str, *args: Any) -> None:
        for tracker in list(self.trackers):
            try:
                getattr(tracker, method)(*args)
            except Exception as error:  # a logger must never stop training
                self.trackers.remove(tracker)
                _warn(tracker.name, error)

    def scalars(self, values: dict[str, float], step: int, now: bool = False) -> None:
        """Log `values` at `step`; `now` hands everything pending over at once."""
        if not self.trackers:
            return
        self.pending.append((values, step))
        if now or time.monotonic() - self.last_handover > self.batch_seconds:
            self.hand_over()

    def hand_over(self) -> None:
        if self.pending:
            self._each("scalars", self.pending)
            self.pending = []
        self.last_handover = time.monotonic()

    def epoch_metrics(self, metrics: dict[str, float], epoch: int, step: int) -> None:
        """An epoch's metrics: scalars at `step`, and a row of metrics.csv."""
        self.scalars(metrics, step=step, now=True)
        self._each("epoch_metrics", metrics, epoch, step)

    def training_step(self, step: int, loss: Tensor, lr: float) -> float:
        """The step's loss and LR (every `log_every_n_steps`); returns the loss as a float."""
        value = loss.item()
        self.scalars({"train/loss_step": value, "train/lr_step": lr}, step)
        return value

    def gradient_norms(self, module: nn.Module, step: int) -> None:
        """Total and per-parameter L2 norms of the gradients the step is about to use
        (before clipping), from the .grad tensors backward already filled: no extra pass.
        One host read (`trainer.log_grad_norm` steps only)."""
        named = [(name, p.grad) for name, p in module.named_parameters() if p.grad is not None]
        norms = torch.stack([torch.linalg.vector_norm(grad.detach().float()) for _, grad in named])
        values = torch.cat([torch.linalg.vector_norm(norms).view(1), norms]).tolist()
        scalars = {"train/grad_norm/total": values[0]}
        scalars.update(
            {f"train/grad_norm/{name}": v for (name, _), v in zip(named, values[1:], strict=True)}
        )
        self.scalars(scalars, step)

    def image(self, tag: str, image: Tensor, step: int) -> None:
        """A (3, H, W) float image in 0..1, to every tracker that shows images."""
        self.hand_over()  # keep events in step order
        self._each("image", tag, image, step)

    def text(self, tag: str, text: str, step: int) -> None:
        self.hand_over()
        self._each("text", tag, text, step)

    def hyperparameters(self, metrics: dict[str, float]) -> None:
        """The run's flattened config next to its final metrics (TensorBoard's HPARAMS
        tab, W&B's summary; MLflow and W&B got the config when their run opened)."""
        self.hand_over()
        self._each("hyperparameters", self.flat_config, metrics)

    def flush(self) -> None:
        """Everything logged so far onto disk: called when a checkpoint is written, so a
        crash right after loses no event from before the checkpoint."""
        self.hand_over()
        self._each("flush")

    def close(self) -> None:
        self.hand_over()
        self._each("close")
        self.trackers = []


def _warn(name: str, error: Exception) -> None:
    log.warning("logger: %s failed (%s: %s); it is off for the rest of the run",
                name, type(error).__name__, error)  # fmt: skip
