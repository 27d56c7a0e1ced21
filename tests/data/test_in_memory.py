"""loader.in_memory: batches gathered from one tensor and augmented whole keep every
guarantee of the DataLoader path (order, sharding, resume, drop_last, no augmentation in
evaluation) and augment each sample by (seed, epoch, index) alone."""

import pytest
import torch
from omegaconf import OmegaConf
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from project.data.in_memory import BatchAugmentation, InMemoryLoader, batch_augmentation
from project.data.loaders import build_dataset, build_loader
from project.data.sampling import EpochSampler
from project.errors import UserError
from project.schema import LoaderConfig
from tests.conftest import compose_config

CPU = torch.device("cpu")
SMALL = ["dataset.train_size=96", "dataset.val_size=40", "dataset.test_size=8"]


def shapes(split: str, *overrides: str):
    return build_dataset(compose_config("train", [*SMALL, *overrides]).dataset, split)


def loader(dataset, train: bool, batch_size: int = 8, in_memory=None, **sampler_options):
    cfg = LoaderConfig(batch_size=batch_size, eval_batch_size=batch_size, in_memory=in_memory)
    built = build_loader(dataset, cfg, train=train, seed=3, device=CPU)
    if sampler_options:
        built.sampler.__init__(len(dataset), shuffle=train, seed=3, **sampler_options)
    return built


def images_of(batches) -> torch.Tensor:
    return torch.cat([images for images, _ in batches])


def test_auto_picks_the_batched_path_where_it_applies():
    assert isinstance(loader(shapes("train"), train=True), InMemoryLoader)
    assert isinstance(loader(shapes("val"), train=False), InMemoryLoader)
    segmentation = build_dataset(
        compose_config("train", ["dataset=shapes_seg", *SMALL]).dataset, "train"
    )
    assert not isinstance(loader(segmentation, train=True), InMemoryLoader)
    sequences = build_dataset(compose_config("train", ["experiment=sequence"]).dataset, "val")
    assert not isinstance(loader(sequences, train=False), InMemoryLoader)
    assert not isinstance(loader(shapes("train"), train=True, in_memory=False), InMemoryLoader)


def test_true_refuses_a_dataset_it_cannot_batch_in_one_line():
    sequences = build_dataset(compose_config("train", ["experiment=sequence"]).dataset, "val")
    with pytest.raises(
        UserError,
        match=r"^loader.in_memory=true cannot batch this dataset: SequencesDataset reads its samples one by one",
    ):
        loader(sequences, train=False, in_memory=True)
    cropped = shapes("train", "dataset.transforms.train._target_=torchvision.transforms.v2.RandomRotation",
                     "+dataset.transforms.train.degrees=10", "~dataset.transforms.train.p")  # fmt: skip
    with pytest.raises(UserError, match="its transform RandomRotation"):
        loader(cropped, train=True, in_memory=True)


def test_evaluation_batches_match_the_dataloader_path():
    dataset = shapes("val")
    batched, per_sample = loader(dataset, False), loader(dataset, False, in_memory=False)
    assert len(batched) == len(per_sample) == 5
    for (images, labels), (expected_images, expected_labels) in zip(
        batched, per_sample, strict=True
    ):
        assert torch.equal(labels, expected_labels)
        assert torch.allclose(images, expected_images, atol=1e-6)


def test_training_follows_the_sampler_order_and_drop_last():
    dataset = shapes("train")
    batched = loader(dataset, True, batch_size=10)
    batched.sampler.set_epoch(2)
    labels = torch.cat([targets for _, targets in batched])
    order = batched.sampler.order()
    assert len(batched) == 9 and labels.tolist() == dataset.labels[order[:90]].tolist()


def test_a_sample_is_augmented_by_seed_epoch_and_index_whatever_the_batching():
    dataset = shapes("train")
    runs = []
    for batch_size in (8, 32):
        batched = loader(dataset, True, batch_size=batch_size)
        batched.sampler.set_epoch(1)
        runs.append(images_of(batched))
    assert torch.equal(runs[0], runs[1])
    batched.sampler.set_epoch(2)  # another epoch, other flips
    assert not torch.equal(images_of(batched), runs[1])


def test_a_resumed_epoch_yields_exactly_the_rest_of_the_epoch():
    dataset = shapes("train")
    batched = loader(dataset, True, batch_size=8)
    batched.sampler.set_epoch(4)
    whole = images_of(batched)
    batched.sampler.set_epoch(4, start_index=5 * 8)  # what the trainer does on resume
    assert len(batched) == 7 and torch.equal(images_of(batched), whole[40:])


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_get_the_sampler_shards(world_size):
    dataset = shapes("val")
    seen = []
    for rank in range(world_size):
        batched = loader(dataset, False, rank=rank, world_size=world_size, even=False)
        sampler = EpochSampler(
            len(dataset), shuffle=False, seed=3, rank=rank, world_size=world_size, even=False
        )
        labels = torch.cat([targets for _, targets in batched])
        assert labels.tolist() == dataset.labels[sampler.order()].tolist()
        seen += sampler.order()
    assert sorted(seen) == list(range(len(dataset)))  # every item once


def test_padded_crop_and_flip_compute_what_torchvision_computes():
    transform = v2.Compose([v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(p=0.5)])
    augmentation = batch_augmentation(transform)
    assert augmentation == BatchAugmentation(0.5, (32, 32), (4, 4, 4, 4), 0.0, "constant")
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    batched = InMemoryLoader.__new__(InMemoryLoader)
    batched.augmentation = augmentation
    flips, offset_y, offset_x = (
        torch.tensor([True, False, True]),
        torch.tensor([0, 3, 8]),
        torch.tensor([8, 1, 0]),
    )
    out = batched._augment(images, flips, offset_y, offset_x)
    for i in range(3):
        expected = TF.crop(TF.pad(images[i], [4]), offset_y[i].item(), offset_x[i].item(), 32, 32)
        expected = TF.horizontal_flip(expected) if flips[i] else expected
        assert torch.equal(out[i], expected)


def test_transforms_it_cannot_batch_are_named():
    assert "ColorJitter" in batch_augmentation(v2.ColorJitter(0.1))
    assert batch_augmentation(None) == BatchAugmentation()
    assert batch_augmentation(v2.RandomHorizontalFlip(p=0.3)).flip_p == pytest.approx(0.3)


def test_the_loader_key_is_typed():
    cfg = compose_config("train", ["loader.in_memory=true"])
    assert OmegaConf.select(cfg, "loader.in_memory") is True


def test_flip_only_batches_are_the_images_or_their_mirror_images():
    dataset = shapes("train")
    batched, plain = loader(dataset, True, batch_size=16), loader(dataset, False, batch_size=16)
    batched.sampler.set_epoch(0)
    order = batched.sampler.order()
    augmented = images_of(batched)
    originals = images_of(plain)[order[: len(augmented)]]  # unshuffled, unaugmented
    flipped = [
        torch.allclose(a, o.flip(-1), atol=1e-6) for a, o in zip(augmented, originals, strict=True)
    ]
    kept = [torch.allclose(a, o, atol=1e-6) for a, o in zip(augmented, originals, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert (
        0.3 < sum(f and not k for f, k in zip(flipped, kept, strict=True)) / len(augmented) < 0.7
    )  # p=0.5
