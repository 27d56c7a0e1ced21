"""How fast does data reach the training step? Three measurements in one run.

1. Simulated I/O: items that each cost `--latency-ms` of waiting (a file read), batches of
   `--batch`, fed to a step that costs a fixed time (a GPU busy with the model), through the
   project's loader factory and Trainer, which measures the data-wait fraction itself.
   Rows: workers 0; workers 2; workers 2 + background prefetch; workers 0 + background
   prefetch; cache on (the I/O paid once, up front). The step costs r x (per-batch I/O / 2
   workers) for r = 0.5, 1, 2; the target is a wait under 10% with 2 workers when r >= 1.
2. Real files: `--files` generated 64x64 PNGs through `dataset=image_folder`, lazily and
   with `dataset.cache=true`, loading only (no step), with 0 and 2 workers.
3. Memory: peak RSS of a process that reads 1,000 and then 10,000 generated files through
   a lazy (`cache=false`) loader; it must not grow with the number of files.

    python benchmarks/dataloader.py [--latency-ms 2] [--batch 32] [--samples 4096] [--files 2000]

Ends with one line: `dataloader wait_w2_r1=<fraction> cache_speedup=<x> peak_mb_1k=<m> peak_mb_10k=<m>`.
"""

import argparse
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from project.data.image_files import ImageFolderDataset  # noqa: E402
from project.data.loaders import build_loader  # noqa: E402
from project.data.shapes_files import write_shapes_files  # noqa: E402
from project.schema import LoaderConfig, LoggerConfig, TrainerConfig  # noqa: E402
from project.trainer import ClassificationTrainer  # noqa: E402

CPU = torch.device("cpu")


class SimulatedIO(Dataset):
    """Items that cost `latency` seconds each (sleep: like a disk read, it frees the GIL);
    `cached=True` pays every item's latency once, at construction."""

    def __init__(self, samples: int, latency: float, cached: bool = False):
        self.samples, self.latency, self.cached = samples, latency, cached
        self.setup_seconds = 0.0
        if cached:
            start = time.perf_counter()
            for _ in range(samples):
                time.sleep(latency)
            self.setup_seconds = time.perf_counter() - start

    def __len__(self) -> int:
        return self.samples

    def __getitem__(self, index: int):
        if not self.cached:
            time.sleep(self.latency)
        return torch.full((3, 32, 32), index % 255, dtype=torch.uint8).float(), index % 10


class FixedCostStep(nn.Module):
    """A model whose forward takes `seconds` (sleep: the CPU idles, like waiting on a GPU)."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds
        self.head = nn.Linear(3 * 32 * 32, 10)

    def forward(self, inputs):
        time.sleep(self.seconds)
        return self.head(inputs.flatten(1))


def train_two_epochs(dataset: Dataset, loader_cfg: LoaderConfig, step_seconds: float) -> dict:
    """The second epoch's samples/s and data-wait fraction, as the Trainer logs them."""
    model = FixedCostStep(step_seconds)
    trainer = ClassificationTrainer(
        model,
        torch.optim.SGD(model.parameters(), lr=0.01),
        trainer_cfg=TrainerConfig(max_epochs=2),
        logger_cfg=LoggerConfig(tensorboard=False, progress_bar=False),
        device=CPU,
    )
    loader = build_loader(dataset, loader_cfg, train=True, seed=0, device=CPU)
    return trainer.fit(loader)


def simulated_io(args) -> dict[tuple[str, float], dict]:
    latency = args.latency_ms / 1000
    # What a batch's I/O really costs: a sleep overshoots its request by tens of µs.
    start = time.perf_counter()
    for _ in range(args.batch * 4):
        time.sleep(latency)
    io_per_batch_per_worker = (time.perf_counter() - start) / 4 / 2
    rows = {
        "workers 0": (False, LoaderConfig(batch_size=args.batch, num_workers=0)),
        "workers 2": (False, LoaderConfig(batch_size=args.batch, num_workers=2)),
        "workers 2 + background 2": (
            False, LoaderConfig(batch_size=args.batch, num_workers=2, background_prefetch=2)),
        "workers 0 + background 2": (
            False, LoaderConfig(batch_size=args.batch, num_workers=0, background_prefetch=2)),
        "cache on, workers 0": (True, LoaderConfig(batch_size=args.batch, num_workers=0)),
    }  # fmt: skip
    results = {}
    print(
        f"\n## simulated I/O: {args.latency_ms} ms per item, batch {args.batch}, "
        f"{args.samples} items; step = r x {1000 * io_per_batch_per_worker:.0f} ms "
        "(per-batch I/O / 2 workers)\n"
    )
    print("| loader | r | samples/s | data-wait fraction |")
    print("|---|---|---|---|")
    for ratio in args.ratios:
        for name, (cached, loader_cfg) in rows.items():
            dataset = SimulatedIO(args.samples, latency, cached=cached)
            metrics = train_two_epochs(dataset, loader_cfg, ratio * io_per_batch_per_worker)
            results[name, ratio] = metrics
            extra = f" (+{dataset.setup_seconds:.1f} s up front)" if cached else ""
            print(
                f"| {name}{extra} | {ratio:g} | {metrics['train/samples_per_sec']:.0f} | "
                f"{metrics['train/data_wait_fraction']:.1%} |"
            )
    return results


def load_all(loader) -> float:
    """Samples per second of one pass over `loader` with no step."""
    start = time.perf_counter()
    samples = sum(len(labels) for _, labels in loader)
    return samples / (time.perf_counter() - start)


def real_files(args, root: Path) -> float:
    write_shapes_files(root, {"train": args.files}, image_size=64)
    print(f"\n## {args.files} PNG files of 64x64 (dataset=image_folder), loading only\n")
    print("| dataset.cache | workers | samples/s | decode up front |")
    print("|---|---|---|---|")
    speeds = {}
    for cache in (False, True):
        start = time.perf_counter()
        dataset = ImageFolderDataset(
            "train", str(root), num_classes=5, val_fraction=0.01, image_size=64, cache=cache
        )
        setup = time.perf_counter() - start
        for workers in (0, 2):
            loader_cfg = LoaderConfig(batch_size=args.batch, num_workers=workers)
            loader = build_loader(dataset, loader_cfg, train=True, seed=0, device=CPU)
            load_all(loader)  # warm: page cache, worker start-up
            speeds[cache, workers] = load_all(loader)
            up_front = f"{setup:.1f} s" if cache else "-"
            print(
                f"| {str(cache).lower()} | {workers} | {speeds[cache, workers]:.0f} | {up_front} |"
            )
    return speeds[True, 0] / speeds[False, 0]


def peak_memory_child(root: str) -> None:
    """Run in a fresh process: read every file lazily, print the peak RSS in MB."""
    dataset = ImageFolderDataset("train", root, num_classes=5, val_fraction=0.01, image_size=64)
    loader = build_loader(dataset, LoaderConfig(batch_size=64), train=True, seed=0, device=CPU)
    count = sum(len(labels) for _, labels in loader)
    # VmHWM, not ru_maxrss: after fork + exec, ru_maxrss also counts the parent's RSS.
    with open("/proc/self/status") as status:
        peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    print(count, peak_kb / 1024)


def peak_memory(args, folder: Path) -> dict[int, float]:
    print("\n## peak RSS of a process reading every file with dataset.cache=false\n")
    print("| files | peak RSS (MB) |")
    print("|---|---|")
    peaks = {}
    for count in args.memory_files:
        root = folder / f"files_{count}"
        write_shapes_files(root, {"train": count}, image_size=64)
        output = subprocess.run(
            [sys.executable, __file__, "--memory-child", str(root)],
            capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
        peaks[count] = float(output[-1])
        print(f"| {count} | {peaks[count]:.0f} |")
    return peaks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency-ms", type=float, default=2.0)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.5, 1.0, 2.0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--memory-files", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        peak_memory_child(args.memory_child)
        return
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("project").setLevel(logging.ERROR)  # the data-wait advice, once per row
    torch.set_num_threads(1)
    waits = simulated_io(args)
    with tempfile.TemporaryDirectory() as folder:
        cache_speedup = real_files(args, Path(folder) / "png")
        peaks = peak_memory(args, Path(folder))
    ratio = 1.0 if 1.0 in args.ratios else args.ratios[0]
    small, large = (peaks[count] for count in (min(peaks), max(peaks)))
    print(
        f"dataloader wait_w2_r1={waits['workers 2', ratio]['train/data_wait_fraction']:.3f} "
        f"cache_speedup={cache_speedup:.2f} peak_mb_1k={small:.0f} peak_mb_10k={large:.0f}"
    )


if __name__ == "__main__":
    main()
