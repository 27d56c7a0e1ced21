"""`loader.in_memory`: batches gathered from one stacked tensor, augmented whole.

For a dataset whose samples are already tensors in RAM (shapes, mnist/cifar10, image
files with `dataset.cache=true` all of one size) the DataLoader path pays, per sample, a
`__getitem__`, its own seeded random stream, a transform and the collate. Here a batch is
one indexing op into a (N, C, H, W) uint8 tensor, and the augmentation runs on the whole
batch at once: random horizontal flip, random crop with padding (what the shipped
configs use), then normalization; no workers, no collate. The tensor lives on the
training device when that is a GPU and it takes under a quarter of the free memory
(`device_for_data`), else in host memory, and each batch is copied over.

Every guarantee of the DataLoader path holds: the order is `EpochSampler`'s (seeded by
(seed, epoch), DDP-sharded, resumable mid-epoch at the sampler), `drop_last` and
`limit_*_batches` behave the same, and evaluation is not augmented. The augmentation of
a sample depends only on (seed, epoch, its index in the dataset): each epoch draws one
flip decision and one crop offset per dataset item from a generator seeded by (seed,
epoch), so it is the same whatever the batch boundaries, the number of ranks or a resume.
(It is not the same draw as the DataLoader path's, so the two paths augment differently.)

`auto` uses this path where it applies; datasets that read files, variable-size samples,
custom collate functions and transforms other than flip and padded crop keep the
DataLoader path. `true` refuses those with one line saying why.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms import v2

from project.data.sampling import EpochSampler, mix_seed


@dataclass(frozen=True)
class BatchAugmentation:
    """What a transform pipeline does, in a form that runs on a whole batch."""

    flip_p: float = 0.0  # RandomHorizontalFlip(p)
    crop: tuple[int, int] | None = None  # RandomCrop(size): output height, width
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)  # left, right, top, bottom (F.pad's)
    fill: float = 0.0
    padding_mode: str = "constant"


def batch_augmentation(transform) -> BatchAugmentation | str:
    """The transform as a BatchAugmentation, or why it cannot be one."""
    if transform is None:
        return BatchAugmentation()
    steps = transform.transforms if isinstance(transform, v2.Compose) else [transform]
    flip_p, crop, padding, fill, mode = 0.0, None, (0, 0, 0, 0), 0.0, "constant"
    for step in steps:
        if isinstance(step, v2.RandomHorizontalFlip) and flip_p == 0.0:
            flip_p = float(step.p)
        elif isinstance(step, v2.RandomCrop) and crop is None and not flip_p:
            if step.pad_if_needed or not isinstance(step.fill, int | float | None):
                return "RandomCrop with pad_if_needed or a per-type fill"
            crop, fill, mode = tuple(step.size), float(step.fill or 0), step.padding_mode
            padding = tuple(step.padding) if step.padding else (0, 0, 0, 0)
        else:
            return f"{type(step).__name__} (only RandomCrop then RandomHorizontalFlip run batched)"
    return BatchAugmentation(flip_p, crop, padding, fill, mode)


def in_memory_tensors(dataset) -> tuple[Tensor, Tensor] | str:
    """(uint8 images (N, C, H, W), targets (N,)) of a dataset that offers them, or why not."""
    offer = getattr(dataset, "in_memory_tensors", None)
    if offer is None:
        return f"{type(dataset).__name__} reads its samples one by one"
    if getattr(dataset, "collate_fn", None) is not None:
        return f"{type(dataset).__name__} has its own collate_fn"
    tensors = offer()
    return (
        tensors
        if tensors is not None
        else f"{type(dataset).__name__} holds images of several sizes"
    )


def device_for_data(images: Tensor, device: torch.device) -> torch.device:
    """The training GPU when the images take under a quarter of its free memory."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if images.numel() * images.element_size() < free / 4:
            return device
    return torch.device("cpu")


class InMemoryLoader:
    """A DataLoader look-alike (len, batch_size, sampler, dataset) over stacked tensors."""

    num_workers = 0  # read by the data-wait advice

    def __init__(
        self,
        dataset,
        images: Tensor,
        targets: Tensor,
        *,
        batch_size: int,
        sampler: EpochSampler,
        drop_last: bool,
        augmentation: BatchAugmentation | None,
        seed: int,
        device: torch.device,
    ):
        self.dataset, self.sampler, self.batch_size = dataset, sampler, batch_size
        self.drop_last, self.augmentation, self.seed, self.device = (
            drop_last, augmentation, seed, device
        )  # fmt: skip
        # A flip-only augmentation gathers from the images and their mirror images stacked
        # (twice the memory): one index_select then does the gather and the flips.
        self.mirrored = (
            augmentation is not None and augmentation.flip_p > 0 and augmentation.crop is None
        )
        source = torch.cat([images, images.flip(-1)]) if self.mirrored else images.contiguous()
        home = device_for_data(source, device)
        pin = home.type == "cpu" and device.type == "cuda"
        self.images = source.to(home).pin_memory() if pin else source.to(home)
        self.count = len(images)
        self.targets = targets.to(home)
        # (x / 255 - mean) / std as one multiply and one add, in place on the float batch.
        normalize = dataset.normalize
        self.scale = (1 / (255 * normalize.std)).to(device).view(1, -1, 1, 1)
        self.shift = (-normalize.mean / normalize.std).to(device).view(1, -1, 1, 1)

    def __len__(self) -> int:
        items = len(self.sampler)
        return items // self.batch_size if self.drop_last else -(-items // self.batch_size)

    def _epoch_draws(self, epoch: int) -> tuple[Tensor, Tensor, Tensor]:
        """Per dataset item: flip or not, crop offset y and x; from (seed, epoch) alone."""
        augmentation, count = self.augmentation, self.count
        generator = torch.Generator().manual_seed(mix_seed(self.seed, epoch, 0xA06))
        flips = torch.rand(count, generator=generator) < augmentation.flip_p
        left, right, top, bottom = augmentation.padding
        height, width = self.images.shape[2] + top + bottom, self.images.shape[3] + left + right
        crop_h, crop_w = augmentation.crop or self.images.shape[2:]
        offset_y = torch.randint(0, height - crop_h + 1, (count,), generator=generator)
        offset_x = torch.randint(0, width - crop_w + 1, (count,), generator=generator)
        return flips, offset_y, offset_x  # on the CPU: the index arithmetic below needs no sync

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        order = self.sampler.order()[self.sampler.start_index :]
        batches = len(self)
        indices = torch.tensor(
            order[: batches * self.batch_size] if self.drop_last else order, dtype=torch.long
        )
        augmenting = self.augmentation is not None and self.augmentation != BatchAugmentation()
        draws = self._epoch_draws(self.sampler.epoch) if augmenting else None
        if draws is not None and self.mirrored:  # a flipped sample's mirror image: + count
            indices = indices + self.count * draws[0][indices]
            draws = None
        elif draws is not None:
            draws = tuple(draw.to(self.device) for draw in draws)
        for batch_index in range(batches):
            chosen = indices[batch_index * self.batch_size : (batch_index + 1) * self.batch_size]
            chosen = chosen.to(self.images.device, non_blocking=True)
            # index_select, not images[chosen]: ~15x faster for a batch of images on a CPU
            images = self.images.index_select(0, chosen).to(self.device, non_blocking=True)
            targets = self.targets.index_select(0, chosen % self.count)
            targets = targets.to(self.device, non_blocking=True)
            if draws is not None:
                on_device = chosen.to(self.device)
                images = self._augment(images, *(draw[on_device] for draw in draws))
            yield images.float().mul_(self.scale).add_(self.shift), targets

    def _augment(self, images: Tensor, flips: Tensor, offset_y: Tensor, offset_x: Tensor):
        augmentation = self.augmentation
        if augmentation.crop is not None:
            if any(augmentation.padding):
                images = F.pad(
                    images if augmentation.padding_mode == "constant" else images.float(),
                    augmentation.padding,
                    mode=augmentation.padding_mode,
                    value=augmentation.fill if augmentation.padding_mode == "constant" else None,
                ).to(images.dtype)
            crop_h, crop_w = augmentation.crop
            rows = (offset_y[:, None] + torch.arange(crop_h, device=images.device))[:, :, None]
            cols = (offset_x[:, None] + torch.arange(crop_w, device=images.device))[:, None, :]
            batch = torch.arange(len(images), device=images.device)[:, None, None]
            images = images.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)
        if augmentation.flip_p:
            images = torch.where(flips[:, None, None, None], images.flip(-1), images)
        return images.contiguous()
