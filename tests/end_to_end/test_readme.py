"""The README's commands and its add-a-model / add-a-dataset steps, done as written."""

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from project.data.shapes import render_shapes
from project.schema import validate_config
from tests.conftest import REPO_ROOT, compose_config, run_script

README = (REPO_ROOT / "README.md").read_text()
# The README and every page of docs/: each command any of them shows is exercised here.
DOCS = [README] + [page.read_text() for page in sorted((REPO_ROOT / "docs").glob("*.md"))]
ALL_DOCS = "\n".join(DOCS)


def section(title: str) -> str:
    """The `## title` section of the README or of a docs/ page."""
    for text in DOCS:
        match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
        if match:
            return match.group(1)
    raise AssertionError(f"neither the README nor docs/ has a section {title!r}")


def titled_blocks(text: str) -> dict[str, str]:
    """Code blocks written as ```lang title="path" ... ```: path -> content."""
    return dict(re.findall(r'^```\w+ title="([^"]+)"\n(.*?)^```', text, flags=re.S | re.M))


def commands(text: str, program: str) -> list[str]:
    lines = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M):
        for line in block.splitlines():
            command = line.split("  #")[0].strip()
            if command.startswith(program):
                lines.append(command)
    return lines


def copy_of_the_repository(destination: Path) -> Path:
    """The tracked files, as a fresh clone would have them (no .venv, no logs)."""
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in tracked:
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (REPO_ROOT / name).exists():
            shutil.copy2(REPO_ROOT / name, target)
    return destination


def do_the_steps(title: str, copy: Path) -> str:
    """Write the section's files into `copy`; return its one training command."""
    text = section(title)
    files = titled_blocks(text)
    assert files, f"section {title!r} shows no file"
    for path, content in files.items():
        assert not (copy / path).exists(), (
            f"{path} already exists: the README step would overwrite it"
        )
        (copy / path).write_text(content)
    [command] = commands(text, "python train.py")
    return command


def run_readme_command(command: str, copy: Path, run_dir: Path):
    words = shlex.split(command)
    assert words[:2] == ["python", "train.py"]
    return run_script("train.py", *words[2:], f"hydra.run.dir={run_dir}", cwd=copy)


def test_the_readme_is_short_and_links_every_docs_page():
    assert len(README.splitlines()) <= 310
    for page in sorted((REPO_ROOT / "docs").glob("*.md")):
        assert f"(docs/{page.name})" in README, page.name
    for link in re.findall(r"\]\((docs/[^)#]+)", README):
        assert (REPO_ROOT / link).is_file(), link


def test_every_documented_train_command_composes_and_validates():
    documented = commands(ALL_DOCS, "python train.py")
    assert len(documented) >= 5
    torchrun = [c.split(" train.py", 1)[1] for c in commands(ALL_DOCS, "torchrun ")]
    assert len(torchrun) == 2
    for command in documented + [f"python train.py{args}" for args in torchrun]:
        # ${hydra:job.num} exists only inside a sweep's job; job 0 stands for it here, and
        # a run folder for the <run> placeholder.
        command = command.replace("${hydra:job.num}", "0").replace("<run>", "2026-01-01")
        words = shlex.split(command)[2:]
        if "-m" in words:  # a sweep: compose each job's value
            words.remove("-m")
            sweeps = [word for word in words if "," in word]
            jobs = [
                [w for w in words if w != sweep] + [f"{sweep.split('=')[0]}={value}"]
                for sweep in sweeps
                for value in sweep.split("=")[1].split(",")
            ]
        else:
            jobs = [words]
        for overrides in jobs:
            if any(word in overrides for word in ("model=mlp", "dataset=my_images")):
                continue  # these exist only after the README steps, tested below
            validate_config(compose_config("train", overrides))


def test_the_documented_multirun_runs_one_job_per_value(tmp_path):
    [command] = [
        c for c in commands(ALL_DOCS, "python train.py") if c.endswith(" -m optimizer.lr=0.1,0.01")
    ]
    words = shlex.split(command)[2:]
    result = run_script("train.py", *words, "debug=fast", f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    for job, lr in (("0", 0.1), ("1", 0.01)):
        state = torch.load(tmp_path / job / "checkpoints" / "last.pt", weights_only=True)
        assert state["config"]["optimizer"]["lr"] == lr
        assert (tmp_path / job / "train.log").is_file()


def test_the_documented_example_files_train_with_image_folder(tmp_path):
    text = section("Data")
    [write] = commands(text, "python -m project.data.shapes_files")
    [train] = [c for c in commands(text, "python train.py") if "dataset=image_folder" in c]
    # Run from an empty folder, as a user's working directory: data/ is created there.
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    written = subprocess.run(
        [sys.executable, *shlex.split(write)[1:]], cwd=tmp_path, env=env, capture_output=True, text=True
    )  # fmt: skip
    assert written.returncode == 0, written.stderr[-2000:]
    for split, count in (("train", 2000), ("val", 500), ("test", 500)):
        assert len(list((tmp_path / "data" / "images" / split).rglob("*.png"))) == count
        assert (
            len((tmp_path / "data" / "images" / f"{split}.txt").read_text().splitlines()) == count
        )
    words = shlex.split(train)[2:]
    result = run_script(
        str(REPO_ROOT / "train.py"), *words, "debug=fast", f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ImageFolderDataset" in (tmp_path / "run" / ".hydra" / "config.yaml").read_text()


def test_the_saliency_example_writes_input_gradients_to_tensorboard(tmp_path, trained_run):
    text = section("Speed switches and training insight")
    script = titled_blocks(text)["saliency.py"]
    [command] = commands(text, "python saliency.py")
    (tmp_path / "saliency.py").write_text(script)
    # A copy: the shared run's checkpoint folder is listed by other tests.
    checkpoint = tmp_path / "best.pt"
    shutil.copy2(trained_run / "checkpoints" / "best.pt", checkpoint)
    words = shlex.split(
        command.replace("logs/train/runs/<run>/checkpoints/best.pt", str(checkpoint))
    )
    result = subprocess.run(
        [sys.executable, *words[1:]], cwd=tmp_path, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    events = EventAccumulator(f"{checkpoint}.saliency", size_guidance={"images": 0})
    events.Reload()
    assert (
        events.Tags()["images"] == ["input_gradient"] and "features" in events.Tags()["histograms"]
    )


def test_every_documented_make_target_exists():
    documented = set(re.findall(r"`make ([a-z-]+)`", ALL_DOCS)) | {
        c.split()[1] for c in commands(ALL_DOCS, "make ")
    }
    assert {"train", "test", "lint", "format", "tensorboard", "clean", "help"} <= documented
    for target in sorted(documented):
        result = subprocess.run(
            ["make", "-n", target], cwd=REPO_ROOT, capture_output=True, text=True
        )
        assert result.returncode == 0, f"make {target}: {result.stderr}"


def test_add_a_model_as_the_readme_says(tmp_path):
    copy = copy_of_the_repository(tmp_path / "repo")
    command = do_the_steps("Add a model", copy)
    assert command == "python train.py model=mlp debug=fast"
    result = run_readme_command(command, copy, tmp_path / "run")
    assert result.returncode == 0, result.stderr[-3000:]
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert state["config"]["model"]["_target_"] == "project.models.mlp.MLP"
    assert state["model"]["layers.1.weight"].shape == (256, 3 * 32 * 32)


def write_image_folder(root: Path, sizes: dict[str, int]) -> None:
    """PNG files and the README's CSV format, drawn from the shapes renderer."""
    root.mkdir(parents=True)
    for split_index, (split, size) in enumerate(sizes.items()):
        images, labels, _ = render_shapes(
            size, 5, 32, 0.08, torch.Generator().manual_seed(split_index)
        )
        rows = ["filename,label"]
        for index, (image, label) in enumerate(zip(images, labels, strict=True)):
            name = f"{split}_{index:04d}.png"
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(root / name)
            rows.append(f"{name},{label.item()}")
        (root / f"{split}.csv").write_text("\n".join(rows) + "\n")


def test_add_a_dataset_as_the_readme_says(tmp_path):
    copy = copy_of_the_repository(tmp_path / "repo")
    command = do_the_steps("Add a dataset", copy)
    assert command == "python train.py dataset=my_images debug=fast"
    write_image_folder(copy / "data" / "my_images", {"train": 600, "val": 200, "test": 200})
    result = run_readme_command(command, copy, tmp_path / "run")
    assert result.returncode == 0, result.stderr[-3000:]
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert state["config"]["dataset"]["_target_"] == "project.data.csv_images.CsvImageDataset"
    assert state["config"]["dataset"]["root"] == "./data/my_images"
    assert state["global_step"] == 4  # debug=fast: 4 batches


@pytest.mark.parametrize("title", ["Add a model", "Add a dataset"])
def test_the_steps_name_files_that_the_template_does_not_have(title):
    for path in titled_blocks(section(title)):
        assert not (REPO_ROOT / path).exists()


def test_models_table_is_what_the_sizes_script_prints():
    result = run_script("benchmarks/model_sizes.py")
    assert result.returncode == 0, result.stderr[-2000:]
    table = result.stdout.strip()
    assert table.count("\n") >= 12
    assert table in section("Models")


def test_the_tensorboard_screenshot_script_makes_the_readme_picture(tmp_path, trained_run):
    [command] = commands(ALL_DOCS, "python docs/tools/tensorboard_screenshot.py")
    assert "](docs/images/tensorboard.png)" in README
    with Image.open(REPO_ROOT / "docs" / "images" / "tensorboard.png") as committed:
        assert committed.size == (1400, 1000)
    out = tmp_path / "shot.png"
    result = subprocess.run(
        [sys.executable, *shlex.split(command)[1:], "--run", str(trained_run), "--out", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if not any(
        shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome", "chrome")
    ):
        # CI has no browser: the script says so in one line, before any training.
        assert result.returncode == 1 and "no Chromium found" in result.stderr
        return
    assert result.returncode == 0, result.stderr[-3000:]
    with Image.open(out) as shot:
        assert shot.size == (1400, 1000)
        # A page with charts, not a blank or error page: many distinct colours.
        assert len(shot.convert("RGB").getcolors(maxcolors=1 << 16) or []) > 50
