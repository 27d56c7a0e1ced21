"""Trainers: BaseTrainer owns the loop; one small subclass per task implements its steps.

Adding a task: subclass BaseTrainer in a new file, implement `training_step` and
`validation_step`, and add it to TASK_TRAINERS so `task=<name>` selects it.
"""

from project.errors import UserError
from project.trainer.base import BaseTrainer
from project.trainer.classification import ClassificationTrainer
from project.trainer.distillation import DistillationTrainer
from project.trainer.segmentation import SegmentationTrainer
from project.trainer.sequence import SequenceTrainer

TASK_TRAINERS: dict[str, type[BaseTrainer]] = {
    "classification": ClassificationTrainer,
    "segmentation": SegmentationTrainer,
    "sequence": SequenceTrainer,
    "distill": DistillationTrainer,  # classification with a teacher (experiment=distill)
}


def trainer_class(task: str) -> type[BaseTrainer]:
    if task not in TASK_TRAINERS:
        raise UserError(f"task={task!r} is not known; choose one of: {', '.join(TASK_TRAINERS)}")
    return TASK_TRAINERS[task]


__all__ = [
    "BaseTrainer",
    "ClassificationTrainer",
    "DistillationTrainer",
    "SegmentationTrainer",
    "SequenceTrainer",
    "TASK_TRAINERS",
    "trainer_class",
]
