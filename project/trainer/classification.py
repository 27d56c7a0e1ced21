"""Image classification: cross-entropy loss, accuracy, and pictures of the results.

Each validation also adds up the confusion matrix (a sum like the others, so it is exact
under DDP) and keeps the samples the model got most wrong; `on_validation_end` sends both
as images to TensorBoard. evaluate.py reads `confusion` for per-class precision, recall
and F1, and sets `top_k` for top-k accuracy.
"""

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from project.trainer.base import BaseTrainer
from project.trainer.pictures import WorstSamples, as_tensor, confusion_image


class ClassificationTrainer(BaseTrainer):
    validation_metrics = ("loss", "acc")
    top_k = 1  # evaluate.py: also <prefix>/top<k> when above 1

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.confusion: Tensor | None = None  # rows: true class, columns: predicted
        self.worst = WorstSamples() if self.process.is_main else None

    def training_step(self, batch: Any) -> tuple[Tensor, int]:
        images, targets = batch
        loss = F.cross_entropy(self.model(images), targets)
        return loss, targets.shape[0]

    def validation_step(self, batch: Any) -> tuple[dict[str, Tensor], int]:
        images, targets = batch
        logits = self.model(images)
        classes = logits.shape[1]
        predicted = logits.argmax(dim=1)
        sums = {
            "loss": F.cross_entropy(logits.float(), targets, reduction="sum"),
            "acc": (predicted == targets).sum(),
            "confusion": torch.bincount(targets * classes + predicted, minlength=classes**2),
        }
        if self.top_k > 1:
            top = logits.topk(min(self.top_k, classes), dim=1).indices
            sums[f"top{self.top_k}"] = (top == targets[:, None]).any(dim=1).sum()
        if self.worst is not None and self.run_logger.takes_images:
            self.worst.observe(images, targets, logits)
        return sums, targets.shape[0]

    def reduce_metrics(self, totals: dict[str, Tensor], samples: int) -> dict[str, float]:
        totals = dict(totals)  # the caller's running totals stay whole
        confusion = totals.pop("confusion", None)
        if confusion is not None:
            classes = int(round(len(confusion) ** 0.5))
            self.confusion = confusion.view(classes, classes).round().long().cpu()
        return super().reduce_metrics(totals, samples)

    def on_validation_end(self) -> None:
        if self.confusion is not None:
            image = as_tensor(confusion_image(self.confusion))
            self.run_logger.image("val/confusion_matrix", image, self.global_step)
        if self.worst is not None:
            grid = self.worst.grid()
            if grid is not None:
                self.run_logger.image("val/worst_classified", grid, self.global_step)
            self.worst.clear()
