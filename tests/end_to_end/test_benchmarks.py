"""The benchmark scripts still run (their timings are reported, never asserted)."""

import re
import subprocess

import pytest

from tests.conftest import REPO_ROOT, run_script


def last_line(script: str, *arguments: str) -> str:
    result = run_script(script, *arguments)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip().splitlines()[-1]


@pytest.mark.slow  # ~30 s of repeated timing runs
def test_overhead_benchmark_prints_its_ratio_line():
    result = run_script(
        "benchmarks/overhead.py", "--repeats", "2", "--interleaved-repeats", "2",
        "--mlp-steps", "5", "--cnn-steps", "2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    figure = r"\d+\.\d{3}"
    assert re.fullmatch(rf"ratio mlp={figure} cnn={figure}", lines[-1])
    assert re.fullmatch(
        rf"interleaved mlp={figure} cnn={figure} control mlp={figure} cnn={figure}", lines[-2]
    )
    # Each model's figures come with their yardsticks: the run's noise floor (the
    # hand-written loop against itself) and the step-by-step control.
    floors = [line for line in lines if "noise floor, hand-written / hand-written" in line]
    assert len(floors) == 2
    assert all(re.search(rf"paired ratio {figure} \(middle half", line) for line in floors)
    step_by_step = [line for line in lines if "step by step (2 repeats)" in line]
    assert len(step_by_step) == 2
    assert all(
        re.search(rf"trainer / hand-written: {figure} .*control, hand-written / hand-written: "
                  rf"{figure} \(middle half", line)
        for line in step_by_step
    )  # fmt: skip


def test_overhead_benchmark_needs_two_steps_for_its_step_by_step_ratio():
    result = run_script("benchmarks/overhead.py", "--mlp-steps", "1")
    assert result.returncode == 2
    assert "--mlp-steps and --cnn-steps must be at least 2" in result.stderr


def test_repvgg_benchmark_prints_its_speedup_line():
    line = last_line("benchmarks/repvgg.py", "--repeats", "1", "--variants", "tiny")
    assert re.fullmatch(r"speedup tiny=\d+\.\d{2}", line)


@pytest.mark.slow  # ~20 s
def test_checkpoint_cost_benchmark_prints_its_line():
    line = last_line("benchmarks/checkpoint_cost.py")
    match = re.fullmatch(r"checkpoint size_ratio=(\d+\.\d{2}) save_ms=\d+\.\d", line)
    # SGD with momentum: a buffer per parameter, so the full state is about twice the weights.
    assert match and 1.8 < float(match.group(1)) < 2.5


@pytest.mark.slow  # ~40 s: it trains 5 loaders and starts a process per memory figure
def test_dataloader_benchmark_prints_its_figures_line():
    line = last_line(
        "benchmarks/dataloader.py", "--samples", "64", "--ratios", "1", "--files", "40",
        "--memory-files", "40",
    )  # fmt: skip
    assert re.fullmatch(
        r"dataloader wait_w2_r1=\d\.\d{3} cache_speedup=\d+\.\d{2} peak_mb_1k=\d+ peak_mb_10k=\d+",
        line,
    )


@pytest.mark.slow  # ~30 s: ResNet-18 through both loops
def test_throughput_benchmark_prints_its_ratio_line():
    line = last_line(
        "benchmarks/throughput.py", "--models", "resnet18", "--variants", "fp32", "bf16+cl",
        "--size", "32", "--batch", "4", "--warmup", "1", "--steps", "2", "--repeats", "1",
    )  # fmt: skip
    assert re.fullmatch(r"throughput min_ratio=\d+\.\d{3}", line)


@pytest.mark.skipif(
    __import__("torch").cuda.is_available(), reason="checks the no-CUDA answer; GPUs run it all"
)
def test_gpu_check_says_in_one_line_that_there_is_no_cuda():
    result = subprocess.run(
        ["make", "-s", "gpu-check"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == (
        "gpu-check: no CUDA device on this machine; nothing to check"
    )


@pytest.mark.slow  # two 1-epoch default runs
def test_data_path_benchmark_prints_its_line():
    line = last_line("benchmarks/data_path.py", "--repeats", "1", "--epochs", "2")
    assert re.fullmatch(r"data_path speedup=\d+\.\d{3} wait_old=\d\.\d{3} wait_new=\d\.\d{3}", line)
