"""Knowledge distillation (Hinton et al., 2015): a student learns from a trained teacher's
softened outputs as well as from the labels."""

from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from project.checkpoint.format import load_checkpoint
from project.errors import UserError
from project.models.trained import rebuild_trained_model
from project.trainer import is_classifier


def distillation_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    targets: Tensor,
    alpha: float,
    temperature: float,
) -> Tensor:
    """alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T)) + (1 - alpha) * CE.
    T^2 keeps the soft term's gradients on the scale of the hard term's as T grows."""
    task_loss = F.cross_entropy(student_logits, targets)
    if alpha == 0:  # exactly the plain task loss, not a sum with a zero-weighted term
        return task_loss
    soft = F.kl_div(
        F.log_softmax(student_logits / temperature, dim=1),
        F.log_softmax(teacher_logits / temperature, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    return alpha * temperature**2 * soft + (1 - alpha) * task_loss


class Renormalize(nn.Module):
    """Maps images normalized with the student's mean/std to the teacher's normalization."""

    def __init__(self, student: DictConfig, teacher: DictConfig):
        super().__init__()

        def column(values) -> Tensor:
            return torch.tensor(list(values), dtype=torch.float32).view(1, -1, 1, 1)

        # teacher_input = (student_input * s_std + s_mean - t_mean) / t_std
        self.register_buffer("scale", column(student.std) / column(teacher.std))
        self.register_buffer(
            "shift", (column(student.mean) - column(teacher.mean)) / column(teacher.std)
        )

    def forward(self, images: Tensor) -> Tensor:
        return images * self.scale + self.shift


def load_teacher(path: str, student_dataset: DictConfig, student_classes: int) -> nn.Module:
    """The teacher rebuilt from its own checkpoint and config, frozen, in eval mode, with
    its inputs converted to its own normalization when the student's differs."""
    checkpoint = Path(path)
    state = load_checkpoint(checkpoint)
    teacher_cfg = OmegaConf.create(state["config"])
    if not is_classifier(teacher_cfg.task):
        raise UserError(
            f"distill.teacher_ckpt={path} is a {teacher_cfg.task} run; a classifier is needed"
        )
    teacher_classes = teacher_cfg.dataset.num_classes
    if teacher_classes != student_classes:
        raise UserError(
            f"distill.teacher_ckpt={path} predicts {teacher_classes} classes, the student "
            f"{student_classes} (dataset.num_classes); teacher and student must share the classes"
        )
    teacher = rebuild_trained_model(state, checkpoint, deploy_form=True)
    same = [
        list(student_dataset.get(key, [])) == list(teacher_cfg.dataset.get(key, []))
        for key in ("mean", "std")
    ]
    if not all(same):
        teacher = nn.Sequential(Renormalize(student_dataset, teacher_cfg.dataset), teacher).eval()
    return teacher
