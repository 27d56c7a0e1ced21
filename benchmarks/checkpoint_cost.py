"""Size and save time of a full, resumable checkpoint against the weights alone.

Builds the default run (python train.py's config), trains a few steps so the optimizer has
its momentum buffers, then writes (a) `model.state_dict()` and (b) the full training
state the checkpoint policy writes (optimizer, scheduler, RNG states, partial-epoch losses,
config ...), both with `atomic_save` (temporary file, fsync, rename), 10 times each.

    python benchmarks/checkpoint_cost.py [model=mobilenet ...]   (Hydra overrides)

Ends with one line: `checkpoint size_ratio=<x> save_ms=<y>` (full / weights only; median
milliseconds per full save).
"""

import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from project.checkpoint.files import atomic_save  # noqa: E402
from project.checkpoint.policy import CheckpointPolicy  # noqa: E402
from project.data.loaders import build_datasets, build_loaders  # noqa: E402
from project.models.build import build_model  # noqa: E402
from project.optim import build_optimizer, build_scheduler  # noqa: E402
from project.schema import register_schemas  # noqa: E402
from project.trainer import trainer_class  # noqa: E402

REPEATS = 10


def median_save_ms(state_fn, path: Path) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        atomic_save(state_fn(), path)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> None:
    register_schemas()
    config_dir = str(Path(__file__).resolve().parents[1] / "configs")
    with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
        cfg = compose(
            "train", overrides=["trainer.max_epochs=1", "trainer.max_steps=5", *sys.argv[1:]]
        )
    with tempfile.TemporaryDirectory() as workdir:
        run_dir = Path(workdir)
        cfg.paths.output_dir = str(run_dir)
        OmegaConf.resolve(cfg)
        datasets = build_datasets(cfg.dataset, ("train", "val"))
        loaders = build_loaders(datasets, cfg.loader, seed=cfg.seed, device=torch.device("cpu"))
        model = build_model(cfg.model)
        optimizer = build_optimizer(cfg.optimizer, model)
        scheduler = build_scheduler(
            cfg.scheduler, optimizer, steps_per_epoch=len(loaders["train"]), max_epochs=1
        )
        policy = CheckpointPolicy(run_dir, **cfg.checkpoint)
        trainer = trainer_class(cfg.task)(
            model, optimizer, scheduler, trainer_cfg=cfg.trainer, logger_cfg=cfg.logger,
            device=torch.device("cpu"), run_dir=run_dir, checkpoint_policy=policy,
            run_config=OmegaConf.to_container(cfg),
        )  # fmt: skip
        trainer.fit(loaders["train"], loaders["val"])  # 5 steps, stops mid-epoch

        weights_path, full_path = run_dir / "weights.pt", run_dir / "full.pt"
        weights_ms = median_save_ms(model.state_dict, weights_path)
        full_ms = median_save_ms(lambda: policy._checkpoint(trainer.training_state, {}), full_path)
        weights_size, full_size = weights_path.stat().st_size, full_path.stat().st_size
        print(
            f"model {type(model).__name__}, {sum(p.numel() for p in model.parameters()):,} parameters"
        )
        print(
            f"weights only: {weights_size / 1024:8.1f} KiB, save {weights_ms:6.1f} ms (median of {REPEATS})"
        )
        print(
            f"full state:   {full_size / 1024:8.1f} KiB, save {full_ms:6.1f} ms (median of {REPEATS})"
        )
        print(f"checkpoint size_ratio={full_size / weights_size:.2f} save_ms={full_ms:.1f}")


if __name__ == "__main__":
    main()
