"""MobileNetV1 (Howard et al., 2017) and MobileNetV2 (Sandler et al., 2018).

`depthwise=False` replaces each depthwise-separable stage with a standard 3x3 conv of
the same input and output channels: the comparison of the V1 paper's Table 4 (29.3M
parameters instead of 4.2M at 224x224, 1000 classes). In V2, the 3x3 depthwise conv inside
each inverted residual becomes a standard 3x3 conv over the expanded channels.
"""

from torch import Tensor, nn

from project.models.blocks import ConvBNAct, InvertedResidual, make_divisible, spatial_conv

# (output channels, stride) of V1's 13 depthwise-separable layers (paper, Table 1).
V1_LAYERS = [
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
]  # fmt: skip

# (expansion t, output channels c, repeats n, first stride s) of V2 (paper, Table 2).
V2_LAYERS = [
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
    (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
]  # fmt: skip


class MobileNet(nn.Module):
    """MobileNet V1 or V2 for classification; the stem has stride 2, the body 16 more."""

    def __init__(
        self,
        num_classes: int,
        version: int = 2,
        width_mult: float = 1.0,
        depthwise: bool = True,
        in_channels: int = 3,
        dropout: float = 0.2,
    ):
        super().__init__()
        if version not in (1, 2):
            raise ValueError(f"model.version={version} is not known; choose 1 or 2")
        if width_mult <= 0:
            raise ValueError(f"model.width_mult={width_mult} must be positive")

        def width(channels: int) -> int:
            return make_divisible(channels * width_mult)

        if version == 1:
            channels = width(32)
            layers: list[nn.Module] = [ConvBNAct(in_channels, channels, 3, stride=2)]
            for out, stride in V1_LAYERS:
                layers.append(spatial_conv(channels, width(out), stride, depthwise))
                channels = width(out)
        else:
            channels = width(32)
            layers = [ConvBNAct(in_channels, channels, 3, stride=2, activation="relu6")]
            for expansion, out, repeats, first_stride in V2_LAYERS:
                for index in range(repeats):
                    stride = first_stride if index == 0 else 1
                    layers.append(
                        InvertedResidual(channels, width(out), stride, expansion, depthwise)
                    )
                    channels = width(out)
            # The last 1x1 conv keeps 1280 channels when the net is thinner (paper, sec. 5.1).
            last = make_divisible(1280 * max(1.0, width_mult))
            layers.append(ConvBNAct(channels, last, 1, activation="relu6"))
            channels = last

        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(channels, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
