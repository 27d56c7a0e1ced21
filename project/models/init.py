"""Weight initialization schemes, chosen by `model.init` and applied once after construction.

Conv and linear weights follow the scheme and their biases start at zero; BatchNorm
weights start at 1 and biases at 0. `default` keeps PyTorch's own initialization (Kaiming
uniform with a=sqrt(5) for conv and linear layers), which is what most published code uses.
Kaiming schemes use fan_in and the ReLU gain, so a layer's output variance matches its
input's in the forward pass (He et al., 2015).
"""

import functools
from collections.abc import Callable

from torch import nn

CONV_AND_LINEAR = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.GroupNorm)

WEIGHT_INITS: dict[str, Callable | None] = {
    "default": None,
    "kaiming_normal": functools.partial(
        nn.init.kaiming_normal_, mode="fan_in", nonlinearity="relu"
    ),
    "kaiming_uniform": functools.partial(
        nn.init.kaiming_uniform_, mode="fan_in", nonlinearity="relu"
    ),
    "xavier_normal": nn.init.xavier_normal_,
    "xavier_uniform": nn.init.xavier_uniform_,
    "orthogonal": nn.init.orthogonal_,
    "normal": functools.partial(nn.init.normal_, std=0.01),
    # ViT/ConvNeXt style: std 0.02, cut at two standard deviations.
    "trunc_normal": functools.partial(nn.init.trunc_normal_, std=0.02, a=-0.04, b=0.04),
}


def init_weights(model: nn.Module, scheme: str = "default", zero_init_residual: bool = False):
    """Initialize `model` in place with `scheme`; return it.

    With `zero_init_residual`, every block that names the last BatchNorm of its residual
    branch (a `residual_branch_bn()` method) gets that BN's weight set to 0, so each
    residual block starts as the identity (Goyal et al., 2017): deep nets train more
    stably in the first epochs.
    """
    if scheme not in WEIGHT_INITS:
        raise ValueError(
            f"model.init={scheme!r} is not known; choose one of: {', '.join(WEIGHT_INITS)}"
        )
    weight_init = WEIGHT_INITS[scheme]

    def initialize(module: nn.Module) -> None:
        if isinstance(module, CONV_AND_LINEAR) and weight_init is not None:
            weight_init(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, NORMS) and module.affine:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    model.apply(initialize)
    if zero_init_residual:
        for module in model.modules():
            branch_bn = getattr(module, "residual_branch_bn", None)
            if callable(branch_bn) and branch_bn() is not None:
                nn.init.zeros_(branch_bn().weight)
    return model
