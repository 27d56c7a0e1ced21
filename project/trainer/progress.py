"""tqdm progress bars that stay quiet when nobody watches a terminal (CI, log files, SLURM)."""

import sys

from tqdm import tqdm


def progress_bar_enabled(setting: bool | None) -> bool:
    return sys.stderr.isatty() if setting is None else setting


def progress_bar(total: int, description: str, enabled: bool) -> tqdm:
    return tqdm(
        total=total,
        desc=description,
        disable=not enabled,
        leave=False,
        dynamic_ncols=True,
    )
