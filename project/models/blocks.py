"""Convolution building blocks shared by the models.

No conv before a BatchNorm has a bias: BN subtracts the mean right after, so a bias would
be a parameter that cannot change the output.
"""

from torch import Tensor, nn

from project.models.padding import same_padding

ACTIVATIONS = {"relu": nn.ReLU, "relu6": nn.ReLU6, "silu": nn.SiLU, "identity": nn.Identity}


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of `divisor`, never more than 10% below `value`
    (the rule of the MobileNet reference code; hardware likes channel multiples of 8)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class ConvBNAct(nn.Sequential):
    """Conv2d -> BatchNorm2d -> activation, padded so the size is ceil(H_in / stride)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        activation: str = "relu",
        dilation: int = 1,
    ):
        super().__init__(
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=same_padding(kernel_size, stride, dilation),
                dilation=dilation,
                groups=groups,
                bias=False,
            ),
            nn.BatchNorm2d(out_channels),
            ACTIVATIONS[activation](inplace=True) if activation != "identity" else nn.Identity(),
        )
        self.out_channels = out_channels


class DepthwiseSeparableConv(nn.Sequential):
    """Depthwise 3x3 (one filter per channel, carries the stride) then pointwise 1x1.

    Costs in_ch * 9 + in_ch * out_ch weights instead of in_ch * out_ch * 9: about 8-9x
    fewer for the channel counts of MobileNet (see the README's Models table).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, activation="relu"):
        super().__init__(
            ConvBNAct(
                in_channels, in_channels, 3, stride, groups=in_channels, activation=activation
            ),
            ConvBNAct(in_channels, out_channels, 1, activation=activation),
        )
        self.out_channels = out_channels


def spatial_conv(
    in_channels: int, out_channels: int, stride: int, depthwise: bool, activation: str = "relu"
) -> nn.Module:
    """The 3x3 stage of a block: depthwise-separable, or a standard 3x3 conv of the same
    input and output channels (`model.depthwise=false`, for comparison)."""
    if depthwise:
        return DepthwiseSeparableConv(in_channels, out_channels, stride, activation)
    return ConvBNAct(in_channels, out_channels, 3, stride, activation=activation)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand -> 3x3 depthwise -> 1x1 linear projection, with a
    skip connection when the input and output shapes match.

    With `depthwise=False` the 3x3 depthwise conv becomes a standard 3x3 conv over the
    expanded channels, which is what the MobileNet papers compare against.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        expand_ratio: int,
        depthwise: bool = True,
    ):
        super().__init__()
        hidden = int(round(in_channels * expand_ratio))
        self.use_residual = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNAct(in_channels, hidden, 1, activation="relu6"))
        layers.append(
            ConvBNAct(
                hidden, hidden, 3, stride, groups=hidden if depthwise else 1, activation="relu6"
            )
        )
        # No activation after the projection: ReLU on a narrow layer destroys information
        # (the "linear bottleneck" of the MobileNetV2 paper).
        layers += [nn.Conv2d(hidden, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)]
        self.block = nn.Sequential(*layers)
        self.out_channels = out_channels

    def residual_branch_bn(self) -> nn.BatchNorm2d | None:
        """The last BN of the residual branch: zero-initializing it makes the block start as
        the identity (`model.zero_init_residual`, project/models/init.py)."""
        return self.block[-1] if self.use_residual else None

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x) if self.use_residual else self.block(x)
