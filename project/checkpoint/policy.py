"""The checkpoint policy: which files `<run dir>/checkpoints/` keeps, and when to write.

Files are only ever replaced whole (files.py), and a file is removed only after its
replacement and the manifest are complete, so `kill -9` at any moment leaves the newest
checkpoint loadable.
"""

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

from project import __version__
from project.checkpoint.files import (
    atomic_link,
    atomic_save,
    atomic_write_text,
    remove_stale_temporaries,
    temporary_name,
)
from project.checkpoint.format import FORMAT_VERSION
from project.errors import UserError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
LAST = "last.pt"  # the newest full state: what resume picks first
BEST = "best.pt"
CHECKPOINT_DIRNAME = "checkpoints"
MAX_NAME_BYTES = 255  # NAME_MAX of ext4, xfs, btrfs, NFS and tmpfs


def improves(score: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    """Is `score` better than `best` by more than `min_delta`? NaN or infinity never is;
    any finite score beats None.

    The one definition of "better" shared by best.pt and early stopping."""
    if not math.isfinite(score):
        return False
    if best is None:
        return True
    if mode == "max":
        return score > best + min_delta
    return score < best - min_delta


class CheckpointPolicy:
    """Decides what to write in `<run dir>/checkpoints/`; only the process that writes
    (rank 0) owns one.

    - `best.pt`: the best state so far by `monitor` (`mode` max or min), written whenever
      the score improves.
    - snapshots named by `filename` (for example `epoch=003-step=000186.pt`): the
      `save_top_k` best (0 none, -1 all), considered at every `every_n_epochs`-th validation.
    - `last.pt`: the newest state, at every `every_n_epochs`-th validation (`save_last`),
      every `every_n_steps` optimizer steps, and when a run stops early (signal, max_steps).
    - `manifest.json`: the kept files with their scores, epochs and steps.
    """

    def __init__(
        self,
        run_dir: Path,
        monitor: str,
        mode: str = "max",
        save_top_k: int = 1,
        save_last: bool = True,
        every_n_epochs: int = 1,
        every_n_steps: int | None = None,
        filename: str = "epoch={epoch:03d}-step={step:06d}",
        owner: bool = True,
    ):
        self.directory = Path(run_dir) / CHECKPOINT_DIRNAME
        self.monitor, self.mode = monitor, mode
        self.save_top_k, self.save_last = save_top_k, save_last
        self.every_n_epochs, self.every_n_steps = every_n_epochs, every_n_steps
        self.filename = filename
        self.best: dict[str, Any] | None = None  # {"file", "score", "epoch", "step"}
        self.last: dict[str, Any] | None = None
        self.top_k: list[dict[str, Any]] = []  # best first
        if owner:  # the writing process (rank 0); the other ranks never touch the folder
            remove_stale_temporaries(self.directory)

    @classmethod
    def from_config(cls, run_dir: Path, config: Any, owner: bool = True) -> "CheckpointPolicy":
        """From a `CheckpointConfig` (project/schema.py); `owner`: this process writes."""
        return cls(
            run_dir, config.monitor, config.mode, config.save_top_k, config.save_last,
            config.every_n_epochs, config.every_n_steps, config.filename, owner=owner,
        )  # fmt: skip

    @property
    def last_path(self) -> Path:
        return self.directory / LAST

    @property
    def best_path(self) -> Path:
        return self.directory / BEST

    @property
    def best_score(self) -> float | None:
        return self.best["score"] if self.best else None

    def check_metrics(self, metric_names: list[str], validating: bool) -> None:
        """Fail before training when `monitor` or the filename template names a metric the
        task does not log (`metric_names`), or one that needs a validation loader."""
        if self.monitor not in metric_names:
            raise UserError(
                f"checkpoint.monitor={self.monitor!r} is not a metric of this task; choose one of: {', '.join(metric_names)}"
            )
        if self.monitor.startswith("val/") and not validating:
            raise UserError(
                f"checkpoint.monitor={self.monitor!r} needs validation, but there is no validation loader"
            )
        self.check_filename(metric_names)

    def check_filename(self, metric_names: list[str]) -> None:
        """Fail before training when the template names a key that will not exist."""
        # The longest float repr, so that a template naming a metric is checked at the
        # length its real values can reach.
        longest = -1.2345678901234567e-300
        try:
            self._snapshot_name({name: longest for name in metric_names}, epoch=1, step=1)
        except (KeyError, ValueError, IndexError) as error:
            shown = self.filename if len(self.filename) <= 80 else f"{self.filename[:60]}..."
            raise UserError(
                f"checkpoint.filename={shown!r} cannot be filled ({error}); it may use "
                f"{{epoch}}, {{step}} and {', '.join('{' + n + '}' for n in metric_names)}"
            ) from None

    def _snapshot_name(self, metrics: dict[str, float], epoch: int, step: int) -> str:
        name = self.filename.format_map({**metrics, "epoch": epoch, "step": step})
        name = name if name.endswith(".pt") else f"{name}.pt"
        if "/" in name or name in (BEST, LAST):
            raise ValueError(f"{name!r} is not a plain file name of its own")
        # The temporary file written first is longer than the name: its suffix holds the
        # PID, at most 7 digits on Linux (pid_max 4194304).
        length = len(os.fsencode(temporary_name(name, pid=9_999_999)))
        if length > MAX_NAME_BYTES:
            raise ValueError(
                f"a name like {name[:60]!r}... would be {length} bytes with its temporary "
                f"suffix, over the {MAX_NAME_BYTES} a file name may have"
            )
        return name

    def is_improvement(self, score: float) -> bool:
        return improves(score, self.best_score, self.mode)

    def state_dict(self) -> dict[str, Any]:
        return {
            "monitor": self.monitor,
            "mode": self.mode,
            "best_score": self.best_score,
            "best": self.best,
            "last": self.last,
            "top_k": [dict(entry) for entry in self.top_k],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.last = state.get("best"), state.get("last")
        self.top_k = [dict(entry) for entry in state.get("top_k", [])]

    # ---- when to write --------------------------------------------------------------------

    def on_validation_end(
        self, metrics: dict[str, float], epoch: int, step: int, build_state
    ) -> list[Path]:
        """After validation of epoch `epoch` (1-based): write what is due; return the paths.

        `build_state()` returns the trainer's full state; it is called after this policy
        updated its own bookkeeping, so the saved state lists the files being written.
        """
        score = metrics.get(self.monitor)
        due = epoch % self.every_n_epochs == 0
        improved = score is not None and self.is_improvement(score)
        entry = {"score": score, "epoch": epoch, "step": step}
        kept, evicted = self._rank_snapshot(entry, metrics) if due else (None, [])
        if improved:
            self.best = {"file": BEST, **entry}
        if due and self.save_last:
            self.last = {"file": LAST, **entry}
        names = [kept] if kept else []
        if improved:
            names.append(BEST)
        if due and self.save_last:
            names.append(LAST)
        written = [self.directory / name for name in names]
        if written:
            # One write; the other names are hard links to that complete file.
            atomic_save(self._checkpoint(build_state, metrics), written[0])
            for path in written[1:]:
                atomic_link(written[0], path)
            self.write_manifest()
            log.info(
                "saved %s (%s=%s, epoch %d, step %d)",
                ", ".join(str(path) for path in written), self.monitor,
                "n/a" if score is None else f"{score:.6g}", epoch, step,
            )  # fmt: skip
        for name in evicted:  # only now: the new files and the manifest are complete
            (self.directory / name).unlink(missing_ok=True)
        return written

    def save_resumable(self, step: int, build_state) -> Path:
        """Write last.pt now, mid-epoch: every `every_n_steps` optimizer steps, and when a
        run stops early (a signal, max_steps) whatever `save_last` says, since a run that
        stops must be resumable."""
        self.last = {"file": LAST, "score": None, "epoch": None, "step": step}
        atomic_save(self._checkpoint(build_state, {}), self.last_path)
        self.write_manifest()
        log.info("saved %s (mid-epoch, step %d)", self.last_path, step)
        return self.last_path

    # ---- helpers ---------------------------------------------------------------------------

    def _rank_snapshot(
        self, entry: dict[str, Any], metrics: dict[str, float]
    ) -> tuple[str | None, list[str]]:
        """Admit this epoch's snapshot into the top k? Returns (its name or None, names to
        delete). Updates `self.top_k`."""
        if self.save_top_k == 0:
            return None, []
        score = entry["score"]
        if self.save_top_k > 0 and (score is None or math.isnan(score)):
            return None, []  # no score to rank by
        name = self._snapshot_name(metrics, entry["epoch"], entry["step"])
        candidates = [e for e in self.top_k if e["file"] != name] + [{"file": name, **entry}]
        if self.save_top_k > 0:
            candidates.sort(key=lambda e: e["score"], reverse=self.mode == "max")
            kept, dropped = candidates[: self.save_top_k], candidates[self.save_top_k :]
        else:
            kept, dropped = candidates, []
        self.top_k = kept
        admitted = any(e["file"] == name for e in kept)
        return (name if admitted else None), [e["file"] for e in dropped if e["file"] != name]

    def _checkpoint(self, build_state, metrics: dict[str, float]) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "project_version": __version__,
            **build_state(),
            "metrics": dict(metrics),
            "checkpoint_policy": self.state_dict(),
        }

    def write_manifest(self) -> None:
        """The policy's state, readable without torch: what is kept, with scores and steps."""
        atomic_write_text(json.dumps(self.state_dict(), indent=2) + "\n", self.directory / MANIFEST)
