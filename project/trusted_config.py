"""A config read from a file is data: check it before anything is built from it.

`hydra.utils.instantiate` calls whatever a `_target_` names, with the arguments beside it,
so a checkpoint whose saved config says `_target_: pathlib.Path.write_text` would write a
file when evaluate.py rebuilds its model. Loading with `weights_only=True` does not stop
that: the config is plain strings. So every config that comes from a file (a checkpoint's,
for evaluate.py, export.py, predict.py, `resume=`, `model.pretrained=`, a distillation
teacher) passes `check_trusted` first. It refuses, naming the key path:

- a `_target_` that is not one this project knows (`is_trusted_target`): one written in
  the repository's own `configs/` tree (so a fork trusts a model by adding its YAML), a
  class of the project package that is a model or dataset, or a class in the short list
  below (torchvision's v2 transforms, torch's optimizers and LR schedulers);
- any OmegaConf interpolation or resolver (`${...}`): a saved config is stored resolved,
  and a resolver reads the environment or runs registered functions.

Hydra's other special keys (`_args_`, `_partial_`, `_convert_`, `_recursive_`) only
change how an already-checked target is called; the targets nested in them are checked
like any other. Names are checked as strings before any import, so a refused name is
never imported either.
"""

import functools
import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from hydra.utils import get_object

from project.errors import UserError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"

# Modules whose classes of the right kind are trusted, and the kinds (checked by import
# only for names under these prefixes).
TRUSTED_CLASS_MODULES: dict[str, tuple[str, ...]] = {
    "project.models.": ("torch.nn.Module",),
    "project.data.": ("torch.utils.data.Dataset",),
    "torchvision.transforms.v2.": ("torchvision.transforms.v2.Transform",),
    "torch.optim.lr_scheduler.": ("torch.optim.lr_scheduler.LRScheduler",),
    "torch.optim.": ("torch.optim.Optimizer",),
}
# Transforms that call an arbitrary function given to them.
UNTRUSTED_NAMES = frozenset({"torchvision.transforms.v2.Lambda"})


def _targets_in(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        target = node.get("_target_")
        if isinstance(target, str):
            yield target
        for value in node.values():
            yield from _targets_in(value)
    elif isinstance(node, list):
        for value in node:
            yield from _targets_in(value)


@functools.cache
def config_tree_targets(config_dir: Path = CONFIG_DIR) -> frozenset[str]:
    """Every `_target_` written in the project's own config files."""
    targets = set()
    for path in sorted(config_dir.rglob("*.yaml")):
        targets.update(_targets_in(yaml.safe_load(path.read_text())))
    return frozenset(targets)


@functools.cache
def is_trusted_target(target: str) -> bool:
    if target in UNTRUSTED_NAMES:
        return False
    if target in config_tree_targets():
        return True
    kinds = next(
        (kinds for prefix, kinds in TRUSTED_CLASS_MODULES.items() if target.startswith(prefix)),
        None,
    )
    if kinds is None:
        return False  # not imported: importing a module can run its code
    try:
        found = get_object(target)
    except Exception:  # Hydra raises ImportError or ValueError for names that do not exist
        return False
    return inspect.isclass(found) and any(issubclass(found, get_object(kind)) for kind in kinds)


def _untrusted(node: Any, path: str) -> Iterator[tuple[str, str]]:
    """(key path, reason) for each refused part of `node`."""
    if isinstance(node, dict):
        for key, value in node.items():
            key_path = f"{path}.{key}" if path else str(key)
            if key == "_target_":
                if not isinstance(value, str):
                    yield key_path, f"{value!r} is not a name"
                elif not is_trusted_target(value):
                    yield key_path, f"{value!r} is not a target this project knows"
            else:
                yield from _untrusted(value, key_path)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _untrusted(value, f"{path}[{index}]")
    elif isinstance(node, str) and "${" in node:
        yield path, f"{node!r} is an interpolation; a saved config holds resolved values"


def check_trusted(config: Any, source: Path | str) -> None:
    """Raise a one-line `UserError` naming the first refused key of `config` (a plain
    dict read from `source`); return quietly when everything in it is known."""
    refused = next(_untrusted(config, ""), None)
    if refused is not None:
        key_path, reason = refused
        raise UserError(
            f"refused {source}: its config key {key_path}: {reason} (targets must appear in "
            "configs/, or be a model, dataset, transform, optimizer or scheduler class; "
            "see README 'Reliability')"
        )
