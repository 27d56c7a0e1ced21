"""Start a new project from this template: `make new-project NAME=<dir> [PACKAGE=<name>]`.

Copies the files git tracks (so no run outputs, caches, .venv or the template's history)
into a new folder, renames the `project` package if asked, and makes the copy a fresh git
repository with one commit. Standard library only: it runs before any environment exists.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[1]
PACKAGE = "project"
TEXT_SUFFIXES = {".py", ".yaml", ".yml", ".md", ".toml", ".lock", ".cfg", ".txt", ""}


def tracked_files(root: Path) -> list[str]:
    try:
        listing = subprocess.run(
            ["git", "ls-files", "-z"], cwd=root, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        sys.exit(f"error: {root} is not a git checkout; clone the template with git first")
    return [name for name in listing.split("\0") if name and (root / name).is_file()]


def rename_package(text: str, name: str) -> str:
    """References to the package in code, configs and docs; prose ("the project") stays."""
    text = re.sub(
        rf"(?<!\[)\b{PACKAGE}(?=\.[a-z_])", name, text
    )  # project.models...; not [project.*]
    text = re.sub(rf"^(\s*(?:from|import) ){PACKAGE}\b", rf"\g<1>{name}", text, flags=re.M)
    text = re.sub(rf"(?<![\w/.-]){PACKAGE}/", f"{name}/", text)  # paths: project/trainer/...
    text = re.sub(rf'"{PACKAGE}(\*|\[)', rf'"{name}\1', text)  # pyproject include, extras
    return re.sub(rf'(name = )"{PACKAGE}"', rf'\1"{name}"', text)  # pyproject, uv.lock


def create_project(destination: Path, package: str = PACKAGE) -> None:
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", package):
        sys.exit(
            f"error: PACKAGE={package!r} is not a Python package name (lowercase letters, digits, _)"
        )
    if destination.exists() and any(destination.iterdir()):
        sys.exit(f"error: {destination} exists and is not empty; choose a new folder")
    for relative in tracked_files(TEMPLATE):
        target_relative = relative
        if package != PACKAGE and relative.startswith(f"{PACKAGE}/"):
            target_relative = f"{package}/{relative[len(PACKAGE) + 1 :]}"
        target = destination / target_relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(TEMPLATE / relative, target)
        if package != PACKAGE and target.suffix in TEXT_SUFFIXES and target.name != "Makefile":
            target.write_text(rename_package(target.read_text(), package))
    if package != PACKAGE:  # the Makefile runs `python -m project.starter`; keep it working
        makefile = destination / "Makefile"
        makefile.write_text(makefile.read_text().replace(f"-m {PACKAGE}.", f"-m {package}."))
    git = ["git", "-c", "init.defaultBranch=main"]
    identity = {"GIT_AUTHOR_NAME": "template", "GIT_AUTHOR_EMAIL": "template@localhost"}
    env = {**identity, "GIT_COMMITTER_NAME": "template", "GIT_COMMITTER_EMAIL": "template@localhost", **os.environ}  # fmt: skip
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "Start from the PyTorch training template"]):  # fmt: skip
        subprocess.run([*git, *command], cwd=destination, check=True, env=env)
    print(
        f"created {destination} (package {package}), a git repository with one commit.\n"
        f"Next: cd {destination} && make test; then add your dataset and model (README)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("destination", type=Path, help="the new project's folder")
    parser.add_argument("--package", default=PACKAGE, help="rename the Python package")
    args = parser.parse_args()
    create_project(args.destination, args.package)


if __name__ == "__main__":
    main()
