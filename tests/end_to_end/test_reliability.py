"""The bad-input list of README 'Reliability': every case ends in one line naming the key,
file or value (exit code 2), and nothing already written is lost or changed.

Families: code from files, one writer per run folder, non-finite weights, refused
commands change nothing, bad config values, bad data files, bad checkpoint files, bad
places to write. kill -9 and SIGTERM/SIGINT are covered in tests/checkpoint/ (test_crash_safety.py,
test_resume.py); they are listed in the README table with these.
"""

import errno
import fcntl
import math
import os
import re
import resource
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from project.checkpoint.files import atomic_save
from project.checkpoint.format import FORMAT_VERSION
from project.checkpoint.policy import CheckpointPolicy, improves
from project.data.decode import read_rgb
from project.data.image_files import FileListDataset, ImageFolderDataset
from project.errors import USER_ERROR_EXIT_CODE, UserError
from project.run_folder import LOCK_NAME, lock_run_folder
from project.trusted_config import check_trusted, config_tree_targets, is_trusted_target
from tests.conftest import REPO_ROOT, compose_config, run_script
from tests.data_files import write_image_files


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The single stderr line of a refused command (exit code 2, no traceback)."""
    assert result.returncode == USER_ERROR_EXIT_CODE, result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes: to show a refused command changed nothing."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


# ---- 1. code from files -------------------------------------------------------------------


def hostile_checkpoint(source: Path, destination: Path, victim: Path) -> Path:
    """A real checkpoint whose model config would write `victim` when built (issue 14)."""
    state = torch.load(source, weights_only=True)
    state["config"]["model"] = {
        "_target_": "pathlib.Path.write_text",
        "_args_": [{"_target_": "pathlib.Path", "_args_": [str(victim)]}, "pwned"],
    }
    destination.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, destination)
    return destination


@pytest.fixture
def hostile_run(tmp_path, trained_run):
    """A copy of the trained run whose checkpoints all carry the hostile config."""
    run = tmp_path / "hostile_run"
    victim = tmp_path / "victim.txt"
    for name in ("best.pt", "last.pt"):
        hostile_checkpoint(trained_run / "checkpoints" / name, run / "checkpoints" / name, victim)
    return run, victim


def wings_present(*names: str) -> bool:
    """The optional wings (make new-project MINIMAL=1 removes them with their commands)."""
    return all((REPO_ROOT / "project" / name).is_dir() for name in names)


@pytest.mark.parametrize(
    "entry_point",
    ["evaluate", "predict", "resume", "pretrained"]
    + (["export"] if wings_present("deploy") else [])
    + (["distill_teacher"] if wings_present("distill") else []),
)
def test_a_hostile_checkpoint_is_refused_by_every_entry_point(tmp_path, hostile_run, entry_point):
    run, victim = hostile_run
    best = run / "checkpoints" / "best.pt"
    command = {
        "evaluate": ["evaluate.py", f"ckpt={best}"],
        "predict": ["predict.py", f"ckpt={best}", f"input={best}"],
        "export": ["export.py", f"ckpt={best}"],
        "resume": ["train.py", f"resume={run}"],
        "pretrained": ["train.py", f"model.pretrained={best}", "debug=fast"],
        "distill_teacher": ["train.py", "experiment=distill", f"distill.teacher_ckpt={best}",
                            "debug=fast"],
    }[entry_point]  # fmt: skip
    before = snapshot(run)
    result = run_script(*command, f"hydra.run.dir={tmp_path / 'out'}")
    message = one_line_error(result)
    assert f"refused {best if entry_point != 'resume' else run / 'checkpoints'}" in message
    assert "config key model._target_: 'pathlib.Path.write_text' is not a target" in message
    assert not victim.exists()
    assert snapshot(run) == before


@pytest.mark.parametrize(
    ("config", "refused_key"),
    [
        ({"model": {"_target_": "os.system", "command": "true"}}, "model._target_"),
        ({"dataset": {"transforms": {"train": {"_target_": "torchvision.transforms.v2.Compose",
          "transforms": [{"_target_": "builtins.exec", "_args_": ["1"]}]}}}},
         "dataset.transforms.train.transforms[0]._target_"),
        ({"model": {"_target_": "project.models.cnn.SmallCNN",
          "num_classes": {"_target_": "subprocess.call", "_partial_": True}}},
         "model.num_classes._target_"),
        ({"model": {"_target_": "torchvision.transforms.v2.Lambda", "lambd": "x"}},
         "model._target_"),
        ({"model": {"_target_": "project.checkpoint.atomic_write_text"}}, "model._target_"),
        ({"model": {"_target_": ["not", "a", "name"]}}, "model._target_"),
        ({"paths": {"root_dir": "${oc.env:HOME}"}}, "paths.root_dir"),
        ({"seed": "${now:%H}"}, "seed"),
    ],
)  # fmt: skip
def test_every_target_and_interpolation_in_a_saved_config_is_checked(config, refused_key):
    with pytest.raises(
        UserError, match=rf"refused file\.pt: its config key {re.escape(refused_key)}: "
    ):
        check_trusted(config, "file.pt")


def test_known_targets_are_the_config_tree_and_model_dataset_optimizer_classes():
    assert "project.models.cnn.SmallCNN" in config_tree_targets()
    assert is_trusted_target("project.optim.one_cycle")  # a function, written in configs/
    assert is_trusted_target("project.models.blocks.ConvBNAct")  # an nn.Module of the project
    assert is_trusted_target("torchvision.transforms.v2.RandomResizedCrop")
    assert is_trusted_target("torch.optim.lr_scheduler.StepLR")
    assert not is_trusted_target("project.data.shapes_files.write_shapes_files")
    assert not is_trusted_target("torch.save")
    assert not is_trusted_target("antigravity.fly")  # not even imported


@pytest.mark.parametrize("model", ["cnn", "mobilenet", "unet", "repvgg", "lstm", "torchvision"])
@pytest.mark.parametrize(
    "dataset",
    ["shapes", "shapes_seg", "sequences", "image_folder", "file_list", "cifar10", "mnist"],
)
def test_every_shipped_model_and_dataset_config_is_trusted(model, dataset):
    from omegaconf import OmegaConf

    overrides = [f"model={model}", f"dataset={dataset}", "paths.output_dir=/tmp/run"]
    config = OmegaConf.to_container(compose_config("train", overrides), resolve=False)
    # Saved configs are resolved; resolving every node would need each pair to make sense,
    # so check the targets, and the model and dataset nodes as they are saved.
    config.pop("task"), config.pop("paths")
    for group in ("model", "dataset"):
        config[group] = {k: v for k, v in config[group].items() if "${" not in str(v)}
    check_trusted(config, "saved.pt")


def test_a_legitimate_checkpoint_still_evaluates(trained_run, tmp_path):
    result = run_script(
        "evaluate.py", f"ckpt={trained_run / 'checkpoints' / 'best.pt'}", "split=val",
        f"hydra.run.dir={tmp_path}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test/acc" not in result.stdout and "val/acc" in result.stdout


# ---- 2. one writer per run folder ---------------------------------------------------------


def start_training(run_dir: Path, *overrides: str) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "train.py", f"hydra.run.dir={run_dir}", "trainer.max_epochs=30",
         "logger.progress_bar=false", *overrides],
        cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not (run_dir / "checkpoints" / "last.pt").is_file():
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.2)
    return process


def test_a_second_writer_is_refused_while_the_first_trains(tmp_path):
    run_dir = tmp_path / "run"
    first = start_training(run_dir, "dataset.train_size=1000", "dataset.val_size=200")
    try:
        hydra_files = snapshot(run_dir / ".hydra")
        for command in ([f"hydra.run.dir={run_dir}", "debug=fast"], [f"resume={run_dir}"]):
            message = one_line_error(run_script("train.py", *command))
            assert message == (
                f"error: the run folder {run_dir} is in use by another training process "
                f"(PID {first.pid}); wait for it to end, or choose another hydra.run.dir"
            )
        assert snapshot(run_dir / ".hydra") == hydra_files  # no resume-<time>/ either
        assert "debug" not in (run_dir / "train.log").read_text()
    finally:
        first.kill()
        first.wait()


def test_the_lock_dies_with_its_process_even_by_kill_9(tmp_path):
    folder = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from project.run_folder import "
         "lock_run_folder as lock; lock(sys.argv[1]); print('locked', flush=True); "
         "time.sleep(60)", str(folder)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "locked"
    descriptor = os.open(folder / LOCK_NAME, os.O_RDWR)
    with pytest.raises(BlockingIOError):
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.close(descriptor)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    lock_run_folder(folder)  # no stale lock
    assert (folder / LOCK_NAME).read_text().strip() == str(os.getpid())


# ---- 3. non-finite weights never saved ----------------------------------------------------


def test_weights_that_blow_up_are_never_saved(tmp_path):
    run_dir = tmp_path / "run"
    result = run_script(
        "train.py", "optimizer.lr=1e30", "trainer.nan_policy=skip_batch", "debug=fast",
        f"hydra.run.dir={run_dir}",
    )  # fmt: skip
    message = one_line_error(result)
    assert message.startswith("error: the weights are NaN or infinite after step ")
    assert "training stopped without saving them (no checkpoint saved yet)" in message
    assert not (run_dir / "checkpoints").exists()


def test_the_last_good_checkpoint_survives_weights_that_went_non_finite(tmp_path):
    from torch import nn
    from torch.utils.data import DataLoader

    from tests.trainer.test_trainer import make_data, make_trainer  # a tiny real trainer

    policy = CheckpointPolicy(tmp_path, monitor="val/loss", mode="min")
    trainer = make_trainer(nn.Linear(6, 3), run_dir=tmp_path, policy=policy, max_epochs=1)
    loader = DataLoader(make_data(), batch_size=5)
    trainer.fit(loader, loader)
    last = trainer.checkpoint_policy.last_path
    good = last.read_bytes()
    with torch.no_grad():
        next(trainer.module.parameters())[0] = math.inf
    with pytest.raises(
        UserError, match=f"the weights are NaN or infinite .*last good checkpoint: {last}"
    ):
        trainer.checkpoint_policy.on_validation_end(
            {"val/loss": 0.0}, epoch=9, step=99, build_state=trainer.training_state
        )
    assert last.read_bytes() == good
    saved = torch.load(last, weights_only=True)["model"]  # a trainer built in code: no config
    assert all(torch.isfinite(w).all() for w in saved.values())


def test_a_non_finite_score_never_becomes_best():
    assert not improves(math.inf, None, "max") and not improves(-math.inf, 0.5, "min")
    assert not improves(math.nan, None, "min") and improves(0.5, None, "max")


# ---- 4. a refused command changes nothing -------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [["model=mobilenet"], ["trainer.max_epochs=-1"], ["optimizer.lr=abc"]],
)
def test_a_refused_resume_writes_nothing_into_the_run(tmp_path, trained_run, overrides):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    before = snapshot(run)
    one_line_error(run_script("train.py", f"resume={run}", *overrides))
    assert snapshot(run) == before  # no .hydra/resume-<time>/, no ERROR line in train.log


def test_resuming_a_folder_without_checkpoints_writes_nothing_into_it(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    message = one_line_error(run_script("train.py", f"resume={run}"))
    assert message == f"error: resume={run}: no checkpoint in {run / 'checkpoints'}"
    assert [path.name for path in run.iterdir()] == ["checkpoints"]
    assert not list((run / "checkpoints").iterdir())


# ---- 5. bad config values -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "overrides", "expected"),
    [
        ("train.py", ["optimizer.lr=-1"], "optimizer.lr=-1 is out of range: must be > 0.0"),
        ("train.py", ["optimizer.lr=abc"], "optimizer.lr='abc' is not valid: must be a number"),
        ("train.py", ["seed=abc"], "seed='abc' is not valid: must be an integer"),
        ("train.py", ["model.width=0"], "model.width=0 is out of range: must be >= 1"),
        ("train.py", ["dataset.image_size=0"], "dataset.image_size=0 is out of range: must be >= 1"),
        ("train.py", ["scheduler=onecycle", "scheduler.pct_start=1.5"],
         "scheduler.pct_start=1.5 is out of range: must be < 1.0"),
        ("train.py", ["dataset.num_classes=1"],
         "dataset.num_classes=1: a classification task needs at least 2 classes"),
        ("evaluate.py", [], "ckpt: required, but not set; give a value on the command line"),
        ("export.py", [], "ckpt: required, but not set; give a value on the command line"),
        ("train.py", ["trainer.max_epochs=-1"], "trainer.max_epochs=-1 is out of range"),
        ("train.py", ["checkpoint.filename=" + "x" * 250], "would be 266 bytes with its temporary"),
    ],
)  # fmt: skip
def test_a_bad_value_is_named_in_one_line(tmp_path, script, overrides, expected):
    if script == "export.py" and not wings_present("deploy"):
        pytest.skip("the deployment wing was removed")
    message = one_line_error(run_script(script, *overrides, f"hydra.run.dir={tmp_path / 'r'}"))
    assert expected in message
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_a_fork_s_own_model_config_gets_the_same_checks(tmp_path):
    # The checks go by key name: any model config with `width` gets the width rule.
    from project.schema import validate_config

    cfg = compose_config("train", ["model=mobilenet", "+model.width=-3"])
    with pytest.raises(UserError, match=r"^model.width=-3 is out of range: must be >= 1$"):
        validate_config(cfg)


# ---- 6. bad data files --------------------------------------------------------------------


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A tiny valid PNG whose header claims `width` x `height` pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" + b"\x00" * 3)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )
    return path


@pytest.fixture
def image_folder(tmp_path):
    root = write_image_files(tmp_path / "images", {"train": 10, "val": 4})
    classes = len(list((root / "train").iterdir()))
    return root, classes


@pytest.mark.parametrize("cache", [False, True])
def test_mixed_image_sizes_without_image_size_name_the_file(image_folder, cache):
    root, classes = image_folder
    odd = sorted((root / "train").rglob("*.png"))[-1]
    Image.new("RGB", (40, 24)).save(odd)

    def read_all():
        dataset = ImageFolderDataset("train", str(root), classes, image_size=None, cache=cache)
        return [dataset[index] for index in range(len(dataset))]

    with pytest.raises(
        UserError, match=rf"{odd} is 40x24 pixels but .* is 32x32; set dataset.image_size="
    ):
        read_all()


@pytest.mark.parametrize("cache", [False, True])
def test_a_decompression_bomb_is_named(image_folder, cache):
    root, classes = image_folder
    bomb = sorted((root / "train").rglob("*.png"))[0]
    png_claiming(bomb, 60_000, 60_000)

    def read_all():
        dataset = ImageFolderDataset("train", str(root), classes, image_size=32, cache=cache)
        return [dataset[index] for index in range(len(dataset))]

    with pytest.raises(UserError, match=rf"{bomb}: its header claims too many pixels"):
        read_all()


def test_16_bit_pngs_are_scaled_not_clipped(tmp_path):
    ramp = (np.arange(256, dtype=np.uint32) * 257).astype(np.uint16).reshape(16, 16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode == "I;16"
    pixels = read_rgb(tmp_path / "deep.png")
    assert pixels.dtype == torch.uint8 and pixels.shape == (3, 16, 16)
    assert pixels[0].flatten().tolist() == list(range(256))  # 0..65535 -> 0..255, no clipping


def test_32_bit_images_are_refused_by_name(tmp_path):
    Image.fromarray(np.ones((4, 4), dtype=np.float32)).save(tmp_path / "float.tiff")
    write_image_files(tmp_path / "images", {"train": 4})
    root = tmp_path / "images"
    target = sorted((root / "train").rglob("*.png"))[0]
    shutil.copy(tmp_path / "float.tiff", target.with_suffix(".tiff"))
    target.unlink()
    dataset = ImageFolderDataset("train", str(root), len(list((root / "train").iterdir())))
    index = [Path(os.fsdecode(p)).suffix for p in dataset.paths].index(".tiff")
    with pytest.raises(UserError, match=r"\.tiff: unsupported image: floating-point pixels"):
        dataset[index]


def test_a_list_file_with_a_byte_order_mark_reads_its_first_path(image_folder):
    root, classes = image_folder
    listed = (root / "train.txt").read_text(encoding="utf-8")
    (root / "train.txt").write_text("\ufeff" + listed, encoding="utf-8")
    dataset = FileListDataset("train", str(root), 5, val_list=None, val_fraction=0.2)
    assert all(b"\xef\xbb\xbf" not in path for path in dataset.paths)
    assert dataset[0][0].shape == (3, 32, 32)


def test_one_class_folder_is_refused(tmp_path):
    root = tmp_path / "one_class"
    (root / "train" / "cat").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(root / "train" / "cat" / "0.png")
    message = one_line_error(
        run_script("train.py", "dataset=image_folder", f"dataset.root={root}",
                   "dataset.num_classes=1", f"hydra.run.dir={tmp_path / 'r'}")
    )  # fmt: skip
    assert "dataset.num_classes=1: a classification task needs at least 2 classes" in message


# ---- 7. bad checkpoint files --------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "why"),
    [
        ({"format_version": "2", "config": {"seed": 1}, "model": {}}, "format_version '2'"),
        ({"format_version": [2], "config": {"seed": 1}, "model": {}}, "format_version [2]"),
        ({"format_version": FORMAT_VERSION, "config": {}, "model": {}}, "with a non-empty config"),
        ({"format_version": FORMAT_VERSION, "config": "x", "model": {}}, "with a non-empty config"),
    ],
)
def test_a_malformed_checkpoint_is_not_a_checkpoint_of_this_project(tmp_path, state, why):
    path = tmp_path / "odd.pt"
    torch.save(state, path)
    message = one_line_error(run_script("evaluate.py", f"ckpt={path}", f"hydra.run.dir={tmp_path}"))
    assert message.startswith(f"error: {path} is not a checkpoint of this project")
    assert why in message


class RunsCode:
    def __reduce__(self):
        return (print, ("this ran",))


@pytest.mark.parametrize("legacy", [True, False])
def test_a_pickle_payload_is_refused_as_such_not_called_corrupt(tmp_path, legacy):
    import pickle

    path = tmp_path / "payload.pt"
    if legacy:
        torch.save({"x": RunsCode()}, path, _use_new_zipfile_serialization=False)
    else:
        path.write_bytes(pickle.dumps(RunsCode(), protocol=4))  # a plain pickle file
    message = one_line_error(run_script("evaluate.py", f"ckpt={path}", f"hydra.run.dir={tmp_path}"))
    assert message.startswith(f"error: refused to load {path}: it holds pickled Python objects")
    assert "this ran" not in message


def test_a_truncated_checkpoint_is_named(tmp_path, trained_run):
    path = tmp_path / "best.pt"
    path.write_bytes((trained_run / "checkpoints" / "best.pt").read_bytes()[:5000])
    message = one_line_error(run_script("evaluate.py", f"ckpt={path}", f"hydra.run.dir={tmp_path}"))
    assert message.startswith(f"error: cannot read checkpoint {path}: corrupt")


# ---- 8. bad places to write ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (errno.ENOSPC, "No space left on device"),
        (errno.EFBIG, "File too large"),
        (errno.EROFS, "Read-only file system"),
        (errno.EACCES, "Permission denied"),
    ],
)
def test_a_failed_save_names_the_path_and_the_os_reason(tmp_path, monkeypatch, code, reason):
    path = tmp_path / "checkpoints" / "last.pt"
    atomic_save({"format_version": FORMAT_VERSION, "config": {"a": 1}, "model": {}}, path)
    before = path.read_bytes()
    real_open = open

    def failing_open(file, mode="r", *args, **kwargs):
        if "w" in mode and str(file).endswith(".tmp"):
            raise OSError(code, os.strerror(code), str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", failing_open)
    with pytest.raises(UserError) as refused:
        atomic_save({"format_version": FORMAT_VERSION, "config": {"a": 2}, "model": {}}, path)
    monkeypatch.undo()
    assert str(refused.value) == (
        f"cannot write {path}: {reason}; the files already there are unchanged"
    )
    assert path.read_bytes() == before and [p.name for p in path.parent.iterdir()] == ["last.pt"]


def test_a_file_size_limit_hit_while_training_keeps_the_last_checkpoint(tmp_path, trained_run):
    """A real EFBIG: a new run in a finished run's folder may write its small files, but
    not a checkpoint, and the checkpoints already there stay as they were."""
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    last = run / "checkpoints" / "last.pt"
    before = last.read_bytes()
    limit = len(before) // 2

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = subprocess.run(
        [sys.executable, "train.py", f"hydra.run.dir={run}", "debug=fast",
         "logger.progress_bar=false"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, preexec_fn=limit_file_size,
    )  # fmt: skip
    message = one_line_error(result)
    assert message.startswith(f"error: cannot write {run / 'checkpoints'}/")
    assert message.endswith(": File too large; the files already there are unchanged")
    assert last.read_bytes() == before
    assert not list((run / "checkpoints").glob(".*.tmp"))


@pytest.mark.parametrize("where", ["below_a_file", "proc"])
def test_an_unwritable_run_folder_is_one_line(tmp_path, where):
    if where == "below_a_file":
        (tmp_path / "a_file").write_text("")
        run_dir, reason = tmp_path / "a_file" / "run", "Not a directory"
    else:
        run_dir, reason = Path("/proc/run"), None  # as root too: /proc takes no folders
    message = one_line_error(run_script("train.py", "debug=fast", f"hydra.run.dir={run_dir}"))
    assert message.startswith(f"error: cannot write to the run folder {run_dir}: ")
    if reason:
        assert message.endswith(reason)


def test_a_filename_template_that_names_no_metric_is_refused_before_training(tmp_path):
    policy = CheckpointPolicy(tmp_path, monitor="val/loss", filename="{val/nope}")
    with pytest.raises(UserError, match=r"checkpoint.filename='\{val/nope\}' cannot be filled"):
        policy.check_filename(["val/loss"])
