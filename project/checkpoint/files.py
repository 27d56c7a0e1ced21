"""Atomic files: a crash at any moment leaves either the old file or the new one.

Every write goes to a temporary file in the same folder, is fsynced and renamed over the
target; the folder is fsynced so the rename itself survives a power cut. A write that
fails (disk full, file too large, read-only, permission) raises a one-line `UserError`
naming the path and the operating system's reason, and leaves the old file as it was.
"""

import os
import shutil
from pathlib import Path
from typing import Any

import torch

from project.errors import UserError


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


def temporary_name(name: str, pid: int | None = None) -> str:
    return f".{name}.{os.getpid() if pid is None else pid}.tmp"


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


def remove_stale_temporaries(directory: Path) -> None:
    """Temporary files of a save that was killed half-way (`.<name>.<pid>.tmp`)."""
    if directory.is_dir():
        for temporary in directory.glob(".*.tmp"):
            temporary.unlink(missing_ok=True)
