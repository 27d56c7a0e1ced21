"""Small dataset files written by the tests: image folders with list files, and the
torchvision layouts of MNIST and CIFAR-10 (random pixels, nothing downloaded)."""

import pickle
from pathlib import Path

import numpy as np

from project.data.shapes_files import write_shapes_files

SIZES = {"train": 200, "val": 40, "test": 40}


def write_image_files(root: Path, sizes: dict[str, int] = SIZES) -> Path:
    """`<root>/<split>/<shape>/<n>.png` plus `<root>/<split>.txt`, 5 classes, 32x32."""
    write_shapes_files(root, sizes)
    return root


def write_mnist(root: Path, train: int = 120, test: int = 30, num_classes: int = 10) -> None:
    """The four uncompressed idx files torchvision's MNIST reads from `<root>/MNIST/raw`."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, count in (("train", train), ("t10k", test)):
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        labels = (np.arange(count) % num_classes).astype(np.uint8)
        # idx format: magic (0x0803 images, 0x0801 labels), big-endian int32 dimensions.
        header = np.array([0x0803, count, 28, 28], dtype=">i4").tobytes()
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(header + images.tobytes())
        header = np.array([0x0801, count], dtype=">i4").tobytes()
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(header + labels.tobytes())


def write_cifar10(root: Path, per_batch: int = 40, test: int = 40) -> None:
    """CIFAR-10's pickled batches under `<root>/cifar-10-batches-py`. Their checksums
    cannot match the real files', so tests that read them patch the check."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{n}" for n in range(1, 6)] + ["test_batch"]
    for name in names:
        count = test if name == "test_batch" else per_batch
        batch = {
            "data": rng.integers(0, 256, (count, 3 * 32 * 32), dtype=np.uint8),
            "labels": [index % 10 for index in range(count)],
        }
        (folder / name).write_bytes(pickle.dumps(batch))
    meta = {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]}  # fmt: skip
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
