"""The small default CNN: four conv-BN-ReLU stages, global average pooling, a linear head."""

from torch import Tensor, nn


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    # No conv bias: the BatchNorm right after it has its own shift.
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    """About 61k parameters at width 16; trains on 32x32 shapes in seconds per epoch on a CPU."""

    def __init__(
        self, num_classes: int, in_channels: int = 3, width: int = 16, dropout: float = 0.0
    ):
        super().__init__()
        self.features = nn.Sequential(
            conv_bn_relu(in_channels, width),
            nn.MaxPool2d(2),
            conv_bn_relu(width, 2 * width),
            nn.MaxPool2d(2),
            conv_bn_relu(2 * width, 4 * width),
            nn.MaxPool2d(2),
            conv_bn_relu(4 * width, 4 * width),
        )
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(4 * width, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
