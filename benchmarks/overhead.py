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

That floor is wide (a few %) because a whole run lasts long enough for a neighbour's load
to change under it. So each model is also measured step by step: a hand-written step on its
own copy of the model and its own batches runs just before each of the Trainer's steps,
and the Trainer's step is the time from the end of one hand-written step to the start of
the next (its loss, backward, optimizer, bookkeeping, logging and next batch). A slow spell
then hits both halves of every pair. This covers the per-step path only, not `fit()`'s
setup and epoch end (the whole-run ratio has those). Its control is the same pairing of
the hand-written step with itself: the second step of each pair measures slightly slower
(0.4-2.2% for the MLP in the runs of docs/benchmarks.md), so the Trainer's step-by-step
ratio is read against it.

    python benchmarks/overhead.py [--repeats 31] [--interleaved-repeats 7]
                                  [--mlp-steps 1500] [--cnn-steps 40]

Ends with two lines: `interleaved mlp=<x> cnn=<y> control mlp=<x> cnn=<y>` (the
step-by-step ratios) and `ratio mlp=<x> cnn=<y>` (whole runs: Trainer time / hand-written
time per step).
"""

import argparse
import contextlib
import copy
import functools
import itertools
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


def sgd(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)


def hand_written_step(model: nn.Module, optimizer: torch.optim.Optimizer, batch) -> None:
    inputs, targets = batch
    loss = F.cross_entropy(model(inputs), targets)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def hand_written(model: nn.Module, loader: DataLoader, steps: int, clock=None) -> Timer:
    """The loop by hand. With a `clock`, a timed reference step runs before each step."""
    optimizer = sgd(model)
    model.train()
    with Timer(steps) as timer:
        for step, batch in enumerate(loader):
            if clock is not None:
                clock.reference_step()
            hand_written_step(model, optimizer, batch)
            if step + 1 == steps:
                break
    return timer


class StepClock:
    """Runs a hand-written reference step on its own model and batches each time it is
    called, and times the steps in between (those of the loop under test) against it."""

    def __init__(self, model: nn.Module, loader: DataLoader):
        self.model, self.optimizer, self.batches = model.train(), sgd(model), iter(loader)
        self.marks: list[tuple[float, float]] = []  # (start, end) of each reference step

    def reference_step(self) -> None:
        start = time.perf_counter()
        hand_written_step(self.model, self.optimizer, next(self.batches))
        self.marks.append((start, time.perf_counter()))

    def ratio(self) -> float:
        """Time between reference steps over time in them: the tested loop's step i runs
        from the end of reference step i to the start of reference step i + 1."""
        reference = sum(end - start for start, end in self.marks[:-1])
        tested = sum(nxt - end for (_, end), (nxt, _) in itertools.pairwise(self.marks))
        return tested / reference


class ClockedTrainer(ClassificationTrainer):
    """The Trainer with a reference step before each of its own (StepClock)."""

    def __init__(self, *args, clock: StepClock, **kwargs):
        super().__init__(*args, **kwargs)
        self.clock = clock

    def training_step(self, batch):
        self.clock.reference_step()
        return super().training_step(batch)


def with_trainer(
    model: nn.Module, loader: DataLoader, steps: int, run_dir: Path, clock=None
) -> Timer:
    """`Trainer.fit()` as in a default run. With a `clock`, a timed reference step runs
    before each step (whole runs have none: they time the Trainer as users run it)."""
    build = (
        ClassificationTrainer if clock is None else functools.partial(ClockedTrainer, clock=clock)
    )
    trainer = build(
        model,
        sgd(model),
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


def median_and_middle_half(ratios: list[float]) -> str:
    middle = statistics.median(ratios)
    low, high = statistics.quantiles(ratios, n=4)[::2] if len(ratios) > 1 else (middle,) * 2
    return f"{middle:.3f} (middle half {low:.3f}-{high:.3f})"


def interleaved(
    name: str, initial: nn.Module, inputs: torch.Tensor, steps: int, repeats: int, workdir: Path
) -> tuple[float, float]:
    """Step-by-step ratios, Trainer and control (module docstring), medians over repeats."""
    loader = make_loader(inputs)
    ratios: dict[str, list[float]] = {"trainer": [], "control": []}
    for repeat in range(repeats + 1):  # the first round warms up
        for kind in ratios if repeat % 2 else reversed(ratios):
            clock = StepClock(copy.deepcopy(initial), make_loader(inputs))
            model = copy.deepcopy(initial)
            if kind == "trainer":
                with_trainer(model, loader, steps, workdir / f"{name}-clocked-{repeat}", clock)
            else:
                hand_written(model, loader, steps, clock)
            if repeat > 0:
                ratios[kind].append(clock.ratio())
    print(
        f"      step by step ({repeats} repeats), trainer / hand-written: "
        f"{median_and_middle_half(ratios['trainer'])}; control, hand-written / hand-written: "
        f"{median_and_middle_half(ratios['control'])}"
    )
    return statistics.median(ratios["trainer"]), statistics.median(ratios["control"])


def measure(
    name: str, initial: nn.Module, inputs: torch.Tensor, steps: int, repeats: int, workdir: Path
) -> float:
    loader = make_loader(inputs)
    assert len(loader) >= steps, "not enough data for the requested steps"
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
    parser.add_argument("--interleaved-repeats", type=int, default=7)
    parser.add_argument("--mlp-steps", type=int, default=1500)
    parser.add_argument("--cnn-steps", type=int, default=40)
    args = parser.parse_args()
    if min(args.mlp_steps, args.cnn_steps) < 2:  # a step-by-step ratio needs two reference steps
        parser.error("--mlp-steps and --cnn-steps must be at least 2")

    torch.set_num_threads(1)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as workdir:
        # A train.log as in a real run; the trainer's per-epoch lines go there.
        logging.basicConfig(filename=Path(workdir) / "train.log", level=logging.INFO, force=True)
        print(
            f"torch {torch.__version__}, 1 thread, batch {BATCH}, medians of {args.repeats} repeats"
        )
        whole, step_by_step = {}, {}
        for name, model, inputs, steps in (
            ("mlp", tiny_mlp(), torch.randn((args.mlp_steps + 1) * BATCH, 32), args.mlp_steps),
            (
                "cnn",
                SmallCNN(num_classes=10),
                torch.randn((args.cnn_steps + 1) * BATCH, 3, 32, 32),
                args.cnn_steps,
            ),
        ):
            whole[name] = measure(name, model, inputs, steps, args.repeats, Path(workdir))
            step_by_step[name] = interleaved(
                name, model, inputs, steps, args.interleaved_repeats, Path(workdir)
            )
    print(
        f"interleaved mlp={step_by_step['mlp'][0]:.3f} cnn={step_by_step['cnn'][0]:.3f} "
        f"control mlp={step_by_step['mlp'][1]:.3f} cnn={step_by_step['cnn'][1]:.3f}"
    )
    print(f"ratio mlp={whole['mlp']:.3f} cnn={whole['cnn']:.3f}")


if __name__ == "__main__":
    main()
