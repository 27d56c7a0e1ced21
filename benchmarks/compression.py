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
(`--student-epochs` on `--student-train-size` images).

    python benchmarks/compression.py [--epochs 3] [--runs 200]

Ends with one line: `compression depthwise_param_ratio=<x> repvgg_speedup=<y> int8_speedup=<z>
distill_gain_points=<w>`.
"""

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from project.compress.int8_export import accuracy, latency_ms, predict  # noqa: E402
from project.compress.quantize import quantize_post_training  # noqa: E402
from project.export import load_trained_model  # noqa: E402
from project.models.build import build_model  # noqa: E402
from project.models.summary import count_multiply_adds, count_parameters  # noqa: E402

MODELS = {  # row name: train.py overrides
    "MobileNetV2, depthwise": ["model=mobilenet"],
    "MobileNetV2, standard convs": ["model=mobilenet", "model.depthwise=false"],
    "RepVGG tiny": ["model=repvgg"],
}


def train(overrides: list[str], run_dir: Path) -> Path:
    command = [sys.executable, "train.py", *overrides, f"hydra.run.dir={run_dir}"]
    command += ["logger.tensorboard=false", "logger.progress_bar=false"]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    return run_dir / "checkpoints" / "best.pt"


def model_rows(args, workdir: Path) -> list[dict]:
    rows = []
    for name, overrides in MODELS.items():
        checkpoint = train([*overrides, f"trainer.max_epochs={args.epochs}"], workdir / name)
        trained = load_trained_model(checkpoint)  # the deploy form: RepVGG fused
        val_loader = trained.loader("val")
        image = next(iter(val_loader))[0][:1]
        forms = {name: trained.model}
        if name.startswith("RepVGG"):
            state = torch.load(checkpoint, weights_only=True)
            training_form = build_model(trained.run_cfg.model, initialize=False)
            training_form.load_state_dict(state["model"])
            forms = {
                f"{name}, train form": training_form.eval(),
                f"{name}, deploy form": trained.model,
            }
        calibration = [x for x, _ in itertools.islice(trained.loader("train"), 16)]
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
    teacher = train([], workdir / "teacher")
    budget = [
        f"trainer.max_epochs={args.student_epochs}",
        f"dataset.train_size={args.student_train_size}",
    ]
    results = {"teacher (default CNN, 8 epochs, 8,000 images)": teacher}
    results["student alone"] = train(["model.width=8", *budget], workdir / "student")
    results["student distilled"] = train(
        ["experiment=distill", f"distill.teacher_ckpt={teacher}", *budget], workdir / "distilled"
    )
    accuracies = {}
    for name, checkpoint in results.items():
        metrics = json.loads((checkpoint.parents[1] / "metrics.json").read_text())
        accuracies[name] = metrics["best/val/acc"]
    return accuracies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="training epochs per model")
    parser.add_argument("--runs", type=int, default=200, help="timed calls per latency")
    parser.add_argument("--student-epochs", type=int, default=2)
    parser.add_argument("--student-train-size", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        rows = model_rows(args, workdir)
        distilled = distillation_rows(args, workdir)

    print(f"torch {torch.__version__}; 1 thread; batch 1; {args.epochs} epochs per model")
    print("| model | parameters | multiply-adds | CPU latency (ms/image) | val accuracy |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['model']} | {row['parameters']:,} | {row['multiply_adds'] / 1e6:.1f}M "
            f"| {row['latency_ms']:.3f} | {100 * row['accuracy']:.2f}% |"
        )
    print()
    print(
        f"| distillation ({args.student_epochs} epochs on {args.student_train_size:,} images "
        "for both students) | val accuracy |"
    )
    print("|---|---|")
    for name, value in distilled.items():
        print(f"| {name} | {100 * value:.2f}% |")

    by_name = {row["model"]: row for row in rows}
    depthwise = (
        by_name["MobileNetV2, standard convs"]["parameters"]
        / by_name["MobileNetV2, depthwise"]["parameters"]
    )
    repvgg = (
        by_name["RepVGG tiny, train form"]["latency_ms"]
        / by_name["RepVGG tiny, deploy form"]["latency_ms"]
    )
    int8 = (
        by_name["MobileNetV2, depthwise"]["latency_ms"]
        / by_name["MobileNetV2, depthwise, int8"]["latency_ms"]
    )
    gain = 100 * (distilled["student distilled"] - distilled["student alone"])
    print(
        f"compression depthwise_param_ratio={depthwise:.2f} repvgg_speedup={repvgg:.2f} "
        f"int8_speedup={int8:.2f} distill_gain_points={gain:.2f}"
    )


if __name__ == "__main__":
    main()
