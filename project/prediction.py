"""Predictions for new files: `python predict.py ckpt=<best.pt> input=<file | folder | list>`.

The model comes from the checkpoint (checked like any file's config, rebuilt by
`rebuild_trained_model` with its inference weights) and so does the preprocessing: the
run's image size, its evaluation transform and its normalization, exactly what
validation saw. Each readable input gives one CSV row; an unreadable one is named on the
console and in the summary, and the others go on. A segmentation run also writes one
mask PNG per input (pixel value = class index).
"""

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig
from PIL import Image
from torch import Tensor, nn
from torchvision.datasets.folder import IMG_EXTENSIONS

from project.data.batches import Normalize
from project.data.decode import DECODE_ERRORS, describe_decode_error, read_rgb
from project.data.loaders import build_dataset
from project.errors import UserError
from project.trainer import is_classifier, is_image_model
from project.trainer.progress import progress_bar, progress_bar_enabled

log = logging.getLogger(__name__)


def list_inputs(given: str) -> list[Path]:
    """An image file, a folder (its images, recursively, sorted), or a text file naming
    one image per line (relative to the list's folder; blank lines and # comments skipped)."""
    path = Path(given)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMG_EXTENSIONS)
        if not files:
            raise UserError(
                f"input={given}: the folder holds no image ({', '.join(IMG_EXTENSIONS)})"
            )
        return files
    if not path.is_file():
        raise UserError(f"input={given}: no such file or folder")
    if path.suffix.lower() in IMG_EXTENSIONS:
        return [path]
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    names = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    if not names:
        raise UserError(f"input={given}: neither an image nor a list naming images")
    return [path.parent / name for name in names]


@dataclass
class Preprocessing:
    """The run's evaluation preprocessing: decode to RGB, resize, eval transform, normalize."""

    image_size: int | None
    transform: object
    normalize: Normalize
    classes: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def of_run(cls, run_cfg: DictConfig) -> "Preprocessing":
        dataset = build_dataset(run_cfg.dataset, "val")  # its classes and eval transform
        dataset_cfg = run_cfg.dataset
        classes = tuple(getattr(dataset, "classes", ()) or ())
        return cls(
            image_size=dataset_cfg.get("image_size"),
            transform=getattr(dataset, "transform", None),
            normalize=Normalize(
                dataset_cfg.get("mean", (0.5,) * 3), dataset_cfg.get("std", (0.25,) * 3)
            ),
            classes=classes,
        )

    def __call__(self, path: Path) -> Tensor:
        image = read_rgb(path, self.image_size)
        if self.transform is not None:
            image = self.transform(image)
        return self.normalize(image)

    def class_name(self, index: int) -> str:
        return self.classes[index] if index < len(self.classes) else str(index)


def predict_files(
    model: nn.Module,
    run_cfg: DictConfig,
    files: list[Path],
    output: Path,
    device: torch.device,
    batch_size: int = 64,
    top_k: int = 3,
) -> dict:
    """Write `output` (CSV) and, for segmentation, masks beside it; return the summary."""
    if not is_image_model(run_cfg.task):
        raise UserError(f"predict.py takes image models; this run's task is {run_cfg.task}")
    classifier = is_classifier(run_cfg.task)
    preprocess = Preprocessing.of_run(run_cfg)
    model = model.to(device).eval()
    masks_dir = output.with_name(f"{output.stem}_masks")
    unreadable: list[str] = []
    rows = []
    bar = progress_bar(len(files), "predict", progress_bar_enabled(None))
    for start in range(0, len(files), batch_size):
        images, names = [], []
        for path in files[start : start + batch_size]:
            try:
                images.append(preprocess(path))
                names.append(path)
            except DECODE_ERRORS as error:
                unreadable.append(f"{path} ({describe_decode_error(error)})")
                log.warning("skipped %s: %s", path, describe_decode_error(error))
        bar.update(len(files[start : start + batch_size]))
        if not images:
            continue
        try:
            batch = torch.stack(images).to(device)
        except RuntimeError:  # sizes differ and the run had no image_size: one at a time
            batch = None
        with torch.no_grad():
            outputs = (
                [model(batch).float()] if batch is not None
                else [model(image[None].to(device)).float() for image in images]
            )  # fmt: skip
        logits = torch.cat(outputs) if batch is not None else outputs
        for index, path in enumerate(names):
            row_logits = logits[index] if batch is not None else logits[index][0]
            if classifier:
                rows.append(classification_row(path, row_logits, preprocess, top_k))
            else:
                rows.append(segmentation_row(path, row_logits, masks_dir))
    bar.close()
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]) if rows else ["path"])
        writer.writeheader()
        writer.writerows(rows)
    return {"predicted": len(rows), "unreadable": unreadable, "output": str(output)}


def classification_row(path: Path, logits: Tensor, preprocess: Preprocessing, top_k: int) -> dict:
    probabilities = logits.softmax(dim=0)
    values, indices = probabilities.topk(min(top_k, len(probabilities)))
    best = int(indices[0])
    return {
        "path": str(path),
        "prediction": preprocess.class_name(best),
        "class_index": best,
        "confidence": f"{float(values[0]):.6f}",
        f"top{len(values)}": ";".join(
            f"{preprocess.class_name(int(i))}:{float(v):.6f}"
            for v, i in zip(values, indices, strict=True)
        ),
    }


def segmentation_row(path: Path, logits: Tensor, masks_dir: Path) -> dict:
    mask = logits.argmax(dim=0).to(torch.uint8).cpu().numpy()
    masks_dir.mkdir(parents=True, exist_ok=True)
    mask_path = masks_dir / f"{path.stem}.png"
    Image.fromarray(mask).save(mask_path)
    counts = torch.bincount(torch.from_numpy(mask).flatten().long())
    present = [str(i) for i, count in enumerate(counts.tolist()) if count]
    return {"path": str(path), "mask": str(mask_path), "classes_present": " ".join(present)}


def summary_lines(summary: dict) -> list[str]:
    lines = [f"predicted {summary['predicted']} input(s): {summary['output']}"]
    if summary["unreadable"]:
        lines.append(
            f"{len(summary['unreadable'])} unreadable, skipped: " + "; ".join(summary["unreadable"])
        )
    return lines


def output_path(given: str | None, run_dir: str) -> Path:
    return Path(given) if given else Path(run_dir) / "predictions.csv"
