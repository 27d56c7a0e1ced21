"""Every config option composes, schemas reject bad types, range checks name the key."""

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

from project.errors import UserError
from project.schema import validate_config
from tests.conftest import CONFIG_DIR, compose_config

GROUPS = [
    "dataset",
    "model",
    "trainer",
    "loader",
    "optimizer",
    "scheduler",
    "checkpoint",
    "logger",
    "paths",
    "experiment",
    "debug",
]


def options(group: str) -> list[str]:
    return sorted(path.stem for path in (CONFIG_DIR / group).glob("*.yaml"))


# Options with a required (`???`) key, and a value for it.
# Options that refuse to run until the user sets a key: (group, option) -> that key.
REQUIRED = {
    ("dataset", "image_folder"): "dataset.num_classes=5",
    ("dataset", "file_list"): "dataset.num_classes=5",
    ("experiment", "distill"): "distill.teacher_ckpt=teacher.pt",
}


@pytest.mark.parametrize(
    "group,option", [(group, option) for group in GROUPS for option in options(group)]
)
def test_every_group_option_composes_and_validates(group, option):
    required = [REQUIRED[(group, option)]] if (group, option) in REQUIRED else []
    cfg = compose_config("train", [f"{group}={option}", *required])
    validate_config(cfg)
    # Everything outside Hydra's own runtime values resolves to plain data.
    container = OmegaConf.to_container(cfg, resolve=False)
    assert container["dataset"]["_target_"] and container["model"]["_target_"]


@pytest.mark.parametrize("group,option", sorted(REQUIRED))
def test_a_required_key_left_unset_is_named(group, option):
    cfg = compose_config("train", [f"{group}={option}"])
    key = REQUIRED[(group, option)].split("=")[0]
    with pytest.raises(UserError, match=rf"^{key}: required, but not set"):
        validate_config(cfg)


def test_required_optimizer_and_scheduler_options_exist():
    assert options("optimizer") == ["adamw", "sgd"]
    assert options("scheduler") == ["cosine", "none", "onecycle", "plateau", "step"]


def test_defaults_are_the_embedded_default():
    cfg = compose_config("train")
    assert cfg.dataset._target_ == "project.data.shapes.ShapesDataset"
    assert cfg.model._target_ == "project.models.cnn.SmallCNN"
    assert cfg.model.num_classes == cfg.dataset.num_classes == 5
    assert cfg.optimizer._partial_ and cfg.scheduler._partial_
    assert cfg.trainer.gpus == 0 and cfg.trainer.precision == "32"
    assert cfg.checkpoint.monitor == "val/acc" and cfg.checkpoint.mode == "max"


def test_debug_fast_limits_batches_and_epochs():
    cfg = compose_config("train", ["debug=fast"])
    assert cfg.trainer.max_epochs == 1
    assert cfg.trainer.limit_train_batches == 4
    assert cfg.trainer.limit_val_batches == 2


def test_experiment_preset_overrides_groups_and_keys():
    cfg = compose_config("train", ["experiment=example"])
    assert cfg.optimizer._target_ == "torch.optim.AdamW"
    assert cfg.scheduler._target_ == "project.optim.one_cycle"
    assert cfg.seed == 7 and cfg.model.width == 24


def test_evaluate_config_requires_a_checkpoint():
    cfg = compose_config("evaluate", ["ckpt=some/best.pt"])
    assert cfg.ckpt == "some/best.pt" and cfg.split == "test"


def test_hydra_run_folders_and_log_file():
    cfg = compose_config("train", return_hydra_config=True)
    assert "logs/train/runs/" in cfg.hydra.run.dir
    log_file = OmegaConf.to_container(cfg.hydra.job_logging, resolve=False)["handlers"]["file"][
        "filename"
    ]
    assert log_file == "${hydra.runtime.output_dir}/${hydra.job.name}.log"
    assert cfg.hydra.job.chdir is False


@pytest.mark.parametrize(
    "override,key",
    [
        ("trainer.gpus=abc", "trainer.gpus"),
        ("trainer.max_epochs=1.5", "trainer.max_epochs"),
        ("loader.batch_size=big", "loader.batch_size"),
        ("checkpoint.save_last=maybe", "checkpoint.save_last"),
        ("logger.log_every_n_steps=often", "logger.log_every_n_steps"),
    ],
)
def test_schema_rejects_wrong_types_naming_the_key(override, key):
    with pytest.raises(ConfigCompositionException) as error:
        compose_config("train", [override])
    cause = error.value.__cause__
    assert isinstance(cause, ValidationError)
    assert key in str(cause)


def test_schema_rejects_misspelt_keys():
    with pytest.raises(ConfigCompositionException) as error:
        compose_config("train", ["trainer.max_epoch=3"])
    assert "max_epoch" in str(error.value)


@pytest.mark.parametrize(
    "override,message",
    [
        ("trainer.max_epochs=-1", "trainer.max_epochs=-1 is out of range: must be >= 1"),
        ("trainer.max_epochs=0", "trainer.max_epochs=0 is out of range: must be >= 1"),
        ("trainer.gpus=-2", "trainer.gpus=-2 is out of range: must be >= 0"),
        ("trainer.accumulate_grad_batches=0", "trainer.accumulate_grad_batches=0 is out of range"),
        ("trainer.gradient_clip_val=-1", "trainer.gradient_clip_val=-1.0 is out of range"),
        (
            "trainer.early_stopping.patience=-1",
            "trainer.early_stopping.patience=-1 is out of range",
        ),
        (
            "trainer.precision=64",
            "trainer.precision='64' is not valid; choose one of: 32, bf16-mixed, 16-mixed",
        ),
        ("checkpoint.mode=best", "checkpoint.mode='best' is not valid; choose one of: min, max"),
        ("loader.batch_size=0", "loader.batch_size=0 is out of range: must be >= 1"),
        ("loader.num_workers=-1", "loader.num_workers=-1 is out of range"),
    ],
)
def test_range_checks_name_the_key_and_valid_values(override, message):
    cfg = compose_config("train", [override])
    with pytest.raises(UserError) as error:
        validate_config(cfg)
    assert message in str(error.value)


def test_valid_precisions_pass():
    for precision in ("32", "bf16-mixed", "16-mixed"):
        validate_config(compose_config("train", [f"trainer.precision={precision}"]))
