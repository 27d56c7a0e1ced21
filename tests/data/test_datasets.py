"""Datasets read from disk: image folders, list files, MNIST and CIFAR-10 in torchvision's
layout, the RAM cache, seeded validation splits, and the errors bad data gets."""

from pathlib import Path

import pytest
import torch
import torchvision.datasets.cifar
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from project.data.decode import read_rgb
from project.data.image_cache import DecodedImages
from project.data.image_files import ImageFolderDataset
from project.data.loaders import build_dataset
from project.data.splits import seeded_split
from project.data.torchvision_datasets import TorchvisionClassification
from project.errors import USER_ERROR_EXIT_CODE, UserError, exit_on_user_error
from tests.conftest import compose_config
from tests.data_files import SIZES, write_cifar10, write_image_files, write_mnist


@pytest.fixture(scope="module")
def image_root(tmp_path_factory):
    return write_image_files(tmp_path_factory.mktemp("images"))


def dataset_config(option: str, root, *overrides: str):
    return compose_config("train", [f"dataset={option}", f"dataset.root={root}", *overrides])


def test_images_are_decoded_to_rgb_whatever_the_file_mode(tmp_path):
    Image.new("RGB", (4, 3), (255, 0, 0)).save(tmp_path / "red.png")
    Image.new("L", (4, 3), 77).save(tmp_path / "gray.png")
    Image.new("RGBA", (4, 3), (0, 0, 255, 10)).save(tmp_path / "blue.png")
    red, gray, blue = (read_rgb(tmp_path / f"{name}.png") for name in ("red", "gray", "blue"))
    assert red.dtype == torch.uint8 and red.shape == (3, 3, 4)  # channels first, H x W
    assert red[:, 0, 0].tolist() == [255, 0, 0]  # R first: not OpenCV's BGR
    assert gray[:, 0, 0].tolist() == [77, 77, 77]
    assert blue[:, 0, 0].tolist() == [0, 0, 255]  # alpha dropped
    assert read_rgb(tmp_path / "red.png", image_size=8).shape == (3, 8, 8)


def test_image_folder_follows_torchvision_semantics(image_root):
    cfg = dataset_config("image_folder", image_root, "dataset.num_classes=5")
    datasets = {split: build_dataset(cfg.dataset, split) for split in ("train", "val", "test")}
    assert {split: len(data) for split, data in datasets.items()} == SIZES
    reference = torchvision.datasets.ImageFolder(image_root / "train")
    assert datasets["train"].classes == tuple(reference.classes)  # sorted folder names
    assert datasets["train"].labels.tolist() == reference.targets
    image, label = datasets["val"][3]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert label.dtype == torch.int64


def test_file_list_reads_the_same_images_as_the_folders(image_root):
    folder = build_dataset(
        dataset_config("image_folder", image_root, "dataset.num_classes=5").dataset, "test"
    )
    listed = build_dataset(
        dataset_config("file_list", image_root, "dataset.num_classes=5").dataset, "test"
    )
    assert len(listed) == len(folder) == SIZES["test"]
    # The same files with the same labels; the folder dataset orders them by class, the
    # list by line.
    by_path = dict(zip(listed.paths, listed.labels.tolist(), strict=True))
    assert by_path == dict(zip(folder.paths, folder.labels.tolist(), strict=True))


@pytest.mark.parametrize("option", ["image_folder", "file_list"])
def test_the_ram_cache_returns_exactly_what_lazy_reading_returns(image_root, option):
    overrides = ["dataset.num_classes=5", "dataset.transforms.train=null"]
    lazy = build_dataset(dataset_config(option, image_root, *overrides).dataset, "train")
    cached = build_dataset(
        dataset_config(option, image_root, *overrides, "dataset.cache=true").dataset, "train"
    )
    assert lazy.decoded is None and cached.decoded.nbytes == SIZES["train"] * 3 * 32 * 32
    for index in (0, 57, len(lazy) - 1):
        assert torch.equal(lazy[index][0], cached[index][0])
        assert lazy[index][1] == cached[index][1]


def test_random_transforms_still_run_per_item_on_cached_images(image_root):
    cfg = dataset_config("image_folder", image_root, "dataset.num_classes=5", "dataset.cache=true")
    cfg.dataset.transforms.train.p = 1.0  # always flip
    flipped = build_dataset(cfg.dataset, "train")
    assert torch.equal(
        flipped[5][0], flipped.decoded[5].flip(-1).float().div(255).sub(0.5).div(0.25)
    )


class PrivateMemory(Dataset):
    """One item: this worker's private dirty memory (kB) before and after it read every
    cached image in full."""

    def __init__(self, images: DecodedImages):
        self.images = images

    def __len__(self) -> int:
        return 1

    @staticmethod
    def private_dirty_kb() -> int:
        with open("/proc/self/smaps_rollup") as lines:
            return next(int(line.split()[1]) for line in lines if line.startswith("Private_Dirty:"))

    def __getitem__(self, index: int) -> torch.Tensor:
        before = self.private_dirty_kb()
        checksum = sum(int(self.images[i].sum()) for i in range(len(self.images)))
        return torch.tensor([before, self.private_dirty_kb(), checksum])


@pytest.mark.skipif(
    not __import__("os").path.exists("/proc/self/smaps_rollup"), reason="Linux memory accounting"
)
def test_loader_workers_share_the_cache_instead_of_copying_it():
    images = DecodedImages(lambda i: torch.full((3, 96, 96), i % 256, dtype=torch.uint8), 1500)
    cache_kb = images.nbytes // 1024  # 40 MB
    loader = DataLoader(PrivateMemory(images), batch_size=None, num_workers=2)
    for before, after, checksum in loader:
        assert checksum == sum((i % 256) * 3 * 96 * 96 for i in range(1500))  # it did read all
        assert after - before < 0.1 * cache_kb, (before, after, cache_kb)


def test_validation_split_is_seeded_and_independent_of_the_run_seed(image_root):
    train = seeded_split(100, 0.2, seed=0, split="train")
    val = seeded_split(100, 0.2, seed=0, split="val")
    assert len(val) == 20 and set(train.tolist()) | set(val.tolist()) == set(range(100))
    assert not set(train.tolist()) & set(val.tolist())
    assert torch.equal(val, seeded_split(100, 0.2, seed=0, split="val"))  # every run, every rank
    assert not torch.equal(val, seeded_split(100, 0.2, seed=1, split="val"))

    # A list file without its own val list: the val split is 10% of train.txt, the same
    # whatever the run's seed is.
    overrides = ["dataset.num_classes=5", "dataset.val_list=null"]
    first = build_dataset(
        dataset_config("file_list", image_root, *overrides, "seed=1").dataset, "val"
    )
    second = build_dataset(
        dataset_config("file_list", image_root, *overrides, "seed=2").dataset, "val"
    )
    train = build_dataset(dataset_config("file_list", image_root, *overrides).dataset, "train")
    assert len(first) == SIZES["train"] // 10 and list(first.paths) == list(second.paths)
    assert len(train) + len(first) == SIZES["train"]
    assert not set(train.paths) & set(first.paths)


def test_mnist_and_cifar10_read_torchvision_files(tmp_path, monkeypatch):
    write_mnist(tmp_path)
    write_cifar10(tmp_path)
    # The generated CIFAR files cannot match the real files' checksums.
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *args: True)
    for option, train_total, shape in (("mnist", 120, (3, 28, 28)), ("cifar10", 200, (3, 32, 32))):
        cfg = dataset_config(option, tmp_path).dataset
        train, val, test = (build_dataset(cfg, split) for split in ("train", "val", "test"))
        assert (len(train), len(val), len(test)) == (
            train_total * 9 // 10,
            train_total // 10,
            test.labels.numel(),
        )
        image, label = val[0]
        assert image.shape == shape and 0 <= label < 10
    gray, _ = TorchvisionClassification("test", "MNIST", str(tmp_path))[0]
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])  # gray to RGB


# ---- bad data: each error names the file and what to do, and exits with code 2 -------


def user_error_exit(capsys, build) -> str:
    """Run `build` the way the entry points do; return what the user reads on stderr."""
    with pytest.raises(SystemExit) as exit_info, exit_on_user_error():
        build()
    assert exit_info.value.code == USER_ERROR_EXIT_CODE
    return capsys.readouterr().err.strip()


def test_missing_torchvision_files_say_where_they_belong_and_how_to_get_them(tmp_path, capsys):
    cfg = dataset_config("cifar10", tmp_path).dataset
    message = user_error_exit(capsys, lambda: build_dataset(cfg, "train"))
    assert f"no valid files in {tmp_path / 'cifar-10-batches-py'}" in message
    assert "dataset.download=true" in message and "Traceback" not in message


def test_a_failed_download_says_what_failed_and_the_alternative(tmp_path, capsys, monkeypatch):
    def no_network(self):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", no_network)
    cfg = dataset_config("mnist", tmp_path, "dataset.download=true").dataset
    message = user_error_exit(capsys, lambda: build_dataset(cfg, "train"))
    assert (
        f"downloading into {tmp_path / 'MNIST' / 'raw'} failed (OSError: Network is unreachable)"
        in message
    )
    assert "dataset.download=false" in message


def test_a_bad_list_line_names_the_file_and_line(tmp_path, capsys):
    write_image_files(tmp_path, {"train": 5})
    lines = (tmp_path / "train.txt").read_text().splitlines()
    lines[2] = lines[2].rsplit(" ", 1)[0]  # the label is missing
    (tmp_path / "train.txt").write_text("# path label\n" + "\n".join(lines) + "\n")
    cfg = dataset_config("file_list", tmp_path, "dataset.num_classes=5").dataset
    message = user_error_exit(capsys, lambda: build_dataset(cfg, "train"))
    assert f"{tmp_path / 'train.txt'} line 4: expected 'relative/path label'" in message


def test_a_label_outside_num_classes_is_reported_before_training(image_root, capsys):
    cfg = dataset_config("file_list", image_root, "dataset.num_classes=3").dataset
    message = user_error_exit(capsys, lambda: build_dataset(cfg, "train"))
    first_bad = next(
        number
        for number, line in enumerate((image_root / "train.txt").read_text().splitlines(), 1)
        if int(line.split()[-1]) >= 3
    )
    assert (
        f"train.txt line {first_bad}: label" in message
        and "outside 0..2 (dataset.num_classes=3)" in message
    )
    cfg = dataset_config("image_folder", image_root, "dataset.num_classes=3").dataset
    message = user_error_exit(capsys, lambda: build_dataset(cfg, "train"))
    assert (
        "has 5 class folders (0_circle, 1_triangle, 2_square, 3_cross, 4_ring) but dataset.num_classes=3"
        in message
    )


def test_an_empty_dataset_is_reported_before_training(tmp_path, capsys):
    for shape in ("0_circle", "1_square"):
        (tmp_path / "train" / shape).mkdir(parents=True)
    cfg = dataset_config("image_folder", tmp_path, "dataset.num_classes=2").dataset
    message = user_error_exit(capsys, lambda: build_dataset(cfg, "train"))
    assert (
        message
        == f"error: dataset split 'train' is empty (project.data.image_files.ImageFolderDataset) under dataset.root={tmp_path}; it needs at least one sample"
    )


def test_a_corrupt_or_missing_image_names_its_file_and_index(tmp_path):
    write_image_files(tmp_path, {"train": 6, "val": 2})
    classes = len(list((tmp_path / "train").iterdir()))  # the shapes 6 random draws gave
    dataset = ImageFolderDataset("train", str(tmp_path), num_classes=classes)
    corrupt, missing = (Path(path.decode()) for path in dataset.paths[[4, 5]])
    corrupt.write_bytes(b"not a png")
    missing.unlink()
    with pytest.raises(
        UserError,
        match=rf"^image 4 of the train split, {corrupt}: cannot be decoded as an image \(UnidentifiedImageError",
    ):
        dataset[4]
    with pytest.raises(
        UserError, match=rf"^image 5 of the train split, {missing}: file not found$"
    ):
        dataset[5]
