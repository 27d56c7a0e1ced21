"""Semantic segmentation: per-pixel cross-entropy; mean IoU and pixel accuracy; a grid of
input, true mask and predicted mask for a few validation images in TensorBoard."""

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.utils import make_grid

from project.trainer.base import BaseTrainer

PREVIEW_SAMPLES = 4


def colorize(masks: Tensor, num_classes: int) -> Tensor:
    """(N, H, W) class indices -> (N, 3, H, W) colours in 0..1, background black."""
    generator = torch.Generator().manual_seed(0)  # the same colours every epoch and run
    palette = torch.rand(num_classes, 3, generator=generator) * 0.8 + 0.2
    palette[0] = 0.0
    return palette.to(masks.device)[masks].permute(0, 3, 1, 2)


def rescale(images: Tensor) -> Tensor:
    """Normalized images -> 0..1 per image, for display."""
    flat = images.flatten(1)
    low, high = flat.min(1).values.view(-1, 1, 1, 1), flat.max(1).values.view(-1, 1, 1, 1)
    return (images - low) / (high - low).clamp(min=1e-8)


class SegmentationTrainer(BaseTrainer):
    validation_metrics = ("loss", "miou", "pixel_acc")

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.preview: tuple[Tensor, Tensor, Tensor, int] | None = None

    def training_step(self, batch: Any) -> tuple[Tensor, int]:
        images, masks = batch
        return F.cross_entropy(self.model(images), masks), masks.shape[0]

    def validation_step(self, batch: Any) -> tuple[dict[str, Tensor], int]:
        images, masks = batch
        logits = self.model(images).float()
        num_classes = logits.shape[1]
        predictions = logits.argmax(dim=1)
        if self.preview is None:
            n = PREVIEW_SAMPLES
            self.preview = (images[:n].float(), masks[:n], predictions[:n], num_classes)
        # Intersection and union per class, summed over the split: IoU is computed once
        # from the totals, not averaged per batch (which would weigh small batches more).
        hits = predictions == masks
        intersection = torch.bincount(masks[hits], minlength=num_classes)
        area_true = torch.bincount(masks.flatten(), minlength=num_classes)
        area_predicted = torch.bincount(predictions.flatten(), minlength=num_classes)
        per_image_loss = F.cross_entropy(logits, masks, reduction="none").flatten(1).mean(1)
        return {
            "loss": per_image_loss.sum(),
            "correct_pixels": hits.sum(),
            "pixels": torch.tensor(masks.numel(), device=masks.device),
            "intersection": intersection,
            "union": area_true + area_predicted - intersection,
        }, masks.shape[0]

    def reduce_metrics(self, totals: dict[str, Tensor], samples: int) -> dict[str, float]:
        present = totals["union"] > 0  # a class absent from truth and prediction has no IoU
        iou = totals["intersection"][present] / totals["union"][present]
        return {
            "loss": (totals["loss"] / samples).item(),
            "miou": iou.mean().item(),
            "pixel_acc": (totals["correct_pixels"] / totals["pixels"]).item(),
        }

    def on_validation_end(self) -> None:
        if self.preview is None:
            return
        images, masks, predictions, num_classes = self.preview
        self.preview = None
        panels = [
            rescale(images[:, :3]),
            colorize(masks, num_classes),
            colorize(predictions, num_classes),
        ]
        # One row per sample: input | true mask | predicted mask.
        grid = make_grid(torch.stack(panels, dim=1).flatten(0, 1).cpu(), nrow=3, padding=2)
        self.run_logger.image("val/input_true_predicted", grid, self.global_step)
