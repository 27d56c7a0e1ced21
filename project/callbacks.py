"""The seam for optional features that change the model or act when training ends.

A callback is named under `callbacks:` in the config (one file per callback in
configs/callbacks/, selected with `callbacks=<name>`; several with `callbacks=[a,b]`).
The core calls two methods, and nothing else:

- `setup_model(model, cfg, dataset, weights=None)` right after the model is built, in
  train.py and whenever a checkpoint's model is rebuilt (evaluate, export, a teacher);
  `weights` are the checkpoint's when rebuilding, so the callback can shape the model to
  take them. It returns the model to train or evaluate.
- `on_fit_end(trainer, cfg, loaders)` on every rank after `Trainer.fit` returns.

The deployment wing's quantization-aware training (`callbacks=qat`) is one; write your
own by subclassing `Callback` and adding its YAML.
"""

from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn


class Callback:
    def setup_model(
        self, model: nn.Module, cfg: DictConfig, dataset: Any, weights: dict | None = None
    ) -> nn.Module:
        return model

    def on_fit_end(self, trainer: Any, cfg: DictConfig, loaders: dict[str, Any]) -> None:
        pass


def build_callbacks(cfg: DictConfig) -> list[Callback]:
    """The callbacks `cfg.callbacks` names (none when the key is absent or empty)."""
    nodes = cfg.get("callbacks") or {}
    return [instantiate(node) for node in nodes.values()]
