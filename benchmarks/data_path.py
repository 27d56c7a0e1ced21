"""The default run with the DataLoader path against the batched in-memory path.

`python train.py` is run with `loader.in_memory=false` (each sample through
`__getitem__`, its own seeded random stream, a per-sample transform and the collate) and
with the default `loader.in_memory=null`, which batches from one tensor and augments whole
batches (project/data/in_memory.py). The two alternate, pair by pair, so a slow spell of
a shared machine hits both halves of a pair. From each run's train.log: training
samples/s and the data-wait fraction (mean over epochs after the first), the final
validation accuracy, and the training time until validation accuracy first reached 99%.

    python benchmarks/data_path.py [--repeats 2] [--epochs 8]

Ends with one line: `data_path speedup=<x> wait_old=<a> wait_new=<b>` (median of the
per-pair samples/s ratios, new over old; median data-wait fractions).
"""

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EPOCH_LINE = re.compile(
    r"^\[([\d-]+ [\d:,]+)\].*epoch (\d+)/\d+ .*train/samples_per_sec=(\d+) "
    r"train/data_wait_fraction=([\d.]+)%.*val/acc=([\d.]+)",
    re.M,
)
START_LINE = re.compile(r"^\[([\d-]+ [\d:,]+)\].*training SmallCNN", re.M)


def timestamp(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f")


def run(in_memory: str, epochs: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run(
            [sys.executable, "train.py", f"loader.in_memory={in_memory}",
             f"trainer.max_epochs={epochs}", f"hydra.run.dir={folder}",
             "logger.progress_bar=false"],
            cwd=ROOT, check=True, capture_output=True,
        )  # fmt: skip
        log = (Path(folder) / "train.log").read_text()
    start = timestamp(START_LINE.search(log).group(1))
    epochs_seen = [
        (timestamp(when), int(rate), float(wait) / 100, float(acc))
        for when, _, rate, wait, acc in EPOCH_LINE.findall(log)
    ]
    reached = [when for when, _, _, acc in epochs_seen if acc >= 0.99]
    steady = epochs_seen[1:] or epochs_seen
    return {
        "samples_per_sec": statistics.mean(rate for _, rate, _, _ in steady),
        "data_wait": statistics.mean(wait for _, _, wait, _ in steady),
        "accuracy": epochs_seen[-1][3],
        "seconds_to_99": (reached[0] - start).total_seconds() if reached else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    results = {"false": [], "null": []}
    for repeat in range(args.repeats):
        order = ("false", "null") if repeat % 2 == 0 else ("null", "false")
        for in_memory in order:
            results[in_memory].append(run(in_memory, args.epochs))
    names = {"false": "DataLoader path (loader.in_memory=false)", "null": "batched in-memory path"}
    print(f"{'path':<42} {'samples/s':>10} {'data wait':>10} {'accuracy':>9} {'s to 99%':>9}")
    for key, name in names.items():
        runs = results[key]
        print(
            f"{name:<42} {statistics.median(r['samples_per_sec'] for r in runs):>10.0f} "
            f"{statistics.median(r['data_wait'] for r in runs):>10.1%} "
            f"{statistics.median(r['accuracy'] for r in runs):>9.2%} "
            f"{statistics.median(r['seconds_to_99'] for r in runs):>9.1f}"
        )
    ratios = [
        new["samples_per_sec"] / old["samples_per_sec"]
        for old, new in zip(results["false"], results["null"], strict=True)
    ]
    print(
        f"data_path speedup={statistics.median(ratios):.3f} "
        f"wait_old={statistics.median(r['data_wait'] for r in results['false']):.3f} "
        f"wait_new={statistics.median(r['data_wait'] for r in results['null']):.3f}"
    )


if __name__ == "__main__":
    main()
