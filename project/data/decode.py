"""Reading one image file into a uint8 tensor, channels first, in RGB order.

PIL decodes to RGB (grayscale and palette images are converted, an alpha channel is
dropped). OpenCV would hand back BGR: a model trained on one order and fed the other
still runs, just worse, so convert with `image[..., ::-1]` if you ever switch.
"""

import os

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

# What a truncated, corrupt or non-image file raises inside PIL; a header claiming more
# pixels than PIL.Image.MAX_IMAGE_PIXELS allows (2x) raises DecompressionBombError.
DECODE_ERRORS = (
    OSError,
    UnidentifiedImageError,
    ValueError,
    SyntaxError,
    Image.DecompressionBombError,
)


class UnsupportedImage(ValueError):
    """A file PIL decodes, but to pixels this project would have to guess how to scale."""


def _to_rgb(image: Image.Image) -> Tensor:
    if image.mode.startswith("I;16"):
        # 16-bit grayscale (PNG, TIFF): PIL's convert("RGB") clips every value above 255
        # to white. Keep the top 8 bits instead: 0..65535 scaled to 0..255.
        eight_bits = (np.asarray(image).astype(np.uint32) >> 8).astype(np.uint8)
        return torch.from_numpy(eight_bits).expand(3, *eight_bits.shape).contiguous()
    if image.mode in ("I", "F"):  # 32-bit integer or float pixels: no agreed 8-bit range
        raise UnsupportedImage(
            f"{'32-bit integer' if image.mode == 'I' else 'floating-point'} pixels (PIL mode "
            f"{image.mode}); save it with 8 or 16 bits per channel"
        )
    return TF.pil_to_tensor(image.convert("RGB"))


def read_rgb(path: str | os.PathLike, image_size: int | None = None) -> Tensor:
    """(3, H, W) uint8; resized to image_size x image_size when given (a deterministic
    step, so a cached image is exactly what a lazy read returns)."""
    with Image.open(path) as image:
        pixels = _to_rgb(image)
    if image_size is not None and pixels.shape[1:] != (image_size, image_size):
        pixels = TF.resize(pixels, [image_size, image_size], antialias=True)
    return pixels


def describe_decode_error(error: Exception) -> str:
    if isinstance(error, FileNotFoundError):
        return "file not found"
    if isinstance(error, Image.DecompressionBombError):
        return f"its header claims too many pixels to decode safely ({error})"
    if isinstance(error, UnsupportedImage):
        return f"unsupported image: {error}"
    return f"cannot be decoded as an image ({type(error).__name__}: {error})"
