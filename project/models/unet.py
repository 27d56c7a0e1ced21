"""U-Net (Ronneberger et al., 2015) for per-pixel classification.

Each encoder level halves the resolution and doubles the channels; each decoder level
upsamples (`upsample`: interpolate, transposed or pixelshuffle, see upsample.py),
concatenates the encoder features of the same resolution (the skip connection that
restores detail lost by pooling) and fuses them with two 3x3 conv blocks. Inputs whose
size is not divisible by 2^depth work: the upsampled map is padded to its skip's size.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from project.models.blocks import ConvBNAct, spatial_conv
from project.models.upsample import make_upsample


class DoubleConv(nn.Sequential):
    """Two 3x3 conv blocks; the second may be depthwise-separable (`model.depthwise`)."""

    def __init__(self, in_channels: int, out_channels: int, depthwise: bool):
        super().__init__(
            ConvBNAct(in_channels, out_channels, 3),
            spatial_conv(out_channels, out_channels, 1, depthwise),
        )


class UNet(nn.Module):
    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        width: int = 16,
        depth: int = 3,
        upsample: str = "transposed",
        upsample_mode: str = "nearest",
        depthwise: bool = False,
    ):
        super().__init__()
        widths = [width * 2**level for level in range(depth + 1)]
        self.stem = DoubleConv(in_channels, widths[0], depthwise)
        self.down = nn.ModuleList(
            DoubleConv(widths[level], widths[level + 1], depthwise) for level in range(depth)
        )
        self.up = nn.ModuleList(
            make_upsample(upsample, widths[level + 1], widths[level], 2, upsample_mode)
            for level in reversed(range(depth))
        )
        self.fuse = nn.ModuleList(
            DoubleConv(2 * widths[level], widths[level], depthwise)
            for level in reversed(range(depth))
        )
        self.head = nn.Conv2d(widths[0], num_classes, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        skips = [self.stem(x)]
        for block in self.down:
            skips.append(block(F.max_pool2d(skips[-1], 2)))
        features = skips.pop()
        for upsample, fuse in zip(self.up, self.fuse, strict=True):
            skip = skips.pop()
            features = upsample(features)
            # Odd sizes: pooling floored, so the upsampled map can be a pixel short.
            dy, dx = skip.shape[-2] - features.shape[-2], skip.shape[-1] - features.shape[-1]
            if dy or dx:
                features = F.pad(features, (dx // 2, dx - dx // 2, dy // 2, dy - dy // 2))
            features = fuse(torch.cat([skip, features], dim=1))
        return self.head(features)
