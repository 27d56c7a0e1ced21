"""Start a new project from this template: `make new-project NAME=<dir> [PACKAGE=<name>]
[MINIMAL=1]`.

Clones the template's committed history (so no run outputs, caches or .venv) into a new
folder, renames the `project` package if asked, and commits that on top, with the
template kept as the `template` remote: `make template-update` (git pull template <branch>)
brings the template's later fixes in, through git's rename detection even into a renamed
package. MINIMAL=1 leaves out the optional wings (deployment and
distillation): their code, configs, tests, docs, README passages (marked
`<!-- wing -->` ... `<!-- /wing -->`) and extra dependencies, and re-locks the rest with
uv. Standard library only: it runs before any environment exists.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[1]
PACKAGE = Path(__file__).resolve().parent.name  # "project" here; a fork's own name in a fork
TEXT_SUFFIXES = {".py", ".yaml", ".yml", ".md", ".toml", ".lock", ".cfg", ".txt", ""}
# Everything that belongs to a wing, relative to the template (the package as `project/`).
WING_PATHS = (
    "project/deploy/",
    "project/distill/",
    "export.py",
    "configs/export.yaml",
    "configs/quantize/",
    "configs/callbacks/qat.yaml",
    "configs/experiment/distill.yaml",
    "tests/deploy/",
    "tests/distill/",
    "benchmarks/compression.py",
    "docs/deploy.md",
)
WING_EXTRA = "deploy"  # pyproject's optional dependencies of the wings
# In Markdown: a line that ends with the marker (a table row), or a passage between two.
WING_LINE = re.compile(r"^.*<!-- wing -->[ \t]*\n", re.M)
WING_PASSAGE = re.compile(r"<!-- wing -->.*?<!-- /wing -->", re.S)


def is_wing(relative: str) -> bool:
    return any(relative == p or (p.endswith("/") and relative.startswith(p)) for p in WING_PATHS)


def without_wings(relative: str, text: str) -> str:
    """A kept file's text with its wing passages and the wings' extra dependencies removed."""
    if relative.endswith(".md"):
        return WING_PASSAGE.sub("", WING_LINE.sub("", text))
    if relative == "pyproject.toml":
        text = re.sub(
            rf"^# [^\n]*\n(?:# [^\n]*\n)*{WING_EXTRA} = \[[^\]]*\]\n", "", text, flags=re.M
        )
        return re.sub(rf",{WING_EXTRA}(?=[,\]])", "", text)  # the dev group's extras
    return text


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


def relock(destination: Path) -> None:
    """uv.lock for the reduced pyproject.toml (make test syncs with --frozen)."""
    uv = shutil.which("uv")
    command = [uv, "lock"] if uv else [sys.executable, "-m", "uv", "lock"]
    result = subprocess.run(command, cwd=destination, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"error: uv lock failed in {destination}: {result.stderr.strip()[-500:]}")


def python_lines(folder: Path) -> int:
    return sum(len(path.read_text().splitlines()) for path in folder.rglob("*.py"))


def git(destination: Path, *command: str) -> str:
    identity = {"GIT_AUTHOR_NAME": "template", "GIT_AUTHOR_EMAIL": "template@localhost",
                "GIT_COMMITTER_NAME": "template", "GIT_COMMITTER_EMAIL": "template@localhost"}  # fmt: skip
    result = subprocess.run(
        ["git", *command], cwd=destination, check=True, capture_output=True, text=True,
        env={**identity, **os.environ},
    )  # fmt: skip
    return result.stdout


def create_project(destination: Path, package: str = PACKAGE, minimal: bool = False) -> None:
    """Clone the template's committed history into `destination`, make the new project's
    changes in one commit on top (package rename, wings removed), and keep the template as
    the `template` remote: `make template-update` then merges its later commits."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", package):
        sys.exit(
            f"error: PACKAGE={package!r} is not a Python package name (lowercase letters, digits, _)"
        )
    if destination.exists() and any(destination.iterdir()):
        sys.exit(f"error: {destination} exists and is not empty; choose a new folder")
    tracked_files(TEMPLATE)  # a git checkout, or a one-line error
    branch = git(TEMPLATE, "rev-parse", "--abbrev-ref", "HEAD").strip()
    subprocess.run(
        ["git", "clone", "--quiet", "--origin", "template", "--branch", branch,
         str(TEMPLATE.resolve()), str(destination)],
        check=True,
    )  # fmt: skip
    for relative in tracked_files(destination):
        if minimal and is_wing(relative):
            git(destination, "rm", "-q", "-r", relative)
    if package != PACKAGE:
        git(destination, "mv", PACKAGE, package)
    for relative in tracked_files(destination):
        target = destination / relative
        if target.suffix not in TEXT_SUFFIXES or target.name == "Makefile":
            continue
        text = original = target.read_text()
        if minimal and target.suffix in (".md", ".toml"):
            text = without_wings(relative, text)
        if package != PACKAGE:
            text = rename_package(text, package)
        if text != original:
            target.write_text(text)
    if package != PACKAGE:  # the Makefile runs `python -m project.starter`; keep it working
        makefile = destination / "Makefile"
        makefile.write_text(makefile.read_text().replace(f"-m {PACKAGE}.", f"-m {package}."))
    if minimal:
        relock(destination)
    git(destination, "add", "-A")
    changes = [f"package {package}"] + (["without the wings"] if minimal else [])
    git(destination, "commit", "-q", "--allow-empty", "-m",
        f"Start a project from the training template ({', '.join(changes)})")  # fmt: skip
    print(
        f"created {destination} ({', '.join(changes)}): the template's history plus one "
        f"commit, with the template as remote 'template' (make template-update merges its "
        f"later commits); {python_lines(destination / package):,} lines of Python in "
        f"{package}/, {python_lines(destination):,} in all.\n"
        f"Next: cd {destination} && make test; then add your dataset and model (README)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("destination", type=Path, help="the new project's folder")
    parser.add_argument("--package", default=PACKAGE, help="rename the Python package")
    parser.add_argument("--minimal", action="store_true", help="leave out the optional wings")
    args = parser.parse_args()
    create_project(args.destination, args.package, args.minimal)


if __name__ == "__main__":
    main()
