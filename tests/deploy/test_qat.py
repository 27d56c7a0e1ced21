"""callbacks=qat: quantization-aware fine-tuning of a trained checkpoint, exported as int8."""

import json
import shlex
import shutil

import pytest
import torch

from project.deploy.export import load_trained_model
from project.errors import USER_ERROR_EXIT_CODE, UserError
from tests.conftest import run_script
from tests.end_to_end.test_readme import commands, section


def qat_run(tmp_path, trained_run):
    """The README's QAT command on a copy of the shared run's checkpoint, shortened."""
    [command] = [c for c in commands(section("Deploy"), "python train.py") if "callbacks=qat" in c]
    start = tmp_path / "start.pt"
    shutil.copy(trained_run / "checkpoints" / "best.pt", start)
    words = [
        f"model.pretrained={start}" if word.startswith("model.pretrained=") else word
        for word in shlex.split(command)[2:]
    ]
    run_dir = tmp_path / "qat"
    result = run_script(
        "train.py", *words, "trainer.max_epochs=1", "trainer.limit_train_batches=20",
        "dataset.val_size=512", f"hydra.run.dir={run_dir}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def test_the_documented_qat_command_fine_tunes_and_exports_int8(tmp_path, trained_run):
    # ~80 s, most of it torchao's convert_pt2e folding BatchNorm into the QAT convs
    # (it exports about 100 small pattern graphs).
    run_dir = qat_run(tmp_path, trained_run)
    report = json.loads((run_dir / "qat.json").read_text())
    # Post-training int8 of the starting weights is the baseline QAT is compared with.
    assert report["pretrained_fp32_accuracy"] > 0.5
    assert abs(report["ptq_int8_accuracy"] - report["pretrained_fp32_accuracy"]) < 0.02
    assert report["qat_int8_accuracy"] > report["pretrained_fp32_accuracy"] - 0.05

    import torchao  # noqa: F401  as the README says: it registers the int8 ops the file uses

    int8 = torch.export.load(str(run_dir / "checkpoints" / "int8.pt2")).module()
    assert any(t.dtype == torch.int8 for t in int8.state_dict().values())
    assert int8(torch.randn(3, 3, 32, 32)).shape == (3, 5)

    # evaluate.py rebuilds the fake-quantized graph; export.py points to the int8 file.
    checkpoint = run_dir / "checkpoints" / "best.pt"
    evaluated = run_script(
        "evaluate.py", f"ckpt={checkpoint}", "split=val", f"hydra.run.dir={tmp_path / 'eval'}"
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert json.loads(checkpoint.with_name("eval.json").read_text())["metrics"][
        "val/acc"
    ] == pytest.approx(metrics["best/val/acc"], abs=1e-6)
    with pytest.raises(UserError, match="its int8 model is .*int8.pt2"):
        load_trained_model(checkpoint)


def test_qat_refuses_what_it_cannot_combine_with(tmp_path):
    result = run_script(
        "train.py", "callbacks=qat", "trainer.ema_decay=0.9", "debug=fast",
        f"hydra.run.dir={tmp_path}",
    )  # fmt: skip
    assert result.returncode == USER_ERROR_EXIT_CODE
    assert "callbacks=qat runs in one process in fp32" in result.stderr
    assert "unset trainer.ema_decay" in result.stderr


@pytest.mark.slow  # converts to int8 twice (~60 s each)
def test_a_qat_run_resumes_from_its_checkpoint(tmp_path, trained_run):
    run_dir = qat_run(tmp_path, trained_run)
    # The fine-tuning graph is rebuilt the same way, so its checkpoint loads into it.
    resumed = run_script(
        "train.py", f"resume={run_dir}", "trainer.max_epochs=2", "trainer.limit_train_batches=20"
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "epoch 2/2" in (run_dir / "train.log").read_text()
    assert (run_dir / "checkpoints" / "int8.pt2").exists()
