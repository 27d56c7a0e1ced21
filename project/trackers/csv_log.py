"""`logger=csv`: `metrics.csv` in the run folder, one row per epoch, a column per metric
(the union over epochs).

The file is rewritten whole and atomically at each epoch, so it is always readable with
the csv module, even after a crash. A resumed run keeps the rows before its checkpoint's
step and drops the ones the interrupted run wrote after it.
"""

import csv
import io
from pathlib import Path
from typing import Any

from project.checkpoint.files import atomic_write_text
from project.trackers import Tracker

METRICS_CSV = "metrics.csv"


class CsvTracker(Tracker):
    name = "csv"

    def __init__(self, run_dir: Path, purge_step: int | None = None):
        self.path = run_dir / METRICS_CSV
        self.rows: list[dict[str, Any]] = []
        if purge_step is not None and self.path.is_file():
            with open(self.path, newline="") as file:
                self.rows = [row for row in csv.DictReader(file) if int(row["step"]) < purge_step]

    def epoch_metrics(self, metrics: dict[str, float], epoch: int, step: int) -> None:
        self.rows.append({"epoch": epoch, "step": step, **metrics})
        columns = list(dict.fromkeys(key for row in self.rows for key in row))
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns)
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(text.getvalue(), self.path)
