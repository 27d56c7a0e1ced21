"""CUDA-only behaviour; skipped where there is no GPU (CI, most laptops)."""

import json

import pytest
import torch

from tests.conftest import FAST_TRAINING, run_script

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.mark.parametrize("precision", ["32", "bf16-mixed", "16-mixed"])
def test_one_gpu_training_learns_at_every_precision(tmp_path, precision):
    result = run_script(
        "train.py",
        *FAST_TRAINING,
        "trainer.gpus=1",
        f"trainer.precision={precision}",
        f"hydra.run.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["val/acc"] > 0.5
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert all(tensor.device.type == "cpu" for tensor in state["model"].values())  # loads anywhere
    assert (state["scaler"] is not None) == (precision == "16-mixed")


def test_asking_for_more_gpus_than_exist_says_how_many_there_are(tmp_path):
    count = torch.cuda.device_count()
    result = run_script("train.py", f"trainer.gpus={count + 1}", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2
    assert f"this machine has {count} CUDA device(s)" in result.stderr
