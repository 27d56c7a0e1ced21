"""Per-step cost of the project's Trainer against a hand-written PyTorch loop.

Same model, same in-memory data and DataLoader, same optimizer, same number of steps,
one process, one thread. The Trainer runs as in a default run: progress bar on (drawn to
/dev/null so the terminal stays readable; the formatting is still paid), Python logging
to a file, TensorBoard events every `log_every_n_steps`. The Trainer's time is its whole
`fit()`, so end-of-epoch work (metric reduction, closing the event file) is included.

Shared machines are noisy (identical loops here differed by up to 10% between repeats),
so repeats are many and short. Each repeat runs the hand-written loop, the Trainer and the
hand-written loop again, back to back, in rotating order. The ratio reported is the median
over repeats of the Trainer's wall-clock time per step over the mean of that repeat's two
hand-written runs: a slow spell hits all three. Beside it: the middle half of the paired
ratios, the ratio of the plain medians, of the fastest runs and of CPU time, and the
run's noise floor: the same paired ratio between the two hand-written runs, which differ
only by chance. A Trainer ratio is only meaningful to about the width of that floor.

    python benchmarks/overhead.py [--repeats 31] [--mlp-steps 1500] [--cnn-steps 40]

Ends with one line: `ratio mlp=<x> cnn=<y>` (Trainer time / hand-written time per step).
"""

import argparse
import contextlib
import copy
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from project.models.cnn import SmallCNN  # noqa: E402
from project.schema import LoggerConfig, TrainerConfig  # noqa: E402
from project.trainer import ClassificationTrainer  # noqa: E402

BATCH = 32


def tiny_mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))


def make_loader(inputs: torch.Tensor) -> DataLoader:
    targets = torch.randint(0, 10, (len(inputs),))
    return DataLoader(
        TensorDataset(inputs, targets), batch_size=BATCH, shuffle=True, drop_last=True
    )


class Timer:
    """Wall-clock and process CPU time of a block, per step."""

    def __init__(self, steps: int):
        self.steps = steps

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = (time.perf_counter() - self.wall) / self.steps
        self.cpu = (time.process_time() - self.cpu) / self.steps


def hand_written(model: nn.Module, loader: DataLoader, steps: int) -> Timer:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    with Timer(steps) as timer:
        for step, (inputs, targets) in enumerate(loader):
            loss = F.cross_entropy(model(inputs), targets)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if step + 1 == steps:
                break
    return timer


def with_trainer(model: nn.Module, loader: DataLoader, steps: int, run_dir: Path) -> Timer:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    trainer = ClassificationTrainer(
        model,
        optimizer,
        trainer_cfg=TrainerConfig(max_epochs=1, limit_train_batches=steps),
        logger_cfg=LoggerConfig(tensorboard=True, log_every_n_steps=50, progress_bar=True),
        device=torch.device("cpu"),
        run_dir=run_dir,
    )
    with (
        open(os.devnull, "w") as devnull,
        contextlib.redirect_stderr(devnull),
        Timer(steps) as timer,
    ):
        trainer.fit(loader)
    return timer


def measure(
    name: str, build_model, inputs: torch.Tensor, steps: int, repeats: int, workdir: Path
) -> float:
    loader = make_loader(inputs)
    assert len(loader) >= steps, "not enough data for the requested steps"
    initial = build_model()
    # The hand-written loop runs twice per repeat: the Trainer is compared with the mean of
    # the two, and the two with each other show how far identical loops scatter in this
    # run (its noise floor), the yardstick for reading the Trainer's ratio.
    runs: dict[str, list[Timer]] = {"hand": [], "trainer": [], "hand again": []}
    for repeat in range(repeats + 1):  # the first round warms up allocators and caches
        # Rotate the order, so that no loop always runs first, on a warmer or colder cache.
        kinds = list(runs)
        for kind in kinds[repeat % 3 :] + kinds[: repeat % 3]:
            model = copy.deepcopy(initial)
            if kind == "trainer":
                timer = with_trainer(model, loader, steps, workdir / f"{name}-{repeat}")
            else:
                timer = hand_written(model, loader, steps)
            if repeat > 0:
                runs[kind].append(timer)
    hand, trainer, again = runs["hand"], runs["trainer"], runs["hand again"]

    def median(timers: list[Timer], attribute: str) -> float:
        return statistics.median(getattr(timer, attribute) for timer in timers)

    def median_and_middle_half(ratios: list[float]) -> str:
        middle = statistics.median(ratios)
        low, high = statistics.quantiles(ratios, n=4)[::2] if len(ratios) > 1 else (middle,) * 2
        return f"{middle:.3f} (middle half {low:.3f}-{high:.3f})"

    both_hand = [(h.wall + a.wall) / 2 for h, a in zip(hand, again, strict=True)]
    paired = [t.wall / h for t, h in zip(trainer, both_hand, strict=True)]
    ratio = statistics.median(paired)
    noise_floor = [a.wall / h.wall for h, a in zip(hand, again, strict=True)]
    ratio_of_medians = median(trainer, "wall") / statistics.median(both_hand)
    # Noise only ever adds time, so the fastest run of each is the least disturbed one.
    ratio_of_fastest = min(t.wall for t in trainer) / min(h.wall for h in hand + again)
    cpu_ratio = statistics.median(
        2 * t.cpu / (h.cpu + a.cpu) for t, h, a in zip(trainer, hand, again, strict=True)
    )
    print(
        f"{name:>4}: hand-written {statistics.median(both_hand) * 1e6:9.1f} us/step   "
        f"trainer {median(trainer, 'wall') * 1e6:9.1f} us/step\n"
        f"      trainer / hand-written: paired ratio {median_and_middle_half(paired)}; "
        f"ratio of medians {ratio_of_medians:.3f}, of the fastest runs "
        f"{ratio_of_fastest:.3f}, cpu-time ratio {cpu_ratio:.3f}\n"
        f"      noise floor, hand-written / hand-written: paired ratio "
        f"{median_and_middle_half(noise_floor)}"
    )
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=31)
    parser.add_argument("--mlp-steps", type=int, default=1500)
    parser.add_argument("--cnn-steps", type=int, default=40)
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as workdir:
        # A train.log as in a real run; the trainer's per-epoch lines go there.
        logging.basicConfig(filename=Path(workdir) / "train.log", level=logging.INFO, force=True)
        print(
            f"torch {torch.__version__}, 1 thread, batch {BATCH}, medians of {args.repeats} repeats"
        )
        mlp = measure(
            "mlp",
            tiny_mlp,
            torch.randn((args.mlp_steps + 1) * BATCH, 32),
            args.mlp_steps,
            args.repeats,
            Path(workdir),
        )
        cnn = measure(
            "cnn",
            lambda: SmallCNN(num_classes=10),
            torch.randn((args.cnn_steps + 1) * BATCH, 3, 32, 32),
            args.cnn_steps,
            args.repeats,
            Path(workdir),
        )
    print(f"ratio mlp={mlp:.3f} cnn={cnn:.3f}")


if __name__ == "__main__":
    main()
