"""`logger=tensorboard` (the default): TensorBoard events in the run folder.

A resumed run passes `purge_step`: TensorBoard then discards the events at or after that
step that the interrupted run had written, so curves continue without overlap.
"""

from pathlib import Path
from typing import Any

from tensorboard.compat.proto.summary_pb2 import Summary
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summary

from project.trackers import Tracker


class TensorBoardTracker(Tracker):
    name = "tensorboard"
    takes_images = True

    def __init__(self, run_dir: Path, purge_step: int | None):
        self.writer = SummaryWriter(log_dir=str(run_dir), purge_step=purge_step)

    def scalars(self, batch: list[tuple[dict[str, float], int]]) -> None:
        # One event per step holding all of that step's values, built here: add_scalar
        # makes one event per value (about 70 us each against 30 us per value this way,
        # docs/benchmarks.md), and the writer thread checksums every event in pure Python.
        for values, step in batch:
            tagged = [Summary.Value(tag=tag, simple_value=float(v)) for tag, v in values.items()]
            self.writer.file_writer.add_summary(Summary(value=tagged), step)

    def image(self, tag: str, image: Tensor, step: int) -> None:
        self.writer.add_image(tag, image, step)

    def text(self, tag: str, text: str, step: int) -> None:
        # The TEXT tab renders Markdown: indented lines stay a verbatim block.
        self.writer.add_text(tag, "".join(f"    {line}\n" for line in text.splitlines()), step)

    def hyperparameters(self, flat_config: dict[str, Any], metrics: dict[str, float]) -> None:
        """The HPARAMS tab, written into the run's own event file, not the sub-folder
        `add_hparams` would make, so one run stays one folder. The tab reads each
        metric's values from the scalars of the same tag, already logged at their steps."""
        for summary in hparams_summary(flat_config, metrics):
            self.writer.file_writer.add_summary(summary)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
