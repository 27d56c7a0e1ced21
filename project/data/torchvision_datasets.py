"""`dataset=cifar10` and `dataset=mnist`: torchvision's classic datasets.

torchvision loads a whole split into one array, so these live in RAM anyway (CIFAR-10
is 180 MB, MNIST 55 MB). They have no validation split: it is a seeded `val_fraction`
of the training set (splits.py), and `test` is the official test set. MNIST's gray
images are repeated to 3 channels, so every model config works unchanged.

Nothing is downloaded unless `dataset.download=true`. With several DDP processes, rank 0
builds the datasets (and downloads) before the others start (loaders.build_datasets).
"""

from collections.abc import Sequence
from pathlib import Path

import torch
import torchvision
from torch import Tensor
from torch.utils.data import Dataset

from project.data.batches import Normalize
from project.data.splits import check_labels, seeded_split
from project.errors import UserError

# Where each dataset's files go under `root`, and how big the download is.
FILES = {
    "CIFAR10": ("cifar-10-batches-py", "the extracted cifar-10-python.tar.gz", "170 MB"),
    "MNIST": ("MNIST/raw", "the four uncompressed idx files", "12 MB"),
}
SPLITS = ("train", "val", "test")


class TorchvisionClassification(Dataset):
    def __init__(
        self,
        split: str,
        name: str,
        root: str,
        num_classes: int = 10,
        download: bool = False,
        val_fraction: float = 0.1,
        seed: int = 0,
        transform=None,
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.25, 0.25, 0.25),
    ):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if name not in FILES:
            raise UserError(
                f"dataset.name={name!r} is not known; choose one of: {', '.join(FILES)}"
            )
        source = load_torchvision_dataset(
            name, Path(root), train=split != "test", download=download
        )
        images = torch.as_tensor(source.data)
        # CIFAR: (N, H, W, 3) NumPy; MNIST: (N, H, W) tensor. Both become (N, C, H, W).
        self.images = images.permute(0, 3, 1, 2) if images.ndim == 4 else images.unsqueeze(1)
        self.labels = torch.as_tensor(source.targets, dtype=torch.int64)
        check_labels(self.labels, num_classes, lambda at: f"{name} {split} image {at}")
        if split != "test":
            chosen = seeded_split(len(self.labels), val_fraction, seed, split)
            self.images, self.labels = self.images[chosen], self.labels[chosen]
        self.classes = tuple(source.classes)
        self.transform = transform
        self.normalize = Normalize(mean, std)

    def __len__(self) -> int:
        return len(self.labels)

    def in_memory_tensors(self) -> tuple[Tensor, Tensor]:
        """The whole split for loader.in_memory (project/data/in_memory.py), as RGB."""
        return self.images.expand(-1, 3, -1, -1), self.labels

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image = self.images[index].expand(3, -1, -1)  # RGB; a view for gray images
        if self.transform is not None:
            image = self.transform(image)
        image = self.normalize(image)
        return image, self.labels[index]


def load_torchvision_dataset(name: str, root: Path, train: bool, download: bool) -> Dataset:
    """torchvision.datasets.<name>, with its errors turned into one line that says where
    the files were expected and how to get them."""
    folder, contents, size = FILES[name]
    expected = root / folder
    cls = getattr(torchvision.datasets, name)
    if not download:
        try:
            return cls(str(root), train=train, download=False)
        except RuntimeError:  # "Dataset not found or corrupted"
            raise UserError(
                f"dataset={name.lower()}: no valid files in {expected}; run with dataset.download=true to download them ({size}), or put {contents} there"
            ) from None
    try:
        return cls(str(root), train=train, download=True)
    except Exception as error:  # network, disk or checksum: all end the same way
        raise UserError(
            f"dataset={name.lower()}: downloading into {expected} failed ({type(error).__name__}: {error}); check the network, or put {contents} there by hand and run with dataset.download=false"
        ) from None
