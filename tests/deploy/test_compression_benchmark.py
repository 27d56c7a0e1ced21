"""benchmarks/compression.py (deployment and distillation figures) still runs."""

import re

import pytest

from tests.end_to_end.test_benchmarks import last_line


@pytest.mark.slow  # ~2 min: trains the default teacher, then two small students
def test_compression_benchmark_prints_its_distillation_line():
    line = last_line(
        "benchmarks/compression.py", "--tables", "distillation", "--student-epochs", "1",
        "--student-train-size", "512", "--seeds", "1",
    )  # fmt: skip
    assert re.fullmatch(r"compression distill_gain_points=-?\d+\.\d{2}", line)
