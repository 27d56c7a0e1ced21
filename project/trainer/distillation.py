"""Classification with a teacher: `python train.py experiment=distill distill.teacher_ckpt=...`.

Only the training loss changes; validation, checkpoints and metrics are the student's.
"""

from typing import Any

import torch
from omegaconf import OmegaConf
from torch import Tensor

from project.compress.distillation import distillation_loss, load_teacher
from project.trainer.classification import ClassificationTrainer


class DistillationTrainer(ClassificationTrainer):
    def __init__(self, model, *args, run_config: dict[str, Any] | None = None, **kwargs):
        super().__init__(model, *args, run_config=run_config, **kwargs)
        self.teacher = None
        if run_config is None:  # evaluate.py: a distilled student evaluates like any classifier
            return
        distill = run_config["distill"]
        self.alpha = float(distill["alpha"])
        self.temperature = float(distill["temperature"])
        dataset = run_config["dataset"]
        # Frozen and in eval mode for good: the trainer's .train() calls reach the student only.
        self.teacher = load_teacher(
            distill["teacher_ckpt"], OmegaConf.create(dataset), dataset["num_classes"]
        )
        self.teacher.to(self.device)
        if self.channels_last:
            self.teacher.to(memory_format=torch.channels_last)

    def training_step(self, batch: Any) -> tuple[Tensor, int]:
        images, targets = batch
        with torch.no_grad():
            teacher_logits = self.teacher(images).float()
        student_logits = self.model(images)
        loss = distillation_loss(
            student_logits.float(), teacher_logits, targets, self.alpha, self.temperature
        )
        return loss, targets.shape[0]
