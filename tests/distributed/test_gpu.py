"""CUDA-only behaviour; skipped where there is no GPU (CI, most laptops)."""

import json

import pytest
import torch

from project.distributed import convert_sync_batchnorm, process_group
from project.launch import spawn
from project.models.lstm import LSTMClassifier
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


def sync_batchnorm_step(process, inputs: list, store=None) -> dict:
    """One training-mode forward of a SyncBatchNorm on this rank's half of `inputs`."""
    device = torch.device("cuda", process.local_rank)
    torch.cuda.set_device(device)
    with process_group(process, device, store):
        layer = convert_sync_batchnorm(torch.nn.Sequential(torch.nn.BatchNorm2d(3))).to(device)
        shard = torch.tensor(inputs).chunk(process.world_size)[process.rank].to(device)
        output = layer(shard)
        return {
            "output": output.cpu().tolist(),
            "running_mean": layer[0].running_mean.cpu().tolist(),
            "running_var": layer[0].running_var.cpu().tolist(),
        }


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs")
def test_sync_batchnorm_on_two_gpus_equals_batchnorm_on_the_full_batch():
    inputs = torch.randn(8, 3, 5, 5, generator=torch.Generator().manual_seed(0)) * 3 + 1
    reference = torch.nn.BatchNorm2d(3)
    expected = reference(inputs)
    rank0 = spawn(sync_batchnorm_step, (inputs.tolist(),), processes=2)
    torch.testing.assert_close(torch.tensor(rank0["output"]), expected[:4], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.tensor(rank0["running_mean"]), reference.running_mean)
    torch.testing.assert_close(torch.tensor(rank0["running_var"]), reference.running_var)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs")
def test_dataparallel_lstm_matches_the_bare_model():
    model = LSTMClassifier(vocab_size=20, num_classes=3).cuda().eval()
    wrapped = torch.nn.DataParallel(model, device_ids=[0, 1])
    tokens = torch.randint(1, 20, (6, 11), device="cuda")
    lengths = torch.tensor([11, 3, 7, 11, 2, 5])
    torch.testing.assert_close(wrapped(tokens, lengths), model(tokens, lengths))


def test_device_prefetch_copies_every_batch_to_the_gpu_in_order():
    from torch.utils.data import DataLoader, TensorDataset

    from project.data.device_prefetch import prefetch_to_device

    values = torch.arange(64.0).view(-1, 1)
    loader = DataLoader(TensorDataset(values, values.long()), batch_size=8, pin_memory=True)
    copied = list(prefetch_to_device(loader, torch.device("cuda")))
    assert len(copied) == 8 and all(inputs.is_cuda and labels.is_cuda for inputs, labels in copied)
    assert torch.equal(torch.cat([inputs for inputs, _ in copied]).cpu(), values)
