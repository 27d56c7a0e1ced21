"""What depthwise convs, RepVGG re-parameterization, int8 and distillation buy, measured
in one run on the default generated data (shapes, 32x32, 5 classes).

Table 1 trains MobileNetV2 with and without depthwise convs and RepVGG (tiny) through
`python train.py` for `--epochs` epochs each, then reports parameters, multiply-adds per
image, CPU latency per image and validation accuracy, for RepVGG in its training and its
deploy form, and for int8 versions (torchao PT2E) of the deploy-ready models. Latency is
the median over `--runs` calls at batch 1, one thread, every model compiled by Inductor
with frozen weights (int8 graphs only become int8 kernels when compiled; fp32 models are
compiled too so the comparison is like for like).

Table 2 trains a teacher (the default CNN, default budget), then the same small student
(CNN at width 8) with and without distillation from it, on the same reduced budget
(`--student-epochs` on `--student-train-size` images, `--seeds` runs each).

    python benchmarks/compression.py [--epochs 4] [--runs 200]

    python benchmarks/compression.py --tables distillation

Ends with one line: `compression depthwise_param_ratio=<x> repvgg_speedup=<y> int8_speedup=<z>
distill_gain_points=<w>` (the figures of the tables that ran).
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from project.checkpoint.format import load_checkpoint  # noqa: E402
from project.deploy.export import load_trained_model  # noqa: E402
from project.deploy.int8 import accuracy, latency_ms, predict  # noqa: E402
from project.deploy.quantize import (  # noqa: E402
    CALIBRATION_BATCHES,
    calibration_images,
    quantize_post_training,
)
from project.models.summary import count_multiply_adds, count_parameters  # noqa: E402
from project.models.trained import rebuild_trained_model  # noqa: E402

# Row name: train.py overrides. MobileNetV2's ImageNet layout leaves 1x1 feature maps by
# its fourth stage on these 32x32 images and it learns them slowly: 22.8% (chance is 20%)
# after 3 epochs at SGD's default lr 0.1, 26.8% after 2 at 0.02 (one trial each).
MODELS = {
    "MobileNetV2, depthwise": ["model=mobilenet", "optimizer.lr=0.02"],
    "MobileNetV2, standard convs": [
        "model=mobilenet",
        "model.depthwise=false",
        "optimizer.lr=0.02",
    ],
    "RepVGG tiny": ["model=repvgg"],
}


def train(overrides: list[str], run_dir: Path) -> Path:
    command = [sys.executable, "train.py", *overrides, f"hydra.run.dir={run_dir}"]
    command += ["logger.tensorboard=false", "logger.progress_bar=false"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return run_dir / "checkpoints" / "best.pt"


def model_rows(args, workdir: Path) -> list[dict]:
    rows = []
    for name, overrides in MODELS.items():
        checkpoint = train(
            [*overrides, f"trainer.max_epochs={args.epochs}"],
            workdir / name.replace(", ", "-").replace(" ", "_"),
        )
        trained = load_trained_model(checkpoint)  # the deploy form: RepVGG fused
        val_loader = trained.loader("val")
        image = next(iter(val_loader))[0][:1]
        forms = {name: trained.model}
        if name.startswith("RepVGG"):
            training_form = rebuild_trained_model(load_checkpoint(checkpoint), checkpoint)
            forms = {
                f"{name}, train form": training_form.eval(),
                f"{name}, deploy form": trained.model,
            }
        calibration = calibration_images(trained.loader("train"), CALIBRATION_BATCHES)
        if "standard convs" not in name:
            forms[f"{name}, int8"] = quantize_post_training(
                trained.model, calibration, calibration[0]
            )
        for form, model in forms.items():
            is_int8 = form.endswith("int8")
            reference = trained.model if is_int8 else model
            parameters, _ = count_parameters(reference)
            rows.append({
                "model": form,
                "parameters": parameters,
                "multiply_adds": count_multiply_adds(reference, image),
                "latency_ms": latency_ms(model, image, args.runs),
                "accuracy": accuracy(*predict(model, val_loader)),
            })  # fmt: skip
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def distillation_rows(args, workdir: Path) -> dict[str, float]:
    """Best validation accuracy of the teacher, and of each student averaged over seeds."""
    teacher = train([], workdir / "teacher")
    budget = [
        f"trainer.max_epochs={args.student_epochs}",
        f"dataset.train_size={args.student_train_size}",
    ]
    students = {
        "student alone": ["model.width=8"],
        "student distilled": ["experiment=distill", f"distill.teacher_ckpt={teacher}"],
    }
    accuracies = {"teacher (default CNN, 8 epochs, 8,000 images)": best_accuracy(teacher)}
    for name, overrides in students.items():
        runs = [
            train(
                [*overrides, *budget, f"seed={seed}"], workdir / f"{name}-{seed}".replace(" ", "_")
            )
            for seed in range(args.seeds)
        ]
        accuracies[name] = statistics.mean(best_accuracy(run) for run in runs)
    return accuracies


def best_accuracy(checkpoint: Path) -> float:
    return json.loads((checkpoint.parents[1] / "metrics.json").read_text())["best/val/acc"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4, help="training epochs per model")
    parser.add_argument("--runs", type=int, default=200, help="timed calls per latency")
    parser.add_argument("--student-epochs", type=int, default=2)
    parser.add_argument("--student-train-size", type=int, default=8000)
    parser.add_argument("--seeds", type=int, default=3, help="runs per student (averaged)")
    parser.add_argument(
        "--tables", nargs="+", choices=("models", "distillation"),
        default=["models", "distillation"],
    )  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        rows = model_rows(args, workdir) if "models" in args.tables else []
        distilled = distillation_rows(args, workdir) if "distillation" in args.tables else {}

    summary = []
    if rows:
        summary += print_model_table(rows, args)
    if distilled:
        summary += print_distillation_table(distilled, args)
    print(f"compression {' '.join(summary)}")


def print_model_table(rows: list[dict], args) -> list[str]:
    print(f"torch {torch.__version__}; 1 thread; batch 1; {args.epochs} epochs per model")
    print("| model | parameters | multiply-adds | CPU latency (ms/image) | val accuracy |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['model']} | {row['parameters']:,} | {row['multiply_adds'] / 1e6:.1f}M "
            f"| {row['latency_ms']:.3f} | {100 * row['accuracy']:.2f}% |"
        )
    print()
    row = {row["model"]: row for row in rows}
    mobilenet, standard = row["MobileNetV2, depthwise"], row["MobileNetV2, standard convs"]
    train_form, deploy_form = row["RepVGG tiny, train form"], row["RepVGG tiny, deploy form"]
    int8 = row["MobileNetV2, depthwise, int8"]
    return [
        f"depthwise_param_ratio={standard['parameters'] / mobilenet['parameters']:.2f}",
        f"repvgg_speedup={train_form['latency_ms'] / deploy_form['latency_ms']:.2f}",
        f"int8_speedup={mobilenet['latency_ms'] / int8['latency_ms']:.2f}",
    ]


def print_distillation_table(distilled: dict[str, float], args) -> list[str]:
    print(
        f"| distillation ({args.student_epochs} epochs on {args.student_train_size:,} images, "
        f"students averaged over {args.seeds} seeds) | val accuracy |"
    )
    print("|---|---|")
    for name, value in distilled.items():
        print(f"| {name} | {100 * value:.2f}% |")
    print()
    gain = 100 * (distilled["student distilled"] - distilled["student alone"])
    return [f"distill_gain_points={gain:.2f}"]


if __name__ == "__main__":
    main()
