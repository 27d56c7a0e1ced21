"""Sequence classification over padded variable-length batches (tokens, lengths, labels)."""

from typing import Any

import torch.nn.functional as F
from torch import Tensor

from project.trainer.base import BaseTrainer


class SequenceTrainer(BaseTrainer):
    validation_metrics = ("loss", "acc")

    def training_step(self, batch: Any) -> tuple[Tensor, int]:
        tokens, lengths, labels = batch
        return F.cross_entropy(self.model(tokens, lengths), labels), labels.shape[0]

    def validation_step(self, batch: Any) -> tuple[dict[str, Tensor], int]:
        tokens, lengths, labels = batch
        logits = self.model(tokens, lengths)
        return {
            "loss": F.cross_entropy(logits.float(), labels, reduction="sum"),
            "acc": (logits.argmax(dim=1) == labels).sum(),
        }, labels.shape[0]
