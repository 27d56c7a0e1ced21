"""Reading one image file into a uint8 tensor, channels first, in RGB order.

PIL decodes to RGB (grayscale and palette images are converted, an alpha channel is
dropped). OpenCV would hand back BGR: a model trained on one order and fed the other
still runs, just worse, so convert with `image[..., ::-1]` if you ever switch.
"""

import os

from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

# What a truncated, corrupt or non-image file raises inside PIL.
DECODE_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError)


def read_rgb(path: str | os.PathLike, image_size: int | None = None) -> Tensor:
    """(3, H, W) uint8; resized to image_size x image_size when given (a deterministic
    step, so a cached image is exactly what a lazy read returns)."""
    with Image.open(path) as image:
        pixels = TF.pil_to_tensor(image.convert("RGB"))
    if image_size is not None and pixels.shape[1:] != (image_size, image_size):
        pixels = TF.resize(pixels, [image_size, image_size], antialias=True)
    return pixels


def describe_decode_error(error: Exception) -> str:
    if isinstance(error, FileNotFoundError):
        return "file not found"
    return f"cannot be decoded as an image ({type(error).__name__}: {error})"
