"""The core never imports a wing: a forker deletes project/deploy/ or project/distill/
(and what `make new-project MINIMAL=1` removes with them) and everything else still runs."""

import ast
from pathlib import Path

import project
from tests.conftest import REPO_ROOT

PACKAGE_DIR = Path(project.__file__).parent  # a renamed fork's package too

WINGS = ("project.deploy", "project.distill")
# Entry points of the wings themselves (export.py is the deployment wing's command).
WING_FILES = {"export.py"}


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


def core_files() -> list[Path]:
    package = sorted(PACKAGE_DIR.rglob("*.py"))
    entry_points = sorted(p for p in REPO_ROOT.glob("*.py") if p.name not in WING_FILES)
    wing_folders = [PACKAGE_DIR / wing.split(".", 1)[1] for wing in WINGS]
    return [
        path
        for path in package + entry_points
        if not any(path.is_relative_to(folder) for folder in wing_folders)
    ]


def test_no_core_module_imports_a_wing():
    offenders = {
        str(path.relative_to(REPO_ROOT)): sorted(
            module for module in imported_modules(path) if module.startswith(WINGS)
        )
        for path in core_files()
    }
    offenders = {path: modules for path, modules in offenders.items() if modules}
    assert not offenders, f"core modules import a wing: {offenders}"
    assert len(core_files()) > 40  # the walk found the core


def test_the_rule_would_catch_a_wing_import(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from project.deploy.export import export_and_verify\nimport project.distill\n"
    )
    assert imported_modules(probe) >= {"project.deploy.export", "project.distill"}


def test_the_core_config_tree_names_no_wing_target():
    # configs/ files of the wings are removed with them; no core config may point into one.
    wing_configs = {"callbacks/qat.yaml", "experiment/distill.yaml", "export.yaml", "quantize"}
    for path in sorted((REPO_ROOT / "configs").rglob("*.yaml")):
        relative = path.relative_to(REPO_ROOT / "configs").as_posix()
        if any(relative == c or relative.startswith(f"{c}/") for c in wing_configs):
            continue
        assert not any(wing in path.read_text() for wing in WINGS), relative
