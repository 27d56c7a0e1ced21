"""Classification pictures: the confusion matrix and the worst-classified samples go to
TensorBoard at each validation; evaluate.py writes per-class figures and a PNG."""

import json

import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from evaluate import per_class_report
from project.trainer.pictures import WorstSamples, confusion_image
from tests.conftest import compose_config, run_script


def test_each_validation_logs_the_confusion_matrix_and_the_worst_samples(tmp_path):
    result = run_script(
        "train.py", "debug=fast", "trainer.max_epochs=2", f"hydra.run.dir={tmp_path}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    events.Reload()
    assert {"val/confusion_matrix", "val/worst_classified"} <= set(events.Tags()["images"])
    assert [event.step for event in events.Images("val/confusion_matrix")] == [4, 8]


def test_evaluate_writes_per_class_figures_top_k_and_a_confusion_png(trained_run, tmp_path):
    import shutil

    from evaluate import evaluate

    checkpoint = tmp_path / "best.pt"
    shutil.copy2(trained_run / "checkpoints" / "best.pt", checkpoint)
    metrics = evaluate(compose_config("evaluate", [f"ckpt={checkpoint}", "split=val", "top_k=2"]))
    report = json.loads((tmp_path / "eval.json").read_text())
    counts = torch.tensor(report["confusion_matrix"]["counts"])
    assert counts.sum() == 2000 and report["confusion_matrix"]["classes"][0] == "circle"
    assert counts.diagonal().sum() / 2000 == pytest.approx(metrics["val/acc"])
    assert metrics["val/top2"] >= metrics["val/acc"]
    circle = report["per_class"]["circle"]
    assert circle["recall"] == pytest.approx(counts[0, 0] / counts[0].sum())
    assert circle["precision"] == pytest.approx(counts[0, 0] / counts[:, 0].sum())
    assert Image.open(tmp_path / "eval_confusion.png").size[0] > 5 * 36


def test_per_class_report_on_known_counts():
    report = per_class_report(torch.tensor([[8, 2], [1, 9]]), ["a", "b"])
    assert report["per_class"]["a"] == pytest.approx(
        {"precision": 8 / 9, "recall": 0.8, "f1": 2 * (8 / 9) * 0.8 / (8 / 9 + 0.8), "support": 10}
    )
    assert confusion_image(torch.tensor([[8, 2], [1, 9]])).size == (
        8 + 7 + 2 * 36,
        8 + 7 + 2 * 36 + 16,
    )


def test_worst_samples_keep_the_lowest_true_class_probabilities():
    worst = WorstSamples(keep=2)
    targets = torch.tensor([0, 1, 0])
    for confident in (5.0, 0.0, -5.0):  # logits for the true class, batch after batch
        logits = torch.zeros(3, 2)
        logits[torch.arange(3), targets] = confident
        worst.observe(torch.rand(3, 3, 8, 8), targets, logits)
    assert worst.true_prob.tolist() == pytest.approx([torch.sigmoid(torch.tensor(-5.0)).item()] * 2)
    assert worst.grid().shape[0] == 3
