"""Trainers: BaseTrainer owns the loop; one small subclass per task implements its steps.

`task=<name>` selects one of TASK_TRAINERS. Adding a task: subclass BaseTrainer in a new
file, implement `training_step` and `validation_step`, and add it to TASK_TRAINERS; or,
for an optional feature kept out of the core (the distillation wing), set `task` to the
import path of the class, e.g. `task: project.distill.trainer.DistillationTrainer`. Only
BaseTrainer subclasses inside this package are accepted, so a checkpoint's config cannot
name anything else.
"""

import inspect

from hydra.utils import get_object

from project.errors import UserError
from project.trainer.base import BaseTrainer
from project.trainer.classification import ClassificationTrainer
from project.trainer.segmentation import SegmentationTrainer
from project.trainer.sequence import SequenceTrainer

TASK_TRAINERS: dict[str, type[BaseTrainer]] = {
    "classification": ClassificationTrainer,
    "segmentation": SegmentationTrainer,
    "sequence": SequenceTrainer,
}
PACKAGE = __name__.split(".")[0]


def trainer_class(task: str) -> type[BaseTrainer]:
    if task in TASK_TRAINERS:
        return TASK_TRAINERS[task]
    found = None
    if isinstance(task, str) and task.startswith(f"{PACKAGE}."):  # imported only then
        try:
            found = get_object(task)
        except Exception:  # Hydra raises ImportError or ValueError for what does not exist
            found = None
    if inspect.isclass(found) and issubclass(found, BaseTrainer):
        return found
    raise UserError(
        f"task={task!r} is not known; choose one of: {', '.join(TASK_TRAINERS)}, or the "
        f"import path of a BaseTrainer subclass in the {PACKAGE} package"
    )


def is_classifier(task: str) -> bool:
    """One image, one label: what export, int8 and QAT accept as a classifier."""
    return issubclass(trainer_class(task), ClassificationTrainer)


def is_image_model(task: str) -> bool:
    return issubclass(trainer_class(task), ClassificationTrainer | SegmentationTrainer)


__all__ = [
    "BaseTrainer",
    "ClassificationTrainer",
    "SegmentationTrainer",
    "SequenceTrainer",
    "TASK_TRAINERS",
    "is_classifier",
    "is_image_model",
    "trainer_class",
]
