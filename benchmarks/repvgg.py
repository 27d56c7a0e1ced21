"""CPU inference speed-up of RepVGG's deploy form over its three-branch training form.

Both forms compute the same function (tests/models/test_repvgg.py checks it); the deploy form runs
one dense 3x3 conv per block instead of a 3x3, a 1x1 and a BN branch plus two additions.
Forward passes alternate between the two forms and the ratio reported is the median of
the per-pair ratios, so a slow spell on a shared machine hits both halves of a pair.

    python benchmarks/repvgg.py [--repeats 15] [--threads 2]

Ends with one line: `speedup A0=<x> tiny=<y>` (training-form time / deploy-form time).
"""

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from project.models.repvgg import RepVGG, reparameterize  # noqa: E402
from project.models.summary import summarize  # noqa: E402

CASES = {  # variant: (batch size, image size)
    "A0": (8, 224),  # the paper's setting (ImageNet size)
    "tiny": (64, 32),  # the model=repvgg default on the generated 32x32 data
}


@torch.inference_mode()
def seconds_per_batch(model: torch.nn.Module, batch: torch.Tensor) -> float:
    start = time.perf_counter()
    model(batch)
    return time.perf_counter() - start


def measure(variant: str, batch_size: int, image_size: int, repeats: int) -> float:
    torch.manual_seed(0)
    train_form = RepVGG(num_classes=1000, variant=variant).eval()
    deploy_form = reparameterize(copy.deepcopy(train_form))
    batch = torch.randn(batch_size, 3, image_size, image_size)
    for model in (train_form, deploy_form):  # warm-up: allocator, oneDNN kernel choice
        seconds_per_batch(model, batch)
    ratios, train_times, deploy_times = [], [], []
    for _ in range(repeats):
        train_times.append(seconds_per_batch(train_form, batch))
        deploy_times.append(seconds_per_batch(deploy_form, batch))
        ratios.append(train_times[-1] / deploy_times[-1])
    train_summary, deploy_summary = summarize(train_form), summarize(deploy_form)
    print(
        f"{variant:>4} batch {batch_size}x3x{image_size}x{image_size}: "
        f"train form {statistics.median(train_times) * 1e3 / batch_size:7.2f} ms/image "
        f"({train_summary.parameters / 1e6:.2f}M params), "
        f"deploy form {statistics.median(deploy_times) * 1e3 / batch_size:7.2f} ms/image "
        f"({deploy_summary.parameters / 1e6:.2f}M params), paired speed-up {statistics.median(ratios):.2f}x"
    )
    return statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=list(CASES), choices=list(CASES))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.repeats} paired repeats")
    speedups = {
        variant: measure(variant, *CASES[variant], args.repeats) for variant in args.variants
    }
    print("speedup " + " ".join(f"{variant}={value:.2f}" for variant, value in speedups.items()))


if __name__ == "__main__":
    main()
