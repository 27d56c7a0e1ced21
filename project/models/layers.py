"""Find layers by name and freeze parameters by name pattern (`model.freeze`)."""

import fnmatch
from collections.abc import Iterable

from torch import nn


def find_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule at a qualified name such as `features.3.block.1`, with an error that
    lists the names one level down from the deepest part that exists."""
    try:
        return model.get_submodule(name)
    except AttributeError:
        parts = name.split(".")
        parent = model
        for depth, part in enumerate(parts):
            children = dict(parent.named_children())
            if part not in children:
                prefix = ".".join(parts[:depth])
                options = ", ".join(f"{prefix}.{c}" if prefix else c for c in children)
                raise KeyError(
                    f"no layer named {name!r}; layers under {prefix or 'the model'}: "
                    f"{options or '(none)'}"
                ) from None
            parent = children[part]
        raise


def freeze(model: nn.Module, patterns: Iterable[str]) -> list[str]:
    """Set requires_grad=False on parameters whose name matches any glob pattern
    (`backbone.*`, `*.bn*`); return the frozen names.

    A pattern that matches nothing is an error: a typo would otherwise silently train
    everything. Frozen BatchNorm layers still update their running statistics in train
    mode; put them in eval mode as well if that matters.
    """
    patterns = list(patterns)
    names = [name for name, _ in model.named_parameters()]
    for pattern in patterns:
        if not fnmatch.filter(names, pattern):
            examples = ", ".join(names[:5])
            raise ValueError(
                f"model.freeze pattern {pattern!r} matches no parameter; names look like: {examples}, ..."
            )
    frozen = []
    for name, parameter in model.named_parameters():
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns):
            parameter.requires_grad_(False)
            frozen.append(name)
    return frozen
