"""Conv blocks and the upsampling factory."""

import pytest
import torch
from torch import nn

from project.models.blocks import ConvBNAct, DepthwiseSeparableConv, InvertedResidual
from project.models.upsample import UPSAMPLE_KINDS, make_upsample


def conv_layers(module: nn.Module) -> list[nn.Conv2d]:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


def test_no_conv_before_batchnorm_has_a_bias():
    for block in (
        ConvBNAct(8, 16, 3, 2),
        DepthwiseSeparableConv(8, 16, 2),
        InvertedResidual(16, 16, 1, 6),
    ):
        assert conv_layers(block) and all(conv.bias is None for conv in conv_layers(block))


def test_depthwise_separable_is_depthwise_3x3_then_pointwise_1x1():
    block = DepthwiseSeparableConv(32, 64, stride=2)
    depthwise, pointwise = conv_layers(block)
    assert (depthwise.kernel_size, depthwise.groups, depthwise.stride) == ((3, 3), 32, (2, 2))
    assert (pointwise.kernel_size, pointwise.groups, pointwise.out_channels) == ((1, 1), 1, 64)
    assert block(torch.randn(2, 32, 15, 15)).shape == (2, 64, 8, 8)
    # 32*9 + 32*64 weights against 32*64*9 for a standard 3x3 conv.
    weights = sum(conv.weight.numel() for conv in conv_layers(block))
    assert weights == 32 * 9 + 32 * 64


def test_inverted_residual_adds_the_input_only_when_shapes_match():
    same = InvertedResidual(16, 16, stride=1, expand_ratio=6)
    assert same.use_residual and same.residual_branch_bn() is same.block[-1]
    nn.init.zeros_(same.residual_branch_bn().weight)  # branch outputs 0: block is the identity
    same.eval()
    x = torch.randn(2, 16, 9, 9)
    assert torch.equal(same(x), x)
    strided = InvertedResidual(16, 24, stride=2, expand_ratio=6)
    assert not strided.use_residual and strided.residual_branch_bn() is None
    assert strided(x).shape == (2, 24, 5, 5)
    expanded = conv_layers(InvertedResidual(16, 16, 1, 6, depthwise=False))[1]
    assert expanded.groups == 1 and expanded.in_channels == 96  # standard 3x3 over 6x16


@pytest.mark.parametrize("size", [(8, 8), (7, 9), (1, 1), (15, 16)])
@pytest.mark.parametrize("factor", [2, 3])
def test_every_upsample_kind_gives_the_same_shape(size, factor):
    x = torch.randn(2, 12, *size)
    shapes = set()
    for kind in UPSAMPLE_KINDS:
        for mode in ("nearest", "bilinear") if kind == "interpolate" else ("nearest",):
            shapes.add(tuple(make_upsample(kind, 12, 5, factor, mode)(x).shape))
    assert shapes == {(2, 5, size[0] * factor, size[1] * factor)}


@pytest.mark.parametrize("kind", UPSAMPLE_KINDS)
def test_every_upsample_kind_learns_a_target(kind):
    torch.manual_seed(0)
    upsample = make_upsample(kind, 4, 3, 2, "bilinear")
    x, target = torch.randn(8, 4, 6, 6), torch.randn(8, 3, 12, 12)
    optimizer = torch.optim.Adam(upsample.parameters(), lr=0.01)
    losses = []
    for _ in range(50):
        loss = nn.functional.mse_loss(upsample(x), target)
        optimizer.zero_grad()
        loss.backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in upsample.parameters())
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]


def test_unknown_upsample_kind_and_mode_list_the_valid_ones():
    with pytest.raises(ValueError, match="interpolate, transposed, pixelshuffle"):
        make_upsample("deconv", 4, 4)
    with pytest.raises(ValueError, match="nearest, bilinear"):
        make_upsample("interpolate", 4, 4, mode="bicubic")
