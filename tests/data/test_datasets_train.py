"""Each dataset option trains for an epoch on files the test writes (nothing downloaded)."""

import json
import re

import pytest
import torchvision.datasets.cifar

from project.distributed import SINGLE_PROCESS
from project.errors import USER_ERROR_EXIT_CODE, exit_on_user_error
from project.launch import LaunchPlan
from tests.conftest import compose_config, run_script
from tests.data_files import write_cifar10, write_image_files, write_mnist
from train import fit

ONE_EPOCH = ["trainer.max_epochs=1", "scheduler=onecycle", "loader.batch_size=32"]
IN_THIS_PROCESS = LaunchPlan(spawn=0, strategy=None, sync_bn=False)


@pytest.mark.slow  # ~40 s: 4 trainings with loader workers; the README image_folder test covers the default path
def test_image_folder_and_file_list_train_lazily_and_cached_with_workers(tmp_path):
    root = write_image_files(tmp_path / "images")
    sweep = tmp_path / "sweep"
    result = run_script(
        "train.py", "-m", "dataset=image_folder,file_list", "++dataset.cache=false,true",
        f"++dataset.root={root}", "++dataset.num_classes=5", *ONE_EPOCH,
        "loader.num_workers=2", "loader.background_prefetch=2", f"hydra.sweep.dir={sweep}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = [("image_folder", "false"), ("image_folder", "true"), ("file_list", "false"), ("file_list", "true")]  # fmt: skip
    for number, (option, cache) in enumerate(jobs):
        job = sweep / str(number)
        assert f"dataset={option}" in (job / ".hydra" / "overrides.yaml").read_text()
        log = (job / "train.log").read_text()
        # 200 train images in batches of 32 (the last partial one dropped), 40 validated.
        assert "6 batches per epoch of 32 samples" in log
        assert ("decoded 200 train images into RAM (0.6 MB)" in log) == (cache == "true")
        metrics = json.loads((job / "metrics.json").read_text())
        assert 0 <= metrics["val/acc"] <= 1 and metrics["train/loss"] > 0
        assert 0 <= metrics["train/data_wait_fraction"] < 1


@pytest.mark.parametrize("option", ["mnist", "cifar10"])
def test_mnist_and_cifar10_train_from_torchvision_files(tmp_path, monkeypatch, option):
    write_mnist(tmp_path, train=160, test=32)
    write_cifar10(tmp_path, per_batch=32)
    # The generated CIFAR files cannot match the real files' checksums.
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *args: True)
    run_dir = tmp_path / "run"
    cfg = compose_config(
        "train",
        [f"dataset={option}", f"dataset.root={tmp_path}", *ONE_EPOCH, "logger=none",
         f"paths.output_dir={run_dir}"],
    )  # fmt: skip
    metrics = fit(SINGLE_PROCESS, cfg, IN_THIS_PROCESS)
    assert 0 <= metrics["val/acc"] <= 1
    assert (run_dir / "checkpoints" / "best.pt").is_file()


def test_a_corrupt_image_read_by_a_loader_worker_ends_the_run_with_one_line(tmp_path, capsys):
    root = write_image_files(tmp_path / "images", {"train": 128, "val": 16})
    # Not image 0: train.py reads that one itself (for the model summary's input shape).
    corrupt = sorted((root / "train").rglob("*.png"))[10]
    corrupt.write_bytes(b"\x89PNG truncated")
    cfg = compose_config(
        "train",
        ["dataset=image_folder", f"dataset.root={root}", f"dataset.num_classes={len(list((root / 'train').iterdir()))}",
         *ONE_EPOCH, "loader.num_workers=2", "logger=none", f"paths.output_dir={tmp_path / 'run'}"],
    )  # fmt: skip
    with pytest.raises(SystemExit) as exit_info, exit_on_user_error():
        fit(SINGLE_PROCESS, cfg, IN_THIS_PROCESS)
    assert exit_info.value.code == USER_ERROR_EXIT_CODE
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    message = stderr.strip().splitlines()[-1]
    assert message.startswith(f"error: image 10 of the train split, {corrupt}: cannot be decoded")
    assert re.search(r"\(in DataLoader worker process [01]\)$", message), message
