"""Procedurally generated shapes: the embedded default dataset.

Each image is one coloured shape on a noisy background of another colour; the
class is the shape. Everything is drawn from a seeded generator, so every run,
machine and rank sees the same pixels, and nothing is downloaded or read from disk.
The renderer also returns the per-pixel mask, which the segmentation task reuses.
"""

import math

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import tv_tensors

from project.data.batches import Normalize

SHAPES = ("circle", "triangle", "square", "cross", "ring")
SPLITS = ("train", "val", "test")


def _shape_masks(u: Tensor, v: Tensor, radius: Tensor) -> Tensor:
    """Boolean masks of every shape, stacked on dim 0, in each sample's rotated frame."""
    dist2 = u * u + v * v
    circle = dist2 <= radius**2
    # An equilateral triangle is the intersection of three half-planes; its apothem is r/2.
    triangle = torch.ones_like(circle)
    for k in range(3):
        angle = math.pi / 2 + 2 * math.pi * k / 3
        triangle &= (u * math.cos(angle) + v * math.sin(angle)) <= radius / 2
    square = torch.maximum(u.abs(), v.abs()) <= radius * 0.75
    arm = radius * 0.3
    cross = ((u.abs() <= arm) & (v.abs() <= radius)) | ((v.abs() <= arm) & (u.abs() <= radius))
    ring = (dist2 <= radius**2) & (dist2 >= (radius * 0.55) ** 2)
    return torch.stack([circle, triangle, square, cross, ring])


def render_shapes(
    num_samples: int, num_classes: int, image_size: int, noise: float, generator: torch.Generator
) -> tuple[Tensor, Tensor, Tensor]:
    """Draw `num_samples` images.

    Returns uint8 images (N, 3, H, W), int64 labels (N,) and int64 masks (N, H, W) where
    a pixel is 0 for background and label + 1 inside the shape.
    """
    n, size = num_samples, image_size

    def uniform(low: float, high: float, *shape: int) -> Tensor:
        return low + (high - low) * torch.rand(n, *shape, generator=generator)

    labels = torch.randint(0, num_classes, (n,), generator=generator)
    center_x, center_y = uniform(0.35, 0.65, 1, 1) * size, uniform(0.35, 0.65, 1, 1) * size
    radius = uniform(0.2, 0.34, 1, 1) * size
    angle = uniform(0.0, 2 * math.pi, 1, 1)
    background = uniform(0.0, 1.0, 3, 1, 1)
    # Shift the foreground by 0.3-0.7 per channel (mod 1) so every shape stays visible.
    foreground = (background + uniform(0.3, 0.7, 3, 1, 1)) % 1.0

    coords = torch.arange(size, dtype=torch.float32) + 0.5
    dx = coords.view(1, 1, size) - center_x
    dy = coords.view(1, size, 1) - center_y
    u = dx * torch.cos(angle) + dy * torch.sin(angle)
    v = -dx * torch.sin(angle) + dy * torch.cos(angle)
    all_masks = _shape_masks(u, v, radius)  # (num_shapes, N, H, W)
    inside = all_masks[labels, torch.arange(n)]  # each sample's own shape

    images = torch.where(inside.unsqueeze(1), foreground, background)
    images = images + noise * torch.randn(images.shape, generator=generator)
    images = (images.clamp(0, 1) * 255).round().to(torch.uint8)
    masks = inside.long() * (labels.view(n, 1, 1) + 1)
    return images, labels, masks


class ShapesDataset(Dataset):
    """Classification over generated shapes; one instance per split.

    The whole split is rendered once at construction (about 3 KB per 32x32 image) and
    kept as uint8; `transform` (augmentation on uint8 tensors) runs per item, then the
    image is scaled to float and normalized.
    """

    def __init__(
        self,
        split: str,
        num_classes: int = 5,
        image_size: int = 32,
        train_size: int = 8000,
        val_size: int = 2000,
        test_size: int = 2000,
        noise: float = 0.08,
        seed: int = 0,
        mean: tuple[float, ...] = (0.5, 0.5, 0.5),
        std: tuple[float, ...] = (0.25, 0.25, 0.25),
        transform=None,
    ):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if not 2 <= num_classes <= len(SHAPES):
            raise ValueError(
                f"dataset.num_classes={num_classes}: shapes has 2 to {len(SHAPES)} classes"
            )
        sizes = {"train": train_size, "val": val_size, "test": test_size}
        # Each split has its own stream, so changing train_size leaves val and test unchanged.
        generator = torch.Generator().manual_seed(seed * len(SPLITS) + SPLITS.index(split))
        self.images, self.labels, self.masks = render_shapes(
            sizes[split], num_classes, image_size, noise, generator
        )
        self.classes = SHAPES[:num_classes]
        self.transform = transform
        self.normalize = Normalize(mean, std)

    def __len__(self) -> int:
        return len(self.labels)

    def in_memory_tensors(self) -> tuple[Tensor, Tensor]:
        """The whole split for loader.in_memory (project/data/in_memory.py)."""
        return self.images, self.labels

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        image = self.normalize(image)
        return image, self.labels[index]


class ShapesSegmentationDataset(ShapesDataset):
    """The same images with per-pixel targets: 0 background, k + 1 inside a shape of class k
    (so `num_classes` here counts the background too: shapes + 1).

    Augmentations get the image and the mask together (torchvision.transforms.v2 with
    tv_tensors), so a flip or crop moves both the same way.
    """

    def __init__(self, split: str, num_classes: int = 6, **kwargs):
        super().__init__(split, num_classes=num_classes - 1, **kwargs)
        self.classes = ("background", *self.classes)

    def in_memory_tensors(self) -> None:
        return None  # the transforms move image and mask together: the per-sample path

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image, mask = self.images[index], self.masks[index]
        if self.transform is not None:
            image, mask = self.transform(tv_tensors.Image(image), tv_tensors.Mask(mask))
            image, mask = image.as_subclass(Tensor), mask.as_subclass(Tensor)
        image = self.normalize(image)
        return image, mask
