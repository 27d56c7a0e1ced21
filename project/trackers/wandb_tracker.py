"""`logger=wandb`: the run's metrics, config, images and text in Weights & Biases.

`logger.wandb_mode=offline` (the default) needs no account and no network: the run is
written under `<run folder>/wandb/offline-run-<time>-<id>/` and can be uploaded later with
`wandb sync <that folder>`; `online` logs live (after `wandb login`). The run id is kept in
the checkpoint, so `resume=` continues the same W&B run (offline, a second folder with the
same id, which `wandb sync` appends). W&B keeps steps increasing: online, points an
interrupted run logged after its checkpoint are not logged again. wandb is imported only
when this backend is on (the optional extra `wandb`).
"""

import html
from pathlib import Path
from typing import Any

from torch import Tensor

from project.trackers import Tracker, image_pixels, import_optional


class WandbTracker(Tracker):
    name = "wandb"
    takes_images = True

    def __init__(
        self,
        run_dir: Path,
        project: str,
        entity: str | None,
        mode: str,
        run_id: str | None,
        flat_config: dict[str, Any],
    ):
        wandb = self.wandb = import_optional("wandb", logger="wandb", extra="wandb")
        self.run = wandb.init(
            project=project,
            entity=entity,
            name=run_dir.name,
            id=run_id,
            resume="allow" if run_id else None,
            dir=str(run_dir),
            mode=mode,
            config=flat_config,
            reinit="create_new",  # several trainers in one process (tests, sweeps)
            # No stdout capture (train.log has it) and no system-metrics sampling thread,
            # which would compete with the data loader for the CPU.
            settings=wandb.Settings(console="off", silent=True, x_disable_stats=True),
        )
        self.run_id = self.run.id

    def scalars(self, batch: list[tuple[dict[str, float], int]]) -> None:
        for values, step in batch:
            self.run.log(values, step=step)

    def image(self, tag: str, image: Tensor, step: int) -> None:
        self.run.log({tag: self.wandb.Image(image_pixels(image))}, step=step)

    def text(self, tag: str, text: str, step: int) -> None:
        self.run.log({tag: self.wandb.Html(f"<pre>{html.escape(text)}</pre>")}, step=step)

    def hyperparameters(self, flat_config: dict[str, Any], metrics: dict[str, float]) -> None:
        self.run.summary.update(metrics)  # the config went in when the run opened

    def close(self) -> None:
        self.run.finish()
