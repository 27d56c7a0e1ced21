"""`dataset.cache=true`: every image of a split decoded once and kept in RAM.

The images live in one flat uint8 tensor with NumPy offset and shape arrays beside it:
no Python object per image. DataLoader workers are forked and read the parent's memory
copy-on-write; pixels are only read, so their pages stay shared by every worker. What
does get copied into each worker is any page whose Python objects have their reference
counts touched, which is why per-item Python objects (lists of tensors, of paths) are
avoided here and in image_files.py (pytorch/pytorch#13246). Images may differ in size.
"""

import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import Tensor

log = logging.getLogger(__name__)


class DecodedImages:
    """`read(index)` for every index, decoded in threads (PIL releases the GIL while it
    decodes), then packed. Peak memory while packing is twice the cache size."""

    def __init__(self, read: Callable[[int], Tensor], count: int, threads: int | None = None):
        threads = threads or min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(threads) as pool:
            images = list(pool.map(read, range(count), chunksize=64))
        self.shapes = np.array([image.shape for image in images], dtype=np.int64)
        sizes = self.shapes.prod(axis=1)
        self.offsets = np.concatenate([[0], np.cumsum(sizes)])
        self.buffer = torch.cat([image.reshape(-1) for image in images])

    @property
    def nbytes(self) -> int:
        return self.buffer.numel()

    def __len__(self) -> int:
        return len(self.shapes)

    def __getitem__(self, index: int) -> Tensor:
        start, end = self.offsets[index], self.offsets[index + 1]
        return self.buffer[start:end].view(*self.shapes[index])
