"""Padding helpers against real nn.Conv2d outputs over a grid of sizes and settings."""

import itertools

import pytest
import torch
from torch import nn

from project.models.padding import conv_output_size, same_padding

SIZES = [1, 2, 5, 8, 15, 16, 31, 32]
KERNELS = [1, 2, 3, 4, 5, 7]
STRIDES = [1, 2, 3]
DILATIONS = [1, 2, 3]


def test_output_size_formula_matches_conv2d_over_a_grid():
    checked = 0
    for size, kernel, stride, dilation, padding in itertools.product(
        SIZES, KERNELS, STRIDES, DILATIONS, [0, 1, 2, 3]
    ):
        if size + 2 * padding < dilation * (kernel - 1) + 1:
            continue  # the kernel does not fit: PyTorch refuses, nothing to compare
        conv = nn.Conv2d(1, 1, kernel, stride=stride, padding=padding, dilation=dilation)
        actual = conv(torch.zeros(1, 1, size, size + 1)).shape[-2:]
        assert tuple(actual) == (
            conv_output_size(size, kernel, stride, padding, dilation),
            conv_output_size(size + 1, kernel, stride, padding, dilation),
        ), (size, kernel, stride, dilation, padding)
        checked += 1
    assert checked > 1000


def test_same_padding_keeps_size_at_stride_1_and_gives_ceil_at_larger_strides():
    for size, kernel, stride, dilation in itertools.product(
        SIZES, [1, 3, 5, 7], STRIDES, DILATIONS
    ):
        padding = same_padding(kernel, stride, dilation)
        conv = nn.Conv2d(1, 1, kernel, stride=stride, padding=padding, dilation=dilation)
        out = conv(torch.zeros(1, 1, size, size)).shape[-1]
        assert out == -(-size // stride), (size, kernel, stride, dilation)
        if stride == 1:  # and agrees with PyTorch's own padding="same"
            same = nn.Conv2d(1, 1, kernel, padding="same", dilation=dilation)
            assert same(torch.zeros(1, 1, size, size)).shape[-1] == size


@pytest.mark.parametrize("kernel,dilation", [(2, 1), (4, 1), (2, 3)])
def test_same_padding_refuses_even_effective_kernels(kernel, dilation):
    with pytest.raises(ValueError, match="is even"):
        same_padding(kernel, 1, dilation)
