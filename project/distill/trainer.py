"""Classification with a teacher: `python train.py experiment=distill distill.teacher_ckpt=...`.

Only the training loss changes; validation, checkpoints and metrics are the student's, so
evaluate.py and export.py treat a distilled student as any classifier.
"""

from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from project.distill.loss import distillation_loss, load_teacher
from project.schema import validate_node
from project.trainer.classification import ClassificationTrainer


@dataclass
class DistillConfig:
    teacher_ckpt: str = "???"  # a checkpoint of this project: the teacher and its config
    alpha: float = field(default=0.5, metadata={"min": 0.0, "max": 1.0})  # the soft term's weight
    temperature: float = field(default=4.0, metadata={"min": 1e-3})  # softens both distributions


class DistillationTrainer(ClassificationTrainer):
    def __init__(
        self,
        model: nn.Module,
        *args: Any,
        teacher: nn.Module | None = None,
        alpha: float = 0.5,
        temperature: float = 4.0,
        **kwargs: Any,
    ):
        super().__init__(model, *args, **kwargs)
        self.alpha, self.temperature = alpha, temperature
        # Frozen and in eval mode for good: the trainer's .train() calls reach the student
        # only. None when a distilled student is only evaluated.
        self.teacher = teacher
        if teacher is not None:
            teacher.to(self.device)
            if self.channels_last:
                teacher.to(memory_format=torch.channels_last)

    @classmethod
    def from_config(cls, cfg: DictConfig, *args: Any, **kwargs: Any) -> "DistillationTrainer":
        validate_node("distill", cfg.distill, DistillConfig)
        distill: DistillConfig = OmegaConf.to_object(
            OmegaConf.merge(OmegaConf.structured(DistillConfig), cfg.distill)
        )
        teacher = load_teacher(distill.teacher_ckpt, cfg.dataset, cfg.dataset.num_classes)
        return cls(
            *args, teacher=teacher, alpha=distill.alpha, temperature=distill.temperature, **kwargs
        )

    def training_step(self, batch: Any) -> tuple[Tensor, int]:
        images, targets = batch
        with torch.no_grad():
            teacher_logits = self.teacher(images).float()
        student_logits = self.model(images)
        loss = distillation_loss(
            student_logits.float(), teacher_logits, targets, self.alpha, self.temperature
        )
        return loss, targets.shape[0]
