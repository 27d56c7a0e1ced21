"""Evaluate a checkpoint: `python evaluate.py ckpt=<path> [split=test|val]`.

The model, data and task are rebuilt from the config saved in the checkpoint; the
metrics are printed as a table and written to eval.json next to the checkpoint.
"""

import json
import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from project.checkpoint.format import load_checkpoint
from project.data.loaders import build_datasets, build_loaders
from project.distributed import inference_device
from project.errors import UserError, exit_on_user_error
from project.models.trained import rebuild_trained_model
from project.schema import typed, validate_config
from project.trainer import ClassificationTrainer, trainer_class
from project.trainer.pictures import confusion_image

log = logging.getLogger("evaluate")


def evaluate(cfg: DictConfig) -> dict[str, float]:
    validate_config(cfg)  # ckpt is required
    if cfg.split not in ("test", "val"):
        raise UserError(f"split={cfg.split!r} is not valid; choose one of: test, val")
    checkpoint_path = Path(cfg.ckpt)
    state = load_checkpoint(checkpoint_path)
    run_cfg = OmegaConf.create(state["config"])
    device = inference_device(run_cfg.trainer.gpus, cfg.gpus)

    datasets = build_datasets(run_cfg.dataset, (cfg.split,))
    loader_cfg = typed("loader", run_cfg.loader)  # keys added since the checkpoint: defaults
    loader = build_loaders(datasets, loader_cfg, seed=run_cfg.seed, device=device)[cfg.split]
    model = rebuild_trained_model(state, checkpoint_path, dataset=datasets[cfg.split])
    trainer = trainer_class(run_cfg.task)(
        model,
        None,
        trainer_cfg=typed("trainer", run_cfg.trainer),
        logger_cfg=typed("logger", run_cfg.logger),
        device=device,
    )
    if isinstance(trainer, ClassificationTrainer):
        trainer.top_k = cfg.top_k
    metrics = trainer.evaluate(loader, prefix=cfg.split)

    width = max(len(name) for name in metrics)
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  ------"]
    lines += [f"{name:<{width}}  {value:.4f}" for name, value in metrics.items()]
    print("\n".join(lines))
    output = checkpoint_path.with_name("eval.json")
    report = {
        "checkpoint": str(checkpoint_path),
        "split": cfg.split,
        "epoch": state.get("epoch"),
        "metrics": metrics,
    }
    if isinstance(trainer, ClassificationTrainer) and trainer.confusion is not None:
        names = list(getattr(datasets[cfg.split], "classes", ()) or ())
        report |= per_class_report(trainer.confusion, names)
        picture = checkpoint_path.with_name("eval_confusion.png")
        confusion_image(trainer.confusion, names or None).save(picture)
        log.info("wrote %s", picture)
    output.write_text(json.dumps(report, indent=2) + "\n")
    log.info("wrote %s", output)
    return metrics


def per_class_report(confusion, names: list[str]) -> dict:
    """Precision, recall and F1 per class, and the confusion matrix, from its counts."""
    confusion = confusion.double()
    hits = confusion.diagonal()
    precision = hits / confusion.sum(dim=0).clamp(min=1)
    recall = hits / confusion.sum(dim=1).clamp(min=1)
    f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
    classes = [names[i] if i < len(names) else str(i) for i in range(len(confusion))]
    return {
        "per_class": {
            name: {"precision": p, "recall": r, "f1": f, "support": int(n)}
            for name, p, r, f, n in zip(
                classes,
                precision.tolist(),
                recall.tolist(),
                f1.tolist(),
                confusion.sum(dim=1).tolist(),
                strict=True,
            )
        },  # fmt: skip
        "confusion_matrix": {
            "rows": "true class",
            "columns": "predicted",
            "classes": classes,
            "counts": confusion.long().tolist(),
        },  # fmt: skip
    }


@hydra.main(version_base="1.3", config_path="configs", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        evaluate(cfg)


if __name__ == "__main__":
    main()
