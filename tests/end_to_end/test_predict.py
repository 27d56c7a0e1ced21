"""predict.py on files the test writes: one CSV row per readable input, unreadable ones
named and counted, the run's preprocessing and class names, masks for segmentation."""

import csv

import torch
from PIL import Image

from project.data.shapes import SHAPES, render_shapes
from tests.conftest import run_script


def write_shapes(folder, count: int = 20, seed: int = 7) -> list[int]:
    folder.mkdir(parents=True, exist_ok=True)
    images, labels, _ = render_shapes(count, 5, 32, 0.08, torch.Generator().manual_seed(seed))
    for index, image in enumerate(images):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{index:02d}.png")
    return labels.tolist()


def rows(path) -> list[dict]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_a_folder_with_a_broken_file_predicts_the_rest_and_names_it(tmp_path, trained_run):
    labels = write_shapes(tmp_path / "images")
    broken = tmp_path / "images" / "zz.png"
    broken.write_bytes(b"not a png")
    output = tmp_path / "preds.csv"
    result = run_script(
        "predict.py", f"ckpt={trained_run / 'checkpoints' / 'best.pt'}",
        f"input={tmp_path / 'images'}", f"output={output}", "top_k=2",
        f"hydra.run.dir={tmp_path / 'run'}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"predicted 20 input(s): {output}" in result.stdout
    assert f"1 unreadable, skipped: {broken} (cannot be decoded" in result.stdout
    predicted = rows(output)
    assert [row["path"] for row in predicted] == [
        str(tmp_path / "images" / f"{i:02d}.png") for i in range(20)
    ]
    assert set(predicted[0]) == {"path", "prediction", "class_index", "confidence", "top2"}
    correct = sum(
        SHAPES[label] == row["prediction"] for label, row in zip(labels, predicted, strict=True)
    )
    assert correct >= 16  # the 1-epoch run is ~80% accurate; the labels are the renderer's
    assert all(
        0.0 < float(row["confidence"]) <= 1.0 and row["top2"].count(":") == 2 for row in predicted
    )


def test_a_single_file_and_a_list_file(tmp_path, trained_run):
    write_shapes(tmp_path / "images", count=3)
    listing = tmp_path / "list.txt"
    listing.write_text("\ufeff# my images\nimages/00.png\n\nimages/02.png\n", encoding="utf-8")
    checkpoint = trained_run / "checkpoints" / "best.pt"
    for given, expected in ((tmp_path / "images" / "01.png", 1), (listing, 2)):
        result = run_script(
            "predict.py",
            f"ckpt={checkpoint}",
            f"input={given}",
            f"hydra.run.dir={tmp_path / given.stem}",
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert len(rows(tmp_path / given.stem / "predictions.csv")) == expected


def test_segmentation_writes_one_mask_per_input(tmp_path):
    run = tmp_path / "seg"
    trained = run_script(
        "train.py", "experiment=segmentation", "debug=fast", f"hydra.run.dir={run}"
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    write_shapes(tmp_path / "images", count=3)
    result = run_script(
        "predict.py", f"ckpt={run / 'checkpoints' / 'last.pt'}", f"input={tmp_path / 'images'}",
        f"output={tmp_path / 'seg.csv'}", f"hydra.run.dir={tmp_path / 'predict'}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    predicted = rows(tmp_path / "seg.csv")
    assert len(predicted) == 3 and set(predicted[0]) == {"path", "mask", "classes_present"}
    mask = Image.open(predicted[0]["mask"])
    assert mask.size == (32, 32) and mask.mode == "L" and mask.getextrema()[1] <= 5


def test_missing_input_is_one_line(tmp_path, trained_run):
    result = run_script(
        "predict.py", f"ckpt={trained_run / 'checkpoints' / 'best.pt'}", f"input={tmp_path / 'nope'}",
        f"hydra.run.dir={tmp_path}",
    )  # fmt: skip
    assert (
        result.returncode == 2
        and result.stderr.strip() == f"error: input={tmp_path / 'nope'}: no such file or folder"
    )
