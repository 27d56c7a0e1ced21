"""experiment=distill: the loss, the frozen teacher, normalization and class checks."""

import json
import shutil

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from project.checkpoint.format import load_checkpoint
from project.distill.loss import Renormalize, distillation_loss, load_teacher
from project.errors import USER_ERROR_EXIT_CODE, UserError
from tests.conftest import run_script

SHORT = ["debug=fast", "logger.tensorboard=false"]


def test_alpha_zero_is_exactly_the_task_loss_and_alpha_one_the_soft_term():
    torch.manual_seed(0)
    student, teacher = torch.randn(16, 5), torch.randn(16, 5)
    targets = torch.randint(0, 5, (16,))
    plain = F.cross_entropy(student, targets)
    assert torch.equal(distillation_loss(student, teacher, targets, 0.0, 4.0), plain)
    assert distillation_loss(student, student, targets, 1.0, 4.0).abs() < 1e-6
    soft = F.kl_div(F.log_softmax(student / 2, 1), F.softmax(teacher / 2, 1), reduction="batchmean")
    mixed = distillation_loss(student, teacher, targets, 0.25, 2.0)
    torch.testing.assert_close(mixed, 0.25 * 4 * soft + 0.75 * plain)


def test_renormalize_gives_the_teacher_its_own_normalization():
    student = OmegaConf.create({"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]})
    teacher = OmegaConf.create({"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]})
    raw = torch.rand(2, 3, 8, 8)
    as_student = (raw - 0.5) / 0.25
    mean = torch.tensor(teacher.mean).view(1, 3, 1, 1)
    std = torch.tensor(teacher.std).view(1, 3, 1, 1)
    torch.testing.assert_close(Renormalize(student, teacher)(as_student), (raw - mean) / std)


def test_distilled_run_leaves_the_teacher_unchanged_and_alpha_zero_matches_plain_training(
    tmp_path, trained_run
):
    teacher_ckpt = tmp_path / "teacher.pt"
    shutil.copy(trained_run / "checkpoints" / "best.pt", teacher_ckpt)
    teacher_before = load_checkpoint(teacher_ckpt)["model"]

    runs = {
        "distilled": ["experiment=distill", f"distill.teacher_ckpt={teacher_ckpt}"],
        "alpha0": ["experiment=distill", f"distill.teacher_ckpt={teacher_ckpt}", "distill.alpha=0"],
        "plain": ["model.width=8"],  # the same student without a teacher
    }
    metrics = {}
    for name, overrides in runs.items():
        result = run_script("train.py", *overrides, *SHORT, f"hydra.run.dir={tmp_path / name}")
        assert result.returncode == 0, result.stderr[-3000:]
        metrics[name] = json.loads((tmp_path / name / "metrics.json").read_text())
    assert metrics["alpha0"]["train/loss"] == metrics["plain"]["train/loss"]
    assert metrics["alpha0"]["val/acc"] == metrics["plain"]["val/acc"]
    assert metrics["distilled"]["train/loss"] != metrics["plain"]["train/loss"]

    teacher_after = load_checkpoint(teacher_ckpt)["model"]
    assert all(torch.equal(teacher_before[k], teacher_after[k]) for k in teacher_before)


def test_the_teacher_is_frozen_in_eval_mode_and_stays_so_while_the_student_trains(trained_run):
    from project.distill.trainer import DistillationTrainer
    from project.schema import LoggerConfig, TrainerConfig
    from tests.conftest import compose_config

    checkpoint = trained_run / "checkpoints" / "best.pt"
    cfg = compose_config("train", ["experiment=distill", f"distill.teacher_ckpt={checkpoint}"])
    student = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 5))
    trainer = DistillationTrainer.from_config(
        cfg,
        student,
        torch.optim.SGD(student.parameters(), lr=0.1),
        trainer_cfg=TrainerConfig(max_epochs=1),
        logger_cfg=LoggerConfig(tensorboard=False, progress_bar=False),
        device=torch.device("cpu"),
    )
    before = {k: v.clone() for k, v in trainer.teacher.state_dict().items()}
    images, targets = torch.randn(8, 3, 32, 32), torch.randint(0, 5, (8,))
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(images, targets), batch_size=4
    )
    trainer.fit(loader)
    assert not trainer.teacher.training
    assert not any(p.requires_grad for p in trainer.teacher.parameters())
    after = trainer.teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN statistics included


def test_a_teacher_with_other_classes_is_refused_with_both_counts(tmp_path, trained_run):
    checkpoint = trained_run / "checkpoints" / "best.pt"
    student_data = OmegaConf.create({"mean": [0.5] * 3, "std": [0.25] * 3})
    with pytest.raises(UserError, match=r"predicts 5 classes, the student 3"):
        load_teacher(str(checkpoint), student_data, student_classes=3)
    result = run_script(
        "train.py", "experiment=distill", f"distill.teacher_ckpt={checkpoint}",
        "dataset.num_classes=3", *SHORT, f"hydra.run.dir={tmp_path / 'run'}",
    )  # fmt: skip
    assert result.returncode == USER_ERROR_EXIT_CODE
    assert "predicts 5 classes, the student 3 (dataset.num_classes)" in result.stderr


def test_distill_without_a_teacher_names_the_key(tmp_path):
    result = run_script("train.py", "experiment=distill", *SHORT, f"hydra.run.dir={tmp_path}")
    assert result.returncode == USER_ERROR_EXIT_CODE
    assert "distill.teacher_ckpt: required, but not set" in result.stderr
