"""Padding arithmetic for convolutions.

PyTorch's output size (nn.Conv2d docs), per spatial dimension:
    H_out = floor((H_in + 2p - d(k - 1) - 1) / s + 1)
"Same" padding keeps H_out = ceil(H_in / s): with stride 1 that is H_out = H_in, and with
stride s it is what TensorFlow's padding="SAME" gives when the sizes divide evenly.
"""


def conv_output_size(
    size: int, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1
) -> int:
    """Spatial output size of a convolution (or pooling) along one dimension."""
    return (size + 2 * padding - dilation * (kernel_size - 1) - 1) // stride + 1


def same_padding(kernel_size: int, stride: int = 1, dilation: int = 1) -> int:
    """Symmetric padding that gives H_out = ceil(H_in / stride) for any H_in.

    The effective kernel spans d(k - 1) + 1 pixels. When that span is odd, p = d(k - 1) / 2
    turns the formula into floor((H_in - 1) / s) + 1 = ceil(H_in / s), for every H_in and s.
    An even span (k=2 or k=4 at d=1) cannot keep the size with the same padding on both
    sides; PyTorch's padding="same" then pads one side more. This helper refuses it rather
    than return a padding that silently shrinks the output.
    """
    span = dilation * (kernel_size - 1)
    if span % 2:
        raise ValueError(
            f"kernel_size={kernel_size}, dilation={dilation}: the effective kernel "
            f"{span + 1} is even, so no symmetric padding keeps the size"
        )
    return span // 2
