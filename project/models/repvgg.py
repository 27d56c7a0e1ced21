"""RepVGG (Ding et al., 2021): train with three branches, deploy as a plain 3x3 conv stack.

A training-time block sums a 3x3 conv-BN, a 1x1 conv-BN and (when the shapes allow) a
BN-only identity branch. All three are linear in the input in eval mode, so
`reparameterize(model)` folds each BN into its conv, pads the 1x1 kernel to 3x3, writes the
identity as a 3x3 kernel with a single 1 at the centre, and adds them: one 3x3 conv with a
bias per block. The deploy form computes the same function and runs faster (a single
dense 3x3 per layer; see benchmarks/repvgg.py).
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# (blocks per stage, width multiplier a for stages 1-3, b for stage 4), paper Table 2.
VARIANTS = {
    "A0": ([2, 4, 14, 1], 0.75, 2.5),
    "A1": ([2, 4, 14, 1], 1.0, 2.5),
    "B0": ([4, 6, 16, 1], 1.0, 2.5),
    # Not in the paper: a few blocks and narrow stages for 32x32 generated data on a CPU.
    "tiny": ([1, 2, 2, 1], 0.25, 0.5),
}


def conv_bn(in_channels: int, out_channels: int, kernel_size: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
    )


def fuse_conv_bn(kernel: Tensor, bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """Kernel and bias of conv followed by BN in eval mode:
    BN(Wx) = gamma * (Wx - mean) / std + beta = (gamma / std) W x + (beta - gamma mean / std)."""
    std = (bn.running_var + bn.eps).sqrt()
    scale = bn.weight / std
    return kernel * scale.reshape(-1, 1, 1, 1), bn.bias - bn.running_mean * scale


class RepVGGBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, deploy: bool = False):
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.activation = nn.ReLU(inplace=True)
        if deploy:
            self.reparam = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=True)
            return
        self.conv3x3 = conv_bn(in_channels, out_channels, 3, stride)
        self.conv1x1 = conv_bn(in_channels, out_channels, 1, stride)
        has_identity = in_channels == out_channels and stride == 1
        self.identity = nn.BatchNorm2d(in_channels) if has_identity else None

    @property
    def deployed(self) -> bool:
        return hasattr(self, "reparam")

    def forward(self, x: Tensor) -> Tensor:
        if self.deployed:
            return self.activation(self.reparam(x))
        out = self.conv3x3(x) + self.conv1x1(x)
        if self.identity is not None:
            out = out + self.identity(x)
        return self.activation(out)

    @torch.no_grad()
    def fused_kernel_and_bias(self) -> tuple[Tensor, Tensor]:
        kernel, bias = fuse_conv_bn(self.conv3x3[0].weight, self.conv3x3[1])
        kernel1, bias1 = fuse_conv_bn(self.conv1x1[0].weight, self.conv1x1[1])
        kernel = kernel + F.pad(kernel1, [1, 1, 1, 1])  # 1x1 at the centre of a 3x3
        bias = bias + bias1
        if self.identity is not None:
            identity = torch.zeros_like(kernel)
            channels = torch.arange(self.in_channels)
            identity[channels, channels, 1, 1] = 1.0
            kernel_id, bias_id = fuse_conv_bn(identity, self.identity)
            kernel, bias = kernel + kernel_id, bias + bias_id
        return kernel, bias

    def switch_to_deploy(self) -> None:
        if self.deployed:
            return
        kernel, bias = self.fused_kernel_and_bias()
        reparam = nn.Conv2d(self.in_channels, self.out_channels, 3, self.stride, 1, bias=True)
        reparam.weight.data.copy_(kernel)
        reparam.bias.data.copy_(bias)
        del self.conv3x3, self.conv1x1, self.identity
        self.reparam = reparam.to(kernel.device)


def reparameterize(model: nn.Module) -> nn.Module:
    """Fuse every RepVGG block of `model` in place into its deploy form; return the model.
    The result computes the same function as the training form in eval mode."""
    for module in model.modules():
        if isinstance(module, RepVGGBlock):
            module.switch_to_deploy()
    return model


class RepVGG(nn.Module):
    def __init__(
        self, num_classes: int, variant: str = "tiny", in_channels: int = 3, deploy: bool = False
    ):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(
                f"model.variant={variant!r} is not known; choose one of: {', '.join(VARIANTS)}"
            )
        blocks, a, b = VARIANTS[variant]
        widths = [int(64 * a), int(128 * a), int(256 * a), int(512 * b)]
        channels = min(64, int(64 * a))
        layers = [RepVGGBlock(in_channels, channels, stride=2, deploy=deploy)]
        for stage_blocks, width in zip(blocks, widths, strict=True):
            for index in range(stage_blocks):
                layers.append(RepVGGBlock(channels, width, 2 if index == 0 else 1, deploy))
                channels = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
