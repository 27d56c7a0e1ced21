"""Every config option composes, schemas reject bad types, range checks name the key."""

import json
import re

import pytest
import yaml
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

from project.errors import UserError
from project.schema import SCHEMAS, validate_config
from tests.conftest import CONFIG_DIR, REPO_ROOT, compose_config, run_script

GROUPS = [
    "dataset",
    "model",
    "trainer",
    "loader",
    "optimizer",
    "scheduler",
    "checkpoint",
    "logger",
    "callbacks",
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


@pytest.mark.parametrize(
    "group,option",  # those this checkout has (make new-project MINIMAL=1 drops distill)
    [key for key in sorted(REQUIRED) if (CONFIG_DIR / key[0] / f"{key[1]}.yaml").is_file()],
)
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


# The YAML file each schema-backed group composes by default.
DEFAULT_FILES = {
    "trainer": "trainer/default.yaml",
    "checkpoint": "checkpoint/default.yaml",
    "loader": "loader/default.yaml",
}


def logger_settings_written() -> dict:
    """Every configs/logger/ file sets its own flag (tensorboard: true, ...); the other
    keys it lists are settings shown at their defaults, e.g. mlflow.yaml's mlflow_uri."""
    written = {}
    for path in (CONFIG_DIR / "logger").glob("*.yaml"):
        settings = yaml.safe_load(path.read_text())
        settings.pop(path.stem, None)
        if path.stem == "none":
            assert settings.pop("progress_bar") is False
        written.update(settings)
    return written


def documented_defaults() -> dict[str, str]:
    """`group.key` -> default as docs/configuration.md's key table writes it; a row may
    list several keys of one group ("`trainer.a`, `b`" with "1, 2", or "`a` / `b`")."""
    page = (REPO_ROOT / "docs" / "configuration.md").read_text()
    found = {}
    for keys, defaults in re.findall(
        r"^\| (`[a-z_.]+`(?:(?:, | / )`[a-z_.]+`)*) \| ([^|]+) \|", page, re.M
    ):
        names = re.findall(r"`([a-z_.]+)`", keys)
        values = [v.strip().strip("`").strip('"') for v in re.split(r", | / ", defaults.strip())]
        if len(names) != len(values):
            continue
        group = names[0].rsplit(".", 1)[0]
        for name, value in zip(names, values, strict=True):
            found[name if name.startswith(f"{group.split('.')[0]}.") else f"{group}.{name}"] = value
    return found


def as_written(value) -> str:
    """A default the way YAML and the docs write it."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return str(value)


def test_yaml_schema_and_docs_defaults_agree():
    documented = documented_defaults()
    checked = 0
    for group, schema in SCHEMAS.items():
        defaults = OmegaConf.to_container(OmegaConf.structured(schema))
        if group == "logger":  # train.yaml takes the schema's defaults, all loggers off
            written = {**defaults, **logger_settings_written()}
        else:
            written = yaml.safe_load((CONFIG_DIR / DEFAULT_FILES[group]).read_text())
        for name, default in defaults.items():
            assert name in written, f"{DEFAULT_FILES[group]} does not list {name}"
            assert written[name] == default, (
                f"{group}.{name}: yaml {written[name]!r}, schema {default!r}"
            )
            nested = default if isinstance(default, dict) else {None: default}
            for sub, value in nested.items():
                key = f"{group}.{name}" + (f".{sub}" if sub else "")
                if key in documented:
                    assert documented[key] == as_written(value), (
                        f"{key}: docs {documented[key]!r}, schema {value!r}"
                    )
                    checked += 1
    assert checked >= 26  # every row of the trainer table


def test_help_lists_the_groups_a_user_picks_and_points_to_the_readme():
    result = run_script("train.py", "--help")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "README.md" in text and "docs/configuration.md" in text
    for group in ("dataset", "model", "trainer", "optimizer", "scheduler", "debug"):
        options = sorted(path.stem for path in (CONFIG_DIR / group).glob("*.yaml"))
        assert re.search(rf"^  {group} +{', '.join(options)}$", text, re.M), group
    assert "schema/" not in text and "quantize" not in text.split("== Config of this command")[0]


@pytest.mark.parametrize("preset", ["overfit", "profile", "anomaly", "fast"])
def test_debug_presets_compose_and_write_to_logs_debug(preset):
    cfg = compose_config("train", [f"debug={preset}"], return_hydra_config=True)
    assert cfg.task_name == "debug" and "/debug/runs/" in cfg.hydra.run.dir
    validate_config(compose_config("train", [f"debug={preset}"]))


def test_debug_overfit_fits_its_two_batches(tmp_path):
    result = run_script("train.py", "debug=overfit", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["train/loss"] < 0.05 and metrics["val/acc"] == 1.0
