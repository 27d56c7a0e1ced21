"""tqdm progress bars that stay quiet when nobody watches a terminal (CI, log files, SLURM),
and the one-line metric summaries of the log."""

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
