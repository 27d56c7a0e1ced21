"""Bad input ends with a short message naming the key or file, no traceback, non-zero exit."""

import pytest

from project.errors import USER_ERROR_EXIT_CODE
from tests.conftest import run_script


def assert_no_traceback(result):
    assert "Traceback" not in result.stdout + result.stderr


def test_unknown_group_option_lists_the_available_ones(tmp_path):
    result = run_script("train.py", "model=nope", f"hydra.run.dir={tmp_path}")
    assert result.returncode != 0
    assert "Could not find 'model/nope'" in result.stderr
    assert "Available options in 'model':" in result.stderr and "cnn" in result.stderr
    assert_no_traceback(result)


def test_wrong_type_names_the_key(tmp_path):
    result = run_script("train.py", "trainer.gpus=abc", f"hydra.run.dir={tmp_path}")
    assert result.returncode != 0
    assert "full_key: trainer.gpus" in result.stderr
    assert "'abc'" in result.stderr
    assert_no_traceback(result)
    assert not (tmp_path / "checkpoints").exists()


def test_out_of_range_value_stops_before_any_work(tmp_path):
    result = run_script("train.py", "trainer.max_epochs=-1", f"hydra.run.dir={tmp_path}")
    assert result.returncode == USER_ERROR_EXIT_CODE
    assert result.stderr.strip() == "error: trainer.max_epochs=-1 is out of range: must be >= 1"
    assert_no_traceback(result)
    assert not (tmp_path / "checkpoints").exists()
    assert "out of range" in (tmp_path / "train.log").read_text()


def test_evaluate_with_a_missing_checkpoint_names_the_path(tmp_path):
    result = run_script("evaluate.py", "ckpt=missing.pt", f"hydra.run.dir={tmp_path}")
    assert result.returncode == USER_ERROR_EXIT_CODE
    assert result.stderr.strip() == "error: checkpoint not found: missing.pt"
    assert_no_traceback(result)


@pytest.mark.parametrize("content", [b"not a checkpoint at all", b"PK\x03\x04truncated zip"])
def test_evaluate_with_a_corrupt_checkpoint_names_the_file(tmp_path, content):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(content)
    result = run_script("evaluate.py", f"ckpt={corrupt}", f"hydra.run.dir={tmp_path / 'eval'}")
    assert result.returncode == USER_ERROR_EXIT_CODE
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot read checkpoint {corrupt}")
    assert_no_traceback(result)
    assert corrupt.read_bytes() == content  # nothing overwritten


@pytest.mark.skipif(
    __import__("torch").cuda.is_available(), reason="checks the message on a machine without CUDA"
)
def test_asking_for_a_gpu_on_a_machine_without_one(tmp_path):
    result = run_script("train.py", "trainer.gpus=1", f"hydra.run.dir={tmp_path}")
    assert result.returncode == USER_ERROR_EXIT_CODE
    assert (
        result.stderr.strip()
        == "error: trainer.gpus=1 but this machine has 0 CUDA device(s); use trainer.gpus=0 for the CPU"
    )


def test_unknown_init_scheme_lists_the_valid_ones(tmp_path):
    result = run_script("train.py", "model=mobilenet", "model.init=he", f"hydra.run.dir={tmp_path}")
    assert result.returncode == USER_ERROR_EXIT_CODE
    assert result.stderr.strip() == (
        "error: model (project.models.mobilenet.MobileNet): model.init='he' is not known; "
        "choose one of: default, kaiming_normal, kaiming_uniform, xavier_normal, "
        "xavier_uniform, orthogonal, normal, trunc_normal"
    )
    assert_no_traceback(result)
    assert not (tmp_path / "checkpoints").exists()


def test_resume_from_a_corrupt_checkpoint_names_it_and_changes_nothing(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    corrupt = run_dir / "checkpoints" / "last.pt"
    corrupt.write_bytes(b"PK\x03\x04truncated by a full disk")
    result = run_script("train.py", f"resume={run_dir}")
    assert result.returncode == USER_ERROR_EXIT_CODE
    assert result.stderr.strip().startswith(f"error: cannot read checkpoint {corrupt}: corrupt")
    assert_no_traceback(result)
    assert corrupt.read_bytes() == b"PK\x03\x04truncated by a full disk"
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["last.pt"]
