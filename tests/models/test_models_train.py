"""Every model trains for an epoch through `python train.py` on tiny generated data.

Hydra's multirun runs the jobs one after another in one process, so the ~10 s of imports
are paid once per command rather than once per model.
"""

import json
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from evaluate import evaluate
from tests.conftest import compose_config, run_script

TINY_DATA = ["dataset.train_size=256", "dataset.val_size=64", "dataset.test_size=64"]
ONE_EPOCH = ["trainer.max_epochs=1", "scheduler=onecycle", "loader.batch_size=32"]


def job_metrics(sweep_dir: Path, jobs: int) -> list[dict]:
    results = []
    for job in range(jobs):
        job_dir = sweep_dir / str(job)
        assert (job_dir / "checkpoints" / "best.pt").is_file(), job_dir
        results.append(json.loads((job_dir / "metrics.json").read_text()))
    return results


def test_every_classification_model_trains_for_an_epoch(tmp_path):
    models = ["cnn", "mobilenet", "repvgg", "torchvision"]
    result = run_script(
        "train.py", "-m", f"model={','.join(models)}", *TINY_DATA, *ONE_EPOCH,
        f"hydra.sweep.dir={tmp_path}", timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    for name, metrics in zip(models, job_metrics(tmp_path, len(models)), strict=True):
        assert metrics["val/loss"] > 0 and 0 <= metrics["val/acc"] <= 1, name
        log = (tmp_path / str(models.index(name)) / "train.log").read_text()
        # The summary line at the start of training.
        assert " parameters (" in log and "M multiply-adds per 3x32x32 input" in log, name


def test_segmentation_and_sequence_experiments_train_and_evaluate(tmp_path):
    result = run_script(
        "train.py", "-m", "experiment=segmentation,sequence", *TINY_DATA, *ONE_EPOCH,
        f"hydra.sweep.dir={tmp_path}", timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    segmentation, sequence = job_metrics(tmp_path, 2)
    assert set(segmentation) >= {"val/miou", "val/pixel_acc", "best/val/miou"}
    assert 0 <= segmentation["val/miou"] <= 1 and 0 <= segmentation["val/pixel_acc"] <= 1
    assert 0 <= sequence["val/acc"] <= 1

    events = EventAccumulator(str(tmp_path / "0"), size_guidance={"images": 0})
    events.Reload()
    assert events.Tags()["images"] == ["val/input_true_predicted"]
    image = events.Images("val/input_true_predicted")[0]
    # 4 samples x (input, true mask, predicted mask), 32x32 each with 2-pixel padding.
    assert (image.width, image.height) == (3 * 34 + 2, 4 * 34 + 2)

    # evaluate.py's function (in this process) rebuilds the segmentation task from the
    # checkpoint's own config.
    checkpoint = tmp_path / "0" / "checkpoints" / "best.pt"
    results = evaluate(compose_config("evaluate", [f"ckpt={checkpoint}"]))
    assert set(results) == {"test/loss", "test/miou", "test/pixel_acc"}
    assert 0 <= results["test/miou"] <= 1
    assert json.loads((checkpoint.parent / "eval.json").read_text())["metrics"] == results
