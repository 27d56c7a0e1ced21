"""What a forker expects to find: a license, pre-commit hooks, a CI workflow running the
same command as .ci/run."""

import yaml

from tests.conftest import REPO_ROOT


def test_license_is_mit():
    text = (REPO_ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "WITHOUT WARRANTY OF ANY KIND" in text


def test_pre_commit_runs_ruff_check_and_format():
    config = yaml.safe_load((REPO_ROOT / ".pre-commit-config.yaml").read_text())
    [ruff] = [repo for repo in config["repos"] if "ruff-pre-commit" in repo["repo"]]
    assert {hook["id"] for hook in ruff["hooks"]} == {"ruff-check", "ruff-format"}


def test_github_workflow_is_valid_and_runs_ci_run():
    workflow = yaml.safe_load((REPO_ROOT / ".github" / "workflows" / "ci.yml").read_text())
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert "push" in triggers and "pull_request" in triggers
    [job] = workflow["jobs"].values()
    assert any(step.get("run") == "bash .ci/run" for step in job["steps"])
    assert "make test" in (REPO_ROOT / ".ci" / "run").read_text()
