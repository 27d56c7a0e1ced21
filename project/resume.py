"""`python train.py resume=<checkpoint | run folder | auto>`: continue a run where it stopped.

Before Hydra starts, `redirect_to_run_folder` points `hydra.run.dir` at the run being
resumed, so the log is appended and TensorBoard continues in the same folder, and puts the
resuming command's Hydra record in `.hydra/resume-<time>/` beside the original one.
Then `resume_config` rebuilds the run's configuration from the checkpoint and applies the
command-line overrides that do not change what is trained; the others are refused.
"""

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from project.checkpoint.format import load_checkpoint
from project.checkpoint.policy import CHECKPOINT_DIRNAME, LAST
from project.errors import UserError
from project.schema import SCHEMAS, may_change_on_resume, validate_config

# Besides the schema fields declared `resume=True` (project/schema.py): groups a resume
# may change as a whole. Logging, paths and Hydra's own settings never change what is trained.
FREE_ON_RESUME = ("logger", "paths", "resume", "hydra")


def _argument(argv: list[str], key: str) -> str | None:
    for argument in argv:
        if argument.startswith(f"{key}="):
            return argument.split("=", 1)[1]
    return None


def redirect_to_run_folder(argv: list[str]) -> list[str]:
    """The command line with `hydra.run.dir` and `hydra.output_subdir` set for a resume."""
    target = _argument(argv, "resume")
    if target in (None, "null", "None", "") or "-m" in argv or "--multirun" in argv:
        return argv
    run_dir_argument = _argument(argv, "hydra.run.dir")
    if target == "auto":
        # auto continues the run in hydra.run.dir if it has a checkpoint (a requeued job
        # repeats its command), and otherwise starts it there.
        if run_dir_argument is None:
            return argv  # nothing to find in a folder Hydra has yet to create: a fresh run
        run_dir = Path(run_dir_argument)
        if find_resumable(run_dir) is None:
            return argv
    else:
        path = Path(target)
        if path.is_file() and path.parent.name == CHECKPOINT_DIRNAME:
            run_dir = path.parent.parent
        elif (path / CHECKPOINT_DIRNAME).is_dir():
            run_dir = path
        else:  # missing, or a file outside a run folder: a new folder; train() reports errors
            return argv
    extra = [] if run_dir_argument else [f"hydra.run.dir={run_dir}"]
    if (run_dir / ".hydra").is_dir():
        extra.append(f"hydra.output_subdir=.hydra/resume-{time.strftime('%Y-%m-%d_%H-%M-%S')}")
    return argv + extra


def find_resumable(target: Path) -> Path | None:
    """The checkpoint to resume from: `target` itself if it is a file, else the newest
    checkpoint of the run folder (`last.pt` normally; any full-state file will do)."""
    if target.is_file():
        return target
    directory = target / CHECKPOINT_DIRNAME
    if not directory.is_dir():
        return None
    candidates = sorted(directory.glob("*.pt"), key=lambda p: p.stat().st_mtime, reverse=True)
    last = directory / LAST
    if last.is_file():
        candidates.remove(last)
        candidates.insert(0, last)
    return candidates[0] if candidates else None


def resume_checkpoint(resume: str, run_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    """(path, state) of the checkpoint `resume=` names; None when `auto` finds none."""
    if resume == "auto":
        path = find_resumable(run_dir)
        if path is None:
            return None
    else:
        target = Path(resume)
        if not target.exists():
            raise UserError(f"resume={resume}: no such checkpoint or run folder")
        path = find_resumable(target)
        if path is None:
            raise UserError(f"resume={resume}: no checkpoint in {target / CHECKPOINT_DIRNAME}")
    state = load_checkpoint(path)
    if "position" not in state or "rng" not in state:
        raise UserError(
            f"{path} holds weights but not a full training state (written by an older "
            "version); start a new run with model.pretrained=" + str(path)
        )
    return path, state


def _is_harmless(key: str) -> bool:
    return key.split(".")[0] in FREE_ON_RESUME or may_change_on_resume(key)


def resume_config(saved: dict[str, Any], composed: DictConfig, overrides: list[str]) -> DictConfig:
    """The checkpoint's config with the harmless command-line `overrides` applied (values
    taken from the `composed` config, so group choices work too); others are refused."""
    config = OmegaConf.create(saved)
    # Keys added to the schemas since the checkpoint was written take their defaults.
    for group, schema in SCHEMAS.items():
        if group in config:
            config[group] = OmegaConf.merge(OmegaConf.structured(schema), config[group])
    refused = []
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if _is_harmless(key):
            OmegaConf.update(config, key, OmegaConf.select(composed, key), force_add=True)
            continue
        before, after = OmegaConf.select(config, key), OmegaConf.select(composed, key)
        if before != after:
            if isinstance(after, DictConfig):
                refused.append(f"{override} (changes the {key} config)")
            else:
                refused.append(f"{key}: {before} -> {after}")
    if refused:
        raise UserError(
            "resume: these overrides change what is trained: "
            + "; ".join(refused)
            + ". Start a new run instead (model.pretrained=<checkpoint> starts from its weights)"
        )
    config.resume = composed.resume
    config.paths.output_dir = composed.paths.output_dir
    return config


@dataclass
class Resumption:
    """What `resume=` continues: the config, and the checkpoint with its loaded state
    (both None when `resume=auto` found nothing and the run starts)."""

    config: DictConfig
    checkpoint: Path | None = None
    state: dict[str, Any] | None = None

    def describe(self) -> str:
        """For train.log (Hydra opens it after `check_resume` ran, so train() logs this)."""
        if self.checkpoint is None:
            return f"resume=auto: no checkpoint in {self.config.paths.output_dir} yet, starting the run"
        return f"resuming from {self.checkpoint} (step {self.state['global_step']})"


# check_resume's result for train() in the same process: the checkpoint is read and the
# configs validated once, before Hydra writes anything, and then used.
_checked: dict[tuple, Resumption] = {}


def _key(cfg: DictConfig, overrides: list[str]) -> tuple:
    return str(cfg.resume), str(Path(cfg.paths.output_dir).resolve()), tuple(overrides)


def resume_run(cfg: DictConfig, overrides: list[str]) -> Resumption:
    """For `resume=`: the validated config to continue with and the checkpoint (each
    spawned rank loads it again; this process has its state). The config must be known
    before the launch, since it says how many processes to start."""
    checked = _checked.pop(_key(cfg, overrides), None)
    if checked is not None:
        return checked if checked.checkpoint else Resumption(cfg)
    validate_config(cfg)
    run_dir = Path(cfg.paths.output_dir)
    resumed = resume_checkpoint(cfg.resume, run_dir)
    if resumed is None:
        return Resumption(cfg)
    path, state = resumed
    config = resume_config(state["config"], cfg, overrides)
    validate_config(config)
    return Resumption(config, path, state)


def check_resume(cfg: DictConfig, overrides: list[str]) -> None:
    """Everything `resume=` would refuse, checked before anything is written into the run
    folder (project/run_folder.py calls it from Hydra's `on_run_start`); train() then
    takes the result instead of reading the checkpoint again."""
    _checked[_key(cfg, overrides)] = resume_run(cfg, overrides)
