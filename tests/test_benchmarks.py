"""The benchmark scripts still run (their timings are reported, never asserted)."""

import re
import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_overhead_benchmark_prints_its_ratio_line():
    result = subprocess.run(
        [
            sys.executable,
            "benchmarks/overhead.py",
            "--repeats",
            "1",
            "--mlp-steps",
            "5",
            "--cnn-steps",
            "2",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    last_line = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"ratio mlp=\d+\.\d{3} cnn=\d+\.\d{3}", last_line)


def test_repvgg_benchmark_prints_its_speedup_line():
    result = subprocess.run(
        [sys.executable, "benchmarks/repvgg.py", "--repeats", "1", "--variants", "tiny"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.fullmatch(r"speedup tiny=\d+\.\d{2}", result.stdout.strip().splitlines()[-1])
