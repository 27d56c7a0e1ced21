"""Image classification: cross-entropy loss, accuracy."""

from typing import Any

import torch.nn.functional as F
from torch import Tensor

from project.trainer.base import BaseTrainer


class ClassificationTrainer(BaseTrainer):
    validation_metrics = ("loss", "acc")

    def training_step(self, batch: Any) -> tuple[Tensor, int]:
        images, targets = batch
        loss = F.cross_entropy(self.model(images), targets)
        return loss, targets.shape[0]

    def validation_step(self, batch: Any) -> tuple[dict[str, Tensor], int]:
        images, targets = batch
        logits = self.model(images)
        return {
            "loss": F.cross_entropy(logits.float(), targets, reduction="sum"),
            "acc": (logits.argmax(dim=1) == targets).sum(),
        }, targets.shape[0]
