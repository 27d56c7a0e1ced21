"""Three ways to upsample a feature map by an integer factor, chosen by `model.upsample`.

- `interpolate`: fixed nearest or bilinear resize, then a 3x3 conv to set the channels.
  No learned upsampling, no checkerboard artifacts; the conv runs at the high resolution.
- `transposed`: ConvTranspose2d with kernel = stride = factor. Learned; with kernel equal
  to stride the kernels do not overlap, which avoids the checkerboard pattern that
  kernel 3 / stride 2 produces (Odena et al., "Deconvolution and Checkerboard Artifacts").
- `pixelshuffle`: a 3x3 conv to out * r^2 channels at the low resolution, then
  PixelShuffle(r) rearranges channels into space (Shi et al., ESPCN). Learned and cheap.

All three map (N, C_in, H, W) to (N, C_out, r*H, r*W) for odd and even H, W.
"""

from torch import nn

UPSAMPLE_KINDS = ("interpolate", "transposed", "pixelshuffle")
INTERPOLATE_MODES = ("nearest", "bilinear")


def make_upsample(
    kind: str, in_channels: int, out_channels: int, factor: int = 2, mode: str = "nearest"
) -> nn.Module:
    if kind == "interpolate":
        if mode not in INTERPOLATE_MODES:
            raise ValueError(
                f"model.upsample_mode={mode!r} is not known; choose one of: "
                f"{', '.join(INTERPOLATE_MODES)}"
            )
        # align_corners=False is the default that matches how pixels are centred in conv
        # feature maps; only bilinear takes the argument.
        resize = nn.Upsample(
            scale_factor=factor, mode=mode, align_corners=False if mode == "bilinear" else None
        )
        return nn.Sequential(resize, nn.Conv2d(in_channels, out_channels, 3, padding=1))
    if kind == "transposed":
        return nn.ConvTranspose2d(in_channels, out_channels, kernel_size=factor, stride=factor)
    if kind == "pixelshuffle":
        return nn.Sequential(
            nn.Conv2d(in_channels, out_channels * factor**2, 3, padding=1),
            nn.PixelShuffle(factor),
        )
    raise ValueError(
        f"model.upsample={kind!r} is not known; choose one of: {', '.join(UPSAMPLE_KINDS)}"
    )
