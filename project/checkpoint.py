"""Checkpoints: atomic writes, safe loads, and the policy deciding what to keep.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it loads
with `torch.load(weights_only=True)`: no pickled objects, nothing that can run code.

Keys (FORMAT_VERSION 2):
    format_version, project_version   what wrote it
    config                            the resolved run config (plain dict)
    model, optimizer, scheduler, scaler, ema   state dicts (the last three may be None)
    inference_weights                 "ema" or "model": which weights evaluation and export use
    epoch, global_step                completed epochs and optimizer steps
    position                          batches done in the current epoch and their losses
    early_stopping, rng               early-stopping counter; Python, NumPy, torch RNG states
    metrics                           the latest validation metrics
    checkpoint_policy                 best score, kept snapshots (the manifest's content)

Every file is a full training state, so any of them resumes a run. Files are only ever
replaced whole (temporary file, fsync, rename) and a file is removed only after its
replacement and the manifest are complete, so `kill -9` at any moment leaves the newest
checkpoint loadable.
"""

import json
import math
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch

from project import __version__
from project.errors import UserError
from project.trusted_config import check_trusted

FORMAT_VERSION = 2
MANIFEST = "manifest.json"
LAST = "last.pt"  # the newest full state: what resume picks first
BEST = "best.pt"
REQUIRED_KEYS = ("format_version", "config", "model")
CHECKPOINT_DIRNAME = "checkpoints"
MAX_NAME_BYTES = 255  # NAME_MAX of ext4, xfs, btrfs, NFS and tmpfs


def atomic_save(state: dict[str, Any], path: Path) -> None:
    """Write `state` to `path` so that a crash at any moment leaves either the old file or
    the new one, never a truncated mix: temporary file in the same folder, fsync, rename."""
    _replace_atomically(path, lambda temporary: _write_synced(temporary, "wb", state))


def atomic_write_text(text: str, path: Path) -> None:
    _replace_atomically(path, lambda temporary: _write_synced(temporary, "w", text))


def atomic_link(source: Path, path: Path) -> None:
    """Make `path` a second name of the complete file `source`, atomically. Files here
    are never modified in place, only replaced, so sharing the data is safe; without
    hard links (some network filesystems) it is copied."""

    def link_or_copy(temporary: Path) -> None:
        try:
            os.link(source, temporary)
        except OSError:
            shutil.copyfile(source, temporary)

    _replace_atomically(path, link_or_copy)


def _replace_atomically(path: Path, write) -> None:
    temporary = path.with_name(temporary_name(path.name))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            write(temporary)
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
        _sync_folder(path.parent)
    except (OSError, RuntimeError) as error:  # torch.save wraps the OSError in a RuntimeError
        raise UserError(
            f"cannot write {path}: {_os_reason(error)}; the files already there are unchanged"
        ) from None


def temporary_name(name: str) -> str:
    return f".{name}.{os.getpid()}.tmp"


def _os_reason(error: BaseException) -> str:
    """The operating system's words ("No space left on device", "File too large") from
    `error` or the error it was raised while handling; else its own first line."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
        cause = cause.__cause__ or cause.__context__
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]


def _write_synced(temporary: Path, mode: str, content: Any) -> None:
    with open(temporary, mode) as file:
        if mode == "wb":
            torch.save(content, file)
        else:
            file.write(content)
        file.flush()
        os.fsync(file.fileno())


def _sync_folder(folder_path: Path) -> None:
    # Persist the rename itself: without syncing the folder, a power cut can lose it.
    folder = os.open(folder_path, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint written by this project, or raise a one-line `UserError`."""
    path = Path(path)
    state = _load(path)
    if (
        not isinstance(state, dict)
        or any(key not in state for key in REQUIRED_KEYS)
        or not isinstance(state["config"], dict)
        or not state["config"]
        or not isinstance(state["model"], dict)
    ):
        raise UserError(
            f"{path} is not a checkpoint of this project (it needs {', '.join(REQUIRED_KEYS)}, "
            "with a non-empty config)"
        )
    _check_version(state, path)
    # Everything that rebuilds objects from this config gets it from here: check it first.
    check_trusted(state["config"], path)
    return state


def _load(path: Path) -> Any:
    # weights_only=True: the unpickler accepts tensors and plain containers only, so a
    # file crafted to run code when loaded is refused. Never pass False in this project.
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():  # a raw pickle's protocol warning adds nothing
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for truncated or foreign files
        text = str(error).strip()
        if "Weights only load failed" in text and _starts_as_pickle(path):
            # A pickled object in a zip checkpoint, a legacy (non-zip) torch file or a
            # plain pickle: the restricted unpickler names the global, or the opcode.
            found = (
                f" ({text.split('GLOBAL ', 1)[1].split(' ', 1)[0]})" if "GLOBAL " in text else ""
            )
            raise UserError(
                f"refused to load {path}: it holds pickled Python objects{found}, which could "
                "run code; checkpoints of this project hold only tensors and plain containers"
            ) from None
        reason = text.splitlines()[0][:200] if text else type(error).__name__
        raise UserError(
            f"cannot read checkpoint {path}: corrupt or not a checkpoint ({reason})"
        ) from None


def _starts_as_pickle(path: Path) -> bool:
    """Zip checkpoints, legacy torch files and plain pickles (protocol 2+) all begin with
    a pickle or a zip header; random bytes do not."""
    with open(path, "rb") as file:
        head = file.read(4)
    return head.startswith((b"\x80", b"PK\x03\x04"))


def _check_version(state: dict[str, Any], path: Path) -> None:
    version = state["format_version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise UserError(
            f"{path} is not a checkpoint of this project (format_version {version!r} is not "
            "a positive integer)"
        )
    if version > FORMAT_VERSION:
        raise UserError(
            f"{path} has checkpoint format {state['format_version']}, newer than this code "
            f"reads ({FORMAT_VERSION}); update the project"
        )


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

    @property
    def last_path(self) -> Path:
        return self.directory / LAST

    @property
    def best_path(self) -> Path:
        return self.directory / BEST

    @property
    def best_score(self) -> float | None:
        return self.best["score"] if self.best else None

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
        # The temporary file written first is longer than the name itself.
        length = len(os.fsencode(temporary_name(name)))
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


def remove_stale_temporaries(directory: Path) -> None:
    """Temporary files of a save that was killed half-way (`.<name>.<pid>.tmp`)."""
    if directory.is_dir():
        for temporary in directory.glob(".*.tmp"):
            temporary.unlink(missing_ok=True)


def inference_weights(state: dict[str, Any]) -> dict[str, Any]:
    """The weights evaluation, export and fine-tuning should use: the EMA weights when the
    run kept an average and validated with it (`inference_weights: ema`), else the model's."""
    if state.get("inference_weights") == "ema" and state.get("ema") is not None:
        return state["ema"]
    return state["model"]


def read_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Model weights from a checkpoint of this project, or from a plain state-dict file
    (what `torch.save(model.state_dict(), path)` writes); loaded with weights_only=True."""
    path = Path(path)
    state = _load(path)
    if isinstance(state, dict) and "format_version" in state and "model" in state:
        _check_version(state, path)
        check_trusted(state.get("config"), path)  # not built here; refused all the same
        weights = inference_weights(state)
    elif (
        isinstance(state, dict)
        and state
        and all(isinstance(value, torch.Tensor) for value in state.values())
    ):
        weights = state
    else:
        raise UserError(f"{path} holds neither a checkpoint of this project nor a state dict")
    # Third-party files saved from a wrapped model: DataParallel/DDP add "module.",
    # torch.compile "_orig_mod."; this project never saves them.
    for prefix in ("module.", "_orig_mod."):
        if all(key.startswith(prefix) for key in weights):
            weights = {key.removeprefix(prefix): value for key, value in weights.items()}
    return weights


def load_model_weights(
    model: torch.nn.Module, weights: dict[str, Any], path: Path, strict: bool = True
) -> dict[str, list[str]]:
    """Load `weights` into `model`. Strict: every key must exist on both sides with the same
    shape, else one line listing what differs. Not strict: load what matches; return the
    rest by kind (missing, unexpected, shape) for the caller to report."""
    expected = model.state_dict()
    mismatched = [
        key for key in expected if key in weights and weights[key].shape != expected[key].shape
    ]
    problems = {
        "missing": [key for key in expected if key not in weights],
        "unexpected": [key for key in weights if key not in expected],
        "shape": [
            f"{key} {tuple(weights[key].shape)} vs {tuple(expected[key].shape)}"
            for key in mismatched
        ],
    }
    if strict and any(problems.values()):
        raise UserError(
            f"{path} does not fit the model {type(model).__name__}: {describe(problems)}"
            "; model.pretrained_strict=false loads only what fits"
        )
    matching = {k: v for k, v in weights.items() if k in expected and k not in mismatched}
    model.load_state_dict(matching, strict=False)
    return problems


def describe(problems: dict[str, list[str]], shown: int = 3) -> str:
    parts = []
    for kind, label in (
        ("missing", "missing"),
        ("unexpected", "unexpected"),
        ("shape", "shape mismatch"),
    ):
        items = problems[kind]
        if items:
            more = f", ... {len(items) - shown} more" if len(items) > shown else ""
            parts.append(f"{len(items)} {label} ({', '.join(items[:shown])}{more})")
    return "; ".join(parts)
