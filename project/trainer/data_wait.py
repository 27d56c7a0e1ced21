"""Is training starved by its data? The loop times how long each step waits for its batch;
this turns an epoch's waiting fraction into one warning with advice, once per run."""

import logging
import os

from torch.utils.data import DataLoader

log = logging.getLogger(__name__)

# Above this share of the epoch spent waiting for batches, the GPU (or CPU) idles enough
# that a loader setting is worth changing.
DATA_WAIT_WARNING_FRACTION = 0.2


def data_wait_advice(loader: DataLoader) -> list[str]:
    """Concrete changes for this loader, most effective first."""
    cpus = os.cpu_count() or 1
    workers = loader.num_workers
    advice = []
    if workers == 0:
        advice.append(
            f"set loader.num_workers (0 now: the training process loads every batch itself; this machine has {cpus} CPUs, try {max(2, cpus // 2)})"
        )
    elif workers < cpus:
        advice.append(f"raise loader.num_workers above {workers} (this machine has {cpus} CPUs)")
    if getattr(loader.dataset, "cache", None) is False:  # an image dataset reading lazily
        advice.append(
            "set dataset.cache=true if the decoded images fit in RAM (each is decoded once)"
        )
    if workers == 0 and not getattr(loader, "background_prefetch", 0):
        advice.append("or loader.background_prefetch=2 if loading is file I/O")
    advice.append(
        "time the dataset's __getitem__: decoding and augmentation at full resolution are the usual cost"
    )
    return advice


class DataWaitMonitor:
    def __init__(self, threshold: float = DATA_WAIT_WARNING_FRACTION):
        self.threshold = threshold
        self.warned = False

    def check(self, fraction: float, loader: DataLoader) -> None:
        if self.warned or fraction <= self.threshold:
            return
        self.warned = True
        log.warning(
            "training waited for data %.0f%% of the epoch (over %.0f%%): %s",
            100 * fraction,
            100 * self.threshold,
            "; ".join(data_wait_advice(loader)),
        )
