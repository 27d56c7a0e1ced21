"""The generated shapes dataset: deterministic, labelled by shape, masks agree with labels."""

import pytest
import torch

from project.data.shapes import SHAPES, ShapesDataset, render_shapes


def test_same_seed_same_pixels_and_splits_differ():
    first = ShapesDataset("train", train_size=64, seed=3)
    again = ShapesDataset("train", train_size=64, seed=3)
    assert torch.equal(first.images, again.images) and torch.equal(first.labels, again.labels)
    assert not torch.equal(ShapesDataset("val", val_size=64, seed=3).images, first.images)
    assert not torch.equal(ShapesDataset("train", train_size=64, seed=4).images, first.images)


def test_changing_the_train_size_leaves_validation_unchanged():
    assert torch.equal(
        ShapesDataset("val", train_size=10, val_size=32).images,
        ShapesDataset("val", train_size=999, val_size=32).images,
    )


def test_items_are_normalized_float_images_and_int_labels():
    dataset = ShapesDataset("test", test_size=16, num_classes=3, image_size=24)
    image, label = dataset[0]
    assert image.shape == (3, 24, 24) and image.dtype == torch.float32
    assert label.dtype == torch.int64 and 0 <= label < 3
    assert dataset.classes == SHAPES[:3]
    assert image.min() > -2.5 and image.max() < 2.5


def test_masks_mark_the_shape_with_its_label_and_every_class_appears():
    images, labels, masks = render_shapes(
        500, len(SHAPES), 32, 0.08, torch.Generator().manual_seed(0)
    )
    assert set(labels.tolist()) == set(range(len(SHAPES)))
    for image_mask, label in zip(masks, labels, strict=True):
        assert set(image_mask.unique().tolist()) == {0, label.item() + 1}
    covered = (masks > 0).float().mean(dim=(1, 2))
    assert covered.min() > 0.03 and covered.max() < 0.6  # visible, never the whole image


def test_too_many_classes_is_a_clear_error():
    with pytest.raises(ValueError, match="dataset.num_classes=9: shapes has 2 to 5 classes"):
        ShapesDataset("train", num_classes=9)
