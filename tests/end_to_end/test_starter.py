"""`make new-project` gives a fresh repository whose renamed package still works."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import project
from tests.conftest import REPO_ROOT

PACKAGE_DIR = Path(project.__file__).parent  # "project", or a fork's renamed package


def new_project(tmp_path, package: str = "my_project"):
    destination = tmp_path / "my-project"
    result = subprocess.run(
        ["make", "new-project", f"NAME={destination}", f"PACKAGE={package}"],
        cwd=REPO_ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return destination


def git(folder, *args) -> str:
    return subprocess.run(
        ["git", *args], cwd=folder, capture_output=True, text=True, check=True
    ).stdout


def test_new_project_is_a_fresh_renamed_repository_whose_tests_pass(tmp_path):
    (REPO_ROOT / "logs").mkdir(exist_ok=True)  # run outputs a user has lying around
    copy = new_project(tmp_path)
    history = git(copy, "log", "--format=%s").splitlines()
    template_history = git(REPO_ROOT, "log", "--format=%s").splitlines()
    assert history[1:] == template_history  # the template's history, one commit on top
    assert history[0] == "Start a project from the training template (package my_project)"
    assert git(copy, "remote").split() == ["template"]
    assert git(copy, "status", "--porcelain") == ""
    assert not (copy / "logs").exists() and not (copy / ".venv").exists()
    assert not list(copy.rglob("__pycache__"))
    assert (copy / "my_project" / "trainer" / "base.py").is_file() and not (
        copy / "project"
    ).exists()
    assert 'name = "my_project"' in (copy / "pyproject.toml").read_text()
    assert "[project]" in (copy / "pyproject.toml").read_text()  # the TOML table stays
    assert (
        "_target_: my_project.models.cnn.SmallCNN" in (copy / "configs/model/cnn.yaml").read_text()
    )
    old_import = re.compile(r"^\s*(from|import) project\b", re.M)
    leftovers = [path for path in copy.rglob("*.py") if old_import.search(path.read_text())]
    assert leftovers == []
    # The renamed package imports, composes its configs and builds its models: the config
    # tests of the copy, with this environment's packages.
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/end_to_end/test_configs.py"],
        cwd=copy, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(copy)},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]


def test_new_project_refuses_a_non_empty_folder_and_a_bad_package_name(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("mine")
    for name, package, message in (
        (tmp_path / "taken", "ok", "exists and is not empty"),
        (tmp_path / "fresh", "My-Project", "is not a Python package name"),
    ):
        result = subprocess.run(
            ["make", "new-project", f"NAME={name}", f"PACKAGE={package}"],
            cwd=REPO_ROOT, capture_output=True, text=True,
        )  # fmt: skip
        assert result.returncode != 0 and message in result.stderr
    assert (tmp_path / "taken" / "file").read_text() == "mine"


@pytest.mark.slow
def test_the_new_projects_make_test_passes(tmp_path):
    copy = new_project(tmp_path)
    result = subprocess.run(
        ["make", "test"], cwd=copy, capture_output=True, text=True, timeout=3600
    )
    assert result.returncode == 0, result.stdout[-3000:]


@pytest.mark.slow  # creates an environment and runs the fork's own test suite
def test_a_minimal_fork_has_no_wings_and_its_make_test_passes(tmp_path):
    copy = tmp_path / "minimal"
    result = subprocess.run(
        ["make", "new-project", f"NAME={copy}", "MINIMAL=1"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert re.search(
        r"without the wings\): the template's history plus one commit.*; [\d,]+ lines",
        result.stdout,
    )
    for wing in (
        "project/deploy",
        "project/distill",
        "export.py",
        "tests/deploy",
        "configs/callbacks/qat.yaml",
        "configs/experiment/distill.yaml",
    ):
        assert not (copy / wing).exists(), wing
    assert "deploy" not in (copy / "pyproject.toml").read_text()
    assert "onnxruntime" not in (copy / "uv.lock").read_text()
    readme = (copy / "README.md").read_text()
    assert "wing -->" not in readme and "export.py" not in readme
    assert git(copy, "status", "--porcelain") == ""
    result = subprocess.run(
        ["make", "test"], cwd=copy, capture_output=True, text=True, timeout=3600
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert re.search(r"\d+ passed", result.stdout)


def test_a_fork_takes_the_templates_later_fixes_into_its_renamed_package(tmp_path):
    template = tmp_path / "template"
    subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(template)], check=True)
    fork = tmp_path / "fork"
    made = subprocess.run(
        ["make", "new-project", f"NAME={fork}", "PACKAGE=my_project"],
        cwd=template, capture_output=True, text=True,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    # The template fixes something after the fork was made.
    base = template / PACKAGE_DIR.name / "trainer" / "base.py"
    base.write_text(base.read_text() + "\n# a later fix of the template\n")
    identity = ["-c", "user.name=t", "-c", "user.email=t@localhost"]
    subprocess.run(["git", *identity, "commit", "-qam", "A later fix"], cwd=template, check=True)
    env = {**os.environ, "GIT_AUTHOR_NAME": "f", "GIT_AUTHOR_EMAIL": "f@localhost",
           "GIT_COMMITTER_NAME": "f", "GIT_COMMITTER_EMAIL": "f@localhost"}  # fmt: skip
    updated = subprocess.run(
        ["make", "template-update"], cwd=fork, capture_output=True, text=True, env=env
    )
    assert updated.returncode == 0, updated.stdout + updated.stderr
    merged = (fork / "my_project" / "trainer" / "base.py").read_text()
    assert merged.endswith("# a later fix of the template\n")
    assert "from my_project.checkpoint.policy import" in merged  # the fork's rename kept
    assert not (fork / "project").exists() and git(fork, "status", "--porcelain") == ""
    assert "A later fix" in git(fork, "log", "--format=%s")
