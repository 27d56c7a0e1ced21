"""One writer per run folder, and nothing written into it before the command is known good.

Two `train.py` processes given the same `hydra.run.dir` (or a `resume=` of a run that is
still training) would both write `last.pt`, `best.pt` and `train.log`, and one run's
checkpoints would silently replace the other's. So the process that owns a run folder
holds an exclusive `flock` on `<run folder>/.lock` (holding its PID) for as long as it
lives; the OS releases it when the process ends, even by `kill -9`, so a lock is never
stale. A second writer is refused with the folder and the holder's PID.

Hydra creates the folder, opens `train.log` and writes `.hydra/` inside `run_job`, before
the task function runs. `GuardRunFolder` is a Hydra callback (configs/hydra/default.yaml)
whose `on_run_start` runs before all that: it checks the folder can be written, takes the
lock, and for `resume=` validates the resume (checkpoint, config, overrides), so a refused
command changes nothing on disk. Under `-m` the sweep folder is locked instead, once.
Under torchrun only rank 0 locks (the others do not write); spawned DDP workers never run
Hydra, and their parent holds the lock.
"""

import copy
import fcntl
import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from project.errors import UserError, exit_on_user_error

LOCK_NAME = ".lock"
_held: dict[Path, int] = {}  # folder -> open descriptor; closing it would release the lock


def lock_run_folder(folder: Path) -> None:
    """Create `folder` if needed and hold its lock until this process exits; a one-line
    `UserError` if it cannot be written or another live process holds it."""
    folder = Path(folder).absolute()
    if folder in _held:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise UserError(f"cannot write to the run folder {folder}: {error.strerror}") from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(descriptor)
        raise UserError(
            f"the run folder {folder} is in use by another training process (PID {holder}); "
            "wait for it to end, or choose another hydra.run.dir"
        ) from None
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
    _held[folder] = descriptor


def is_rank_zero() -> bool:
    """torchrun and SLURM set RANK in every process they start; rank 0 writes."""
    return os.environ.get("RANK", "0") == "0"


def _task_config(config: DictConfig, run_dir: Path) -> DictConfig:
    """The job's config as the task function will see it, with its run folder filled in
    (`${hydra:runtime.output_dir}` is only set inside `run_job`)."""
    task = copy.deepcopy(config)
    with read_write(task), open_dict(task):
        del task["hydra"]
        task.paths.output_dir = str(run_dir)
    return task


class GuardRunFolder(Callback):
    """Lock the run (or sweep) folder and validate a resume before Hydra writes into it."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not is_rank_zero():
            return
        run_dir = Path(OmegaConf.select(config, "hydra.run.dir"))
        with exit_on_user_error():
            # Validation only reads; the lock is the first write, so a refused command
            # leaves the folder (and its .lock) exactly as it was.
            if OmegaConf.select(config, "resume", default=None):
                from project.resume import check_resume  # train.py's key only

                check_resume(_task_config(config, run_dir), list(config.hydra.overrides.task))
            lock_run_folder(run_dir)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if is_rank_zero():
            with exit_on_user_error():
                lock_run_folder(Path(OmegaConf.select(config, "hydra.sweep.dir")))
