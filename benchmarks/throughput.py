"""Training throughput (images/s) of the project's Trainer against a hand-written loop.

MobileNetV2 and ResNet-18 (torchvision, random weights) train on one synthetic batch
repeated, so only the model and the loop are measured. Each row adds one speed switch:
fp32, bf16-mixed, + channels_last, + compile. The hand-written loop applies the same
switches the way a user would (autocast, `.to(memory_format=...)`, `torch.compile`); the
Trainer gets them from its config, as `trainer.precision`, `trainer.channels_last` and
`trainer.compile` would give them. Both loops run the same optimizer with the same
`register_step_post_hook`, which timestamps the optimizer steps: the measured window
runs from the end of the warm-up steps (compilation included there) to the last step,
with a CUDA synchronize at both ends.

On a GPU the defaults are the full 224x224, batch 64, and peak memory is reported; on a
CPU they are 96x96, batch 16 (224x224 would take minutes per row on 2 cores).
Runs alternate hand-written and Trainer, `--repeats` pairs per row; the median pair
ratio is reported (shared machines are noisy; a slow spell hits both halves of a pair).

    python benchmarks/throughput.py [--models mobilenet_v2 resnet18]
        [--variants fp32 bf16 bf16+cl bf16+cl+compile] [--size N] [--batch N]

Ends with one line: `throughput min_ratio=<x>` (the lowest Trainer/hand-written ratio).
"""

import argparse
import contextlib
import copy
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from project.schema import LoggerConfig, TrainerConfig  # noqa: E402
from project.trainer import ClassificationTrainer  # noqa: E402

VARIANTS = {  # name: (precision, channels_last, compile)
    "fp32": ("32", False, False),
    "bf16": ("bf16-mixed", False, False),
    "bf16+cl": ("bf16-mixed", True, False),
    "bf16+cl+compile": ("bf16-mixed", True, True),
}
MODELS = {
    "mobilenet_v2": lambda: torchvision.models.mobilenet_v2(num_classes=10),
    "resnet18": lambda: torchvision.models.resnet18(num_classes=10),
}


class RepeatedBatch(Dataset):
    """The same batch `length` times (a DataLoader with batch_size=None yields it as is):
    synthetic data without the cost of collating 64 images each step."""

    def __init__(self, batch_size: int, size: int, length: int, pin: bool):
        images = torch.randn(batch_size, 3, size, size)
        targets = torch.randint(0, 10, (batch_size,))
        self.batch = (images.pin_memory(), targets.pin_memory()) if pin else (images, targets)
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        return self.batch


class StepClock:
    """Times optimizer steps `warmup` to `warmup + steps` from a step post-hook."""

    def __init__(self, optimizer: torch.optim.Optimizer, warmup: int, steps: int, device):
        self.warmup, self.last, self.device = warmup, warmup + steps, device
        self.count = 0
        self.start = self.end = 0.0
        optimizer.register_step_post_hook(self.on_step)

    def on_step(self, optimizer, args, kwargs) -> None:
        self.count += 1
        if self.count in (self.warmup, self.last):
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            if self.count == self.warmup:
                self.start = time.perf_counter()
            else:
                self.end = time.perf_counter()

    def seconds_per_step(self) -> float:
        return (self.end - self.start) / (self.last - self.warmup)


def hand_written(model, loader, variant: str, clock_args, device) -> StepClock:
    precision, channels_last, compile_model = VARIANTS[variant]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    clock = StepClock(optimizer, *clock_args, device)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if compile_model else model
    autocast = (
        (lambda: torch.autocast(device.type, dtype=torch.bfloat16))
        if precision == "bf16-mixed"
        else contextlib.nullcontext
    )
    model.train()
    for images, targets in loader:
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast():
            loss = F.cross_entropy(step_model(images), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return clock


def with_trainer(model, loader, variant: str, clock_args, device, run_dir: Path) -> StepClock:
    precision, channels_last, compile_model = VARIANTS[variant]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    clock = StepClock(optimizer, *clock_args, device)
    trainer = ClassificationTrainer(
        model,
        optimizer,
        trainer_cfg=TrainerConfig(
            max_epochs=1,
            gpus=int(device.type == "cuda"),
            precision=precision,
            channels_last=channels_last,
            compile=compile_model,
        ),
        # As in a default run: progress bar (drawn to /dev/null), TensorBoard, train.log.
        logger_cfg=LoggerConfig(tensorboard=True, log_every_n_steps=50, progress_bar=True),
        device=device,
        run_dir=run_dir,
    )
    with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
        trainer.fit(loader)
    return clock


def measure(name: str, variant: str, args, device, workdir: Path) -> dict:
    initial = MODELS[name]()
    batches = args.warmup + args.steps
    loader = DataLoader(
        RepeatedBatch(args.batch, args.size, batches, pin=device.type == "cuda"),
        batch_size=None,
    )
    clock_args = (args.warmup, args.steps)
    hand, trainer, peak_memory = [], [], []
    for repeat in range(args.repeats):
        order = ["hand", "trainer"][:: 1 if repeat % 2 == 0 else -1]
        for kind in order:
            model = copy.deepcopy(initial)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            if kind == "hand":
                hand.append(hand_written(model, loader, variant, clock_args, device))
            else:
                run_dir = workdir / f"{name}-{variant}-{repeat}"
                trainer.append(with_trainer(model, loader, variant, clock_args, device, run_dir))
            if device.type == "cuda":
                peak_memory.append(torch.cuda.max_memory_allocated() / 2**30)
            del model
    hand_speed = statistics.median(args.batch / clock.seconds_per_step() for clock in hand)
    trainer_speed = statistics.median(args.batch / clock.seconds_per_step() for clock in trainer)
    ratio = statistics.median(
        h.seconds_per_step() / t.seconds_per_step() for h, t in zip(hand, trainer, strict=True)
    )
    return {
        "hand": hand_speed,
        "trainer": trainer_speed,
        "ratio": ratio,
        "peak_gib": max(peak_memory) if peak_memory else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--size", type=int, help="image side (default 224 on GPU, 96 on CPU)")
    parser.add_argument("--batch", type=int, help="batch size (default 64 on GPU, 16 on CPU)")
    parser.add_argument("--warmup", type=int, default=5, help="steps before timing starts")
    parser.add_argument("--steps", type=int, help="timed steps (default 50 on GPU, 10 on CPU)")
    parser.add_argument("--repeats", type=int, default=2, help="hand/Trainer pairs per row")
    args = parser.parse_args()

    on_gpu = torch.cuda.is_available()
    device = torch.device("cuda" if on_gpu else "cpu")
    args.size = args.size or (224 if on_gpu else 96)
    args.batch = args.batch or (64 if on_gpu else 16)
    args.steps = args.steps or (50 if on_gpu else 10)
    if on_gpu:
        torch.backends.cudnn.benchmark = True  # as trainer.cudnn_benchmark does by default
        where = torch.cuda.get_device_name()
    else:
        where = f"CPU, {torch.get_num_threads()} threads"
    print(
        f"torch {torch.__version__}, {where}; {args.size}x{args.size}, batch {args.batch}, "
        f"{args.warmup} warm-up + {args.steps} timed steps, median of {args.repeats} pairs"
    )
    header = "| model | switches | hand-written img/s | Trainer img/s | Trainer/hand |"
    header += " peak GiB |" if on_gpu else ""
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    ratios = []
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.models:
            for variant in args.variants:
                row = measure(name, variant, args, device, Path(workdir))
                ratios.append(row["ratio"])
                line = (
                    f"| {name} | {variant} | {row['hand']:.1f} | {row['trainer']:.1f} "
                    f"| {row['ratio']:.3f} |"
                )
                if on_gpu:
                    line += f" {row['peak_gib']:.2f} |"
                print(line, flush=True)
    print(f"throughput min_ratio={min(ratios):.3f}")


if __name__ == "__main__":
    main()
