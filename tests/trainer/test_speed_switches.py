"""trainer.channels_last, trainer.compile and trainer.cudnn_benchmark."""

import logging

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from project.data.batches import to_channels_last
from project.errors import UserError
from project.models.cnn import SmallCNN
from project.schema import LoggerConfig, TrainerConfig
from project.seeding import make_deterministic
from project.trainer import ClassificationTrainer

QUIET = LoggerConfig(tensorboard=False, progress_bar=False)


def images(samples: int = 32) -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    data = TensorDataset(
        torch.randn(samples, 3, 16, 16, generator=generator),
        torch.randint(0, 5, (samples,), generator=generator),
    )
    return DataLoader(data, batch_size=8)


def train(**switches) -> tuple[ClassificationTrainer, dict]:
    torch.manual_seed(0)
    model = SmallCNN(num_classes=5, width=8)
    trainer = ClassificationTrainer(
        model,
        torch.optim.SGD(model.parameters(), lr=0.05),
        trainer_cfg=TrainerConfig(max_epochs=2, **switches),
        logger_cfg=QUIET,
        device=torch.device("cpu"),
    )
    return trainer, trainer.fit(images(), images())


def test_channels_last_trains_the_same_model_in_nhwc_and_saves_loadable_weights():
    plain, plain_metrics = train()
    nhwc, nhwc_metrics = train(channels_last=True)
    conv_weights = [p for p in nhwc.module.parameters() if p.dim() == 4]
    assert conv_weights and all(
        p.is_contiguous(memory_format=torch.channels_last) for p in conv_weights
    )
    assert nhwc_metrics["val/loss"] == pytest.approx(plain_metrics["val/loss"], rel=1e-4)
    fresh = SmallCNN(num_classes=5, width=8)
    fresh.load_state_dict(nhwc.training_state()["model"])  # into an ordinary model
    batch = next(iter(images()))[0]
    nhwc.module.eval(), fresh.eval()
    with torch.no_grad():
        assert torch.allclose(fresh(batch), nhwc.module(to_channels_last(batch)), atol=1e-5)
    # Only 4-D float batches change layout: masks and labels stay as they are.
    mask = torch.zeros(2, 4, 4, dtype=torch.long)
    converted, kept = to_channels_last((torch.zeros(2, 3, 4, 4), mask))
    assert converted.is_contiguous(memory_format=torch.channels_last) and kept is mask


def test_compile_keeps_checkpoints_plain_and_times_its_first_step_apart(caplog):
    with caplog.at_level(logging.INFO):
        # aot_eager traces and compiles without generating C++, so it runs on any machine.
        compiled, metrics = train(compile=True, compile_backend="aot_eager")
    _, plain_metrics = train()
    assert isinstance(compiled.model, torch._dynamo.eval_frame.OptimizedModule)
    assert not any(key.startswith("_orig_mod.") for key in compiled.training_state()["model"])
    assert metrics["val/loss"] == pytest.approx(plain_metrics["val/loss"], rel=1e-4)
    first_epoch = [r.message for r in caplog.records if r.message.startswith("epoch 1/2")][0]
    assert "train/compile_seconds=" in first_epoch
    assert "train/compile_seconds" not in metrics  # the last epoch compiled nothing
    assert any("torch.compile: the first step took" in r.message for r in caplog.records)


def test_cudnn_benchmark_is_on_with_cuda_unless_deterministic_or_switched_off():
    saved = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    try:
        assert make_deterministic(False, on_cuda=True) is True
        assert make_deterministic(False, on_cuda=False) is False
        assert make_deterministic(True, on_cuda=True) is False
        assert make_deterministic(False, on_cuda=True, cudnn_benchmark=False) is False
        assert torch.backends.cudnn.benchmark is False
        with pytest.raises(
            UserError, match="trainer.cudnn_benchmark=true contradicts trainer.deterministic=true"
        ):
            make_deterministic(True, on_cuda=True, cudnn_benchmark=True)
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved


@pytest.mark.slow  # ~1 min: 3 epochs of the default run
def test_ema_validates_no_worse_than_the_plain_weights_on_the_default_run(tmp_path):
    from omegaconf import OmegaConf

    from project.checkpoint.format import load_checkpoint
    from project.data.loaders import build_datasets, build_loaders
    from project.models.build import build_model
    from project.trainer import ClassificationTrainer
    from tests.conftest import run_script

    result = run_script(
        "train.py", "trainer.ema_decay=0.999", "trainer.max_epochs=3",
        f"hydra.run.dir={tmp_path}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    cfg = OmegaConf.create(state["config"])
    val = build_loaders(
        build_datasets(cfg.dataset, ("val",)), cfg.loader, seed=cfg.seed, device=torch.device("cpu")
    )["val"]
    accuracy = {}
    for weights in ("ema", "model"):
        model = build_model(cfg.model, initialize=False)
        model.load_state_dict(state[weights])
        trainer = ClassificationTrainer(
            model, None, trainer_cfg=cfg.trainer, logger_cfg=cfg.logger, device=torch.device("cpu")
        )
        accuracy[weights] = trainer.evaluate(val)["val/acc"]
    assert accuracy["ema"] >= accuracy["model"] - 0.01, accuracy
    assert accuracy["ema"] == pytest.approx(state["metrics"]["val/acc"])
