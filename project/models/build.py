"""Build the model from `cfg.model`: instantiate its `_target_`, initialize, freeze.

Besides the constructor's arguments, a model config may hold build options that apply to
any model and are removed before the constructor is called:
    init: default            # weight initialization scheme (project/models/init.py)
    zero_init_residual: false  # start residual blocks as the identity
    freeze: []               # glob patterns of parameter names to freeze, e.g. [features.0.*]
    pretrained: null         # a checkpoint (or state-dict file) whose weights to start from
    pretrained_strict: true  # false: load the tensors that fit, report the rest
"""

import logging
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from project.errors import UserError
from project.models.init import init_weights
from project.models.layers import freeze
from project.models.weights import load_pretrained

log = logging.getLogger(__name__)

BUILD_OPTIONS = ("init", "zero_init_residual", "freeze", "pretrained", "pretrained_strict")


def build_model(model_cfg: DictConfig, initialize: bool = True) -> nn.Module:
    """The model `model_cfg` describes. `initialize=False` skips the init scheme and
    `pretrained`, for callers that load weights right after (evaluate, export, resume)."""
    # Resolved first: `${dataset.num_classes}` needs the whole config, which a copy of
    # the model node alone would not have.
    constructor: dict[str, Any] = OmegaConf.to_container(model_cfg, resolve=True)
    options = {key: constructor.pop(key, None) for key in BUILD_OPTIONS}
    try:
        model = instantiate(constructor, _convert_="all")
        if initialize:
            init_weights(model, options["init"] or "default", bool(options["zero_init_residual"]))
            if options["pretrained"]:
                strict = options["pretrained_strict"] is not False
                load_pretrained(model, options["pretrained"], strict)
        if options["freeze"]:
            freeze(model, options["freeze"])
    except InstantiationException as error:  # Hydra wraps the model's own error
        raise UserError(
            f"model ({model_cfg.get('_target_')}): {error.__cause__ or error}"
        ) from None
    except (ValueError, KeyError) as error:
        raise UserError(f"model ({model_cfg.get('_target_')}): {error}") from None
    return model
