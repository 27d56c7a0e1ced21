"""Image files on disk: `dataset=image_folder` and `dataset=file_list`.

Both list (path, label) pairs and hand them to `ImageFilesDataset`, which reads them
lazily (`dataset.cache=false`: only the list is in memory, so it scales to datasets far
larger than RAM) or decodes them all once into RAM (`dataset.cache=true`: see
image_cache.py). Either way `__getitem__` returns the same tensors: (3, H, W) float,
RGB, normalized, and an int64 label.

image_folder: `<root>/train/<class>/<image>` (and `val/`, `test/` likewise), torchvision
ImageFolder's semantics: classes are the sorted folder names, files with an image
extension count. Without `<root>/train`, `<root>` itself holds the class folders.
file_list: text files of `relative/path label` lines (paths relative to `root`; blank
lines and `#` comments are skipped), for data that is not arranged in class folders.
A missing validation split is a seeded `val_fraction` of the train split (splits.py).
"""

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from project.data.batches import Normalize
from project.data.decode import DECODE_ERRORS, describe_decode_error, read_rgb
from project.data.image_cache import DecodedImages
from project.data.splits import check_labels, seeded_split
from project.errors import UserError

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")


class ImageFilesDataset(Dataset):
    """Labelled image files, read lazily or cached in RAM. `paths` are absolute or
    relative to the working directory; `split` only names them in messages."""

    def __init__(
        self,
        paths: Sequence[str],
        labels: Sequence[int],
        *,
        split: str,
        classes: Sequence[str],
        image_size: int | None = None,
        cache: bool = False,
        transform=None,
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.25, 0.25, 0.25),
    ):
        # One NumPy byte array, not a list of str: see image_cache.py on forked workers.
        self.paths = np.array([os.fsencode(path) for path in paths], dtype=np.bytes_)
        self.labels = torch.as_tensor(labels, dtype=torch.int64)
        self.split, self.classes, self.image_size = split, tuple(classes), image_size
        self.transform = transform
        self.normalize = Normalize(mean, std)
        self.cache = cache  # read by the data-wait advice (project/trainer/data_wait.py)
        self.decoded = None
        self.first_size: tuple[int, int] | None = None  # with image_size=null
        if cache and len(self.paths):
            self.decoded = DecodedImages(self.read, len(self.paths))
            log.info(
                "dataset.cache: decoded %d %s images into RAM (%.1f MB)",
                len(self.decoded), split, self.decoded.nbytes / 2**20,
            )  # fmt: skip

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, index: int) -> Tensor:
        """Decode image `index` from disk: (3, H, W) uint8 RGB."""
        path = os.fsdecode(self.paths[index])
        try:
            pixels = read_rgb(path, self.image_size)
        except DECODE_ERRORS as error:
            raise UserError(
                f"image {index} of the {self.split} split, {path}: {describe_decode_error(error)}"
            ) from None
        if self.image_size is None:
            self._check_same_size(path, pixels)
        return pixels

    def _check_same_size(self, path: str, pixels: Tensor) -> None:
        """Without dataset.image_size every image must have the first image's size, or
        the batch cannot be stacked: name the file instead of failing inside collate."""
        first = os.fsdecode(self.paths[0])
        if self.first_size is None:
            reference = pixels if path == first else self.read(0)
            self.first_size = tuple(reference.shape[1:])
        if tuple(pixels.shape[1:]) != self.first_size:
            (height, width), (first_height, first_width) = pixels.shape[1:], self.first_size
            raise UserError(
                f"{path} is {width}x{height} pixels but {first} (the {self.split} split's first "
                f"image) is {first_width}x{first_height}; set dataset.image_size=<pixels> to "
                "resize every image to one size"
            )

    def in_memory_tensors(self) -> tuple[Tensor, Tensor] | None:
        """With dataset.cache=true and one image size: the split as one (N, 3, H, W) view
        of the cache, for loader.in_memory (project/data/in_memory.py)."""
        if self.decoded is None or len(np.unique(self.decoded.shapes, axis=0)) != 1:
            return None
        return self.decoded.buffer.view(len(self.decoded), *self.decoded.shapes[0]), self.labels

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image = self.decoded[index] if self.decoded is not None else self.read(index)
        if self.transform is not None:  # only the random part runs per step when cached
            image = self.transform(image)
        image = self.normalize(image)
        return image, self.labels[index]


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def _check_root(root: Path, layout: str) -> None:
    if not root.is_dir():
        raise UserError(f"dataset.root={root} is not a folder; it should hold {layout}")


class ImageFolderDataset(ImageFilesDataset):
    """`<root>/<split>/<class>/<image>`; classes come from the train folder."""

    LAYOUT = "train/<class>/<image> (and val/, test/ likewise), or <class>/<image>"

    def __init__(
        self,
        split: str,
        root: str,
        num_classes: int,
        val_fraction: float = 0.1,
        seed: int = 0,
        **image_options,
    ):
        _check_split(split)
        root = Path(root)
        _check_root(root, self.LAYOUT)
        split_folders = (root / "train").is_dir()
        train_dir = root / "train" if split_folders else root
        classes, class_to_index = find_classes(train_dir)
        if len(classes) != num_classes:
            shown = ", ".join(classes[:10]) + (", ..." if len(classes) > 10 else "")
            raise UserError(
                f"{train_dir} has {len(classes)} class folders ({shown}) but dataset.num_classes={num_classes}; set dataset.num_classes={len(classes)}"
            )
        own_split = root / split if split_folders else None
        if own_split is not None and own_split.is_dir():
            extra = set(find_classes(own_split)[0]) - set(classes)
            if extra:
                raise UserError(
                    f"{own_split} has class folders that {train_dir} lacks: {', '.join(sorted(extra))}"
                )
            samples = self._list(own_split, class_to_index)
        elif split == "test":
            raise UserError(
                f"dataset=image_folder has no test split: {root / 'test'} does not exist (evaluate with split=val, or add that folder)"
            )
        else:  # train, or a val split taken from it
            samples = self._list(train_dir, class_to_index)
            if split == "val" or not (root / "val").is_dir():
                chosen = seeded_split(len(samples), val_fraction, seed, split).tolist()
                samples = [samples[index] for index in chosen]
        paths, labels = zip(*samples, strict=True) if samples else ((), ())
        super().__init__(paths, labels, split=split, classes=classes, **image_options)

    @staticmethod
    def _list(folder: Path, class_to_index: dict[str, int]) -> list[tuple[str, int]]:
        return make_dataset(folder, class_to_index, extensions=IMG_EXTENSIONS, allow_empty=True)


class FileListDataset(ImageFilesDataset):
    """Images named in `<root>/<list file>`, one `relative/path label` per line."""

    def __init__(
        self,
        split: str,
        root: str,
        num_classes: int,
        train_list: str = "train.txt",
        val_list: str | None = "val.txt",
        test_list: str | None = "test.txt",
        val_fraction: float = 0.1,
        seed: int = 0,
        **image_options,
    ):
        _check_split(split)
        root = Path(root)
        _check_root(root, "the list files and the images they name")
        lists = {"train": train_list, "val": val_list, "test": test_list}
        own_list = lists[split]
        if own_list is None and split == "test":
            raise UserError(
                "dataset=file_list has no test split: dataset.test_list is null (evaluate with split=val)"
            )
        derived = val_list is None and split in ("train", "val")  # a seeded share of train
        list_file = root / (train_list if derived else own_list)
        paths, labels, lines = read_list_file(list_file, root)
        check_labels(labels, num_classes, lambda at: f"{list_file} line {lines[at]}")
        if derived:
            chosen = seeded_split(len(paths), val_fraction, seed, split)
            paths, labels = [paths[index] for index in chosen.tolist()], labels[chosen]
        classes = [str(label) for label in range(num_classes)]
        super().__init__(paths, labels, split=split, classes=classes, **image_options)


def read_list_file(list_file: Path, root: Path) -> tuple[list[str], Tensor, list[int]]:
    """Paths (joined to `root`), labels and the line number of each entry."""
    if not list_file.is_file():
        raise UserError(
            f"list file {list_file} not found; it should hold one 'relative/path label' line per image"
        )
    paths, labels, line_numbers = [], [], []
    # utf-8-sig: a list saved by an editor that writes a byte-order mark reads the same.
    with open(list_file, encoding="utf-8-sig") as lines:
        for number, line in enumerate(lines, start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.rsplit(maxsplit=1)  # the path may contain spaces, the label not
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise UserError(
                    f"{list_file} line {number}: expected 'relative/path label' with an integer label, got {line!r}"
                )
            paths.append(str(root / parts[0]))
            labels.append(int(parts[1]))
            line_numbers.append(number)
    return paths, torch.tensor(labels, dtype=torch.int64), line_numbers
