"""Typed schemas for the trainer, checkpoint, loader and logger config groups.

Registered in Hydra's ConfigStore under `schema/<group>`; each YAML of those groups
lists its schema first in its defaults. OmegaConf then rejects a wrong type at compose
time (`trainer.gpus=abc`) and a misspelt key (`trainer.max_epoch=3`). Ranges and choices
cannot be expressed in a dataclass type, so each field carries them in its metadata and
`validate_config` checks them before any work starts.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError

from project.data.background import MAX_BACKGROUND_PREFETCH
from project.errors import UserError


def _field(default: Any = None, *, resume: bool = False, factory: Any = None, **rules: Any) -> Any:
    """A dataclass field with validation rules (min, max, above and below: exclusive
    bounds, choices) and `resume=True` when `resume=` may change it: how long and how a
    run goes, not what it trains (project/resume.py refuses the others)."""
    metadata = {**rules, "resume": resume}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


# `resume=True`: `resume=` may change the key (how long and how the run goes, what it logs
# and saves); anything else would make the result another experiment than the one the
# checkpoint continues, and project/resume.py refuses it.


@dataclass
class EarlyStoppingConfig:
    # validations without improvement before stopping; 0 = off
    patience: int = _field(0, resume=True, min=0)
    # smallest change of the monitored metric that counts
    min_delta: float = _field(0.0, resume=True, min=0.0)


@dataclass
class TrainerConfig:
    max_epochs: int = _field(8, resume=True, min=1)
    gpus: int = _field(0, resume=True, min=0)
    strategy: str = _field("auto", resume=True, choices=("auto", "ddp", "dp"))
    # DDP processes on the CPU (gloo) when gpus=0 (a mid-epoch checkpoint refuses another)
    num_processes: int = _field(1, resume=True, min=1)
    sync_bn: bool = _field(False)
    # CUDA indices this job uses; null = 0..gpus-1
    devices: list[int] | None = _field(None, resume=True)
    precision: str = _field("32", choices=("32", "bf16-mixed", "16-mixed"))
    accumulate_grad_batches: int = _field(1, min=1)
    gradient_clip_val: float = _field(0.0, min=0.0)  # max total grad norm; 0 = off
    deterministic: bool = _field(False)
    limit_train_batches: int | None = _field(None, resume=True, min=1)  # null = all
    # debug: train and validate on the same first N batches (the loss should reach ~0)
    overfit_batches: int = _field(0, min=0)
    # null = all, 0 = no validation
    limit_val_batches: int | None = _field(None, resume=True, min=0)
    check_val_every_n_epoch: int = _field(1, resume=True, min=1)
    # stop after N optimizer steps in all; null = no limit
    max_steps: int | None = _field(None, resume=True, min=1)
    ema_decay: float = _field(0.0, min=0.0, below=1.0)  # 0 = off; e.g. 0.999
    early_stopping: EarlyStoppingConfig = _field(factory=EarlyStoppingConfig, resume=True)
    # speed switches
    # model and image batches in channels-last memory format
    channels_last: bool = _field(False, resume=True)
    compile: bool = _field(False, resume=True)  # torch.compile the model
    compile_mode: str = _field(
        "default",
        resume=True,
        choices=("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
    )
    # torch.compile backend; aot_eager compiles fast, without a C++ compiler
    compile_backend: str = _field("inductor", resume=True)
    cudnn_benchmark: bool | None = _field(None, resume=True)  # null = on with CUDA
    # training insight
    # gradient norms every N optimizer steps; 0 = off
    log_grad_norm: int = _field(0, resume=True, min=0)
    detect_anomaly: bool = _field(False, resume=True)  # autograd anomaly detection (slow)
    nan_policy: str = _field("stop", resume=True, choices=("stop", "skip_batch"))
    profile: bool = _field(False, resume=True)  # torch.profiler over a few steps


@dataclass
class CheckpointConfig:
    monitor: str = _field("val/acc")
    mode: str = _field("max", choices=("min", "max"))
    # keep the k best snapshots; 0 none, -1 all
    save_top_k: int = _field(1, resume=True, min=-1)
    save_last: bool = _field(True, resume=True)
    # snapshots and last.pt at every Nth validation
    every_n_epochs: int = _field(1, resume=True, min=1)
    # also last.pt every N optimizer steps
    every_n_steps: int | None = _field(None, resume=True, min=1)
    # snapshot names; may use metrics
    filename: str = _field("epoch={epoch:03d}-step={step:06d}", resume=True)


@dataclass
class LoaderConfig:
    batch_size: int = _field(128, min=1)
    # null = 2 x batch_size
    eval_batch_size: int | None = _field(None, resume=True, min=1)
    num_workers: int = _field(0, resume=True, min=0)
    pin_memory: bool | None = _field(None, resume=True)  # null = on when training on CUDA
    persistent_workers: bool = _field(True, resume=True)
    # null = PyTorch's default (2)
    prefetch_factor: int | None = _field(None, resume=True, min=1)
    drop_last: bool = _field(True)
    # batches from one in-memory tensor, augmented whole (project/data/in_memory.py):
    # null = where the dataset allows it, true = required, false = the DataLoader path
    in_memory: bool | None = _field(None)
    # batches a background thread keeps ready (project/data/background.py); 0 = off
    background_prefetch: int = _field(0, min=0, max=MAX_BACKGROUND_PREFETCH)


@dataclass
class LoggerConfig:
    # Which trackers are on: configs/logger/<name>.yaml sets its flag (project/trackers/).
    tensorboard: bool = _field(False, resume=True)  # TensorBoard events in the run folder
    csv: bool = _field(False, resume=True)  # metrics.csv, one row per epoch
    mlflow: bool = _field(False, resume=True)  # an MLflow run (optional extra `tracking`)
    wandb: bool = _field(False, resume=True)  # a W&B run (optional extra `wandb`)
    # MLflow tracking server or store; null = the SQLite store <paths.log_dir>/mlflow.db
    mlflow_uri: str | None = _field(None, resume=True)
    mlflow_experiment: str = _field("default", resume=True)  # MLflow experiment name
    wandb_project: str | None = _field(None, resume=True)  # null = the task_name (train, debug)
    wandb_entity: str | None = _field(None, resume=True)  # W&B user or team; null = yours
    # offline: files under <run>/wandb, no account or network; online: live (wandb login)
    wandb_mode: str = _field("offline", resume=True, choices=("offline", "online", "disabled"))
    log_every_n_steps: int = _field(50, resume=True, min=1)
    progress_bar: bool | None = _field(None, resume=True)  # null = on when stderr is a terminal


SCHEMAS: dict[str, type] = {
    "trainer": TrainerConfig,
    "checkpoint": CheckpointConfig,
    "loader": LoaderConfig,
    "logger": LoggerConfig,
}


def register_schemas() -> None:
    store = ConfigStore.instance()
    for group, schema in SCHEMAS.items():
        store.store(group=f"schema/{group}", name="base", node=schema)
    # `python train.py --help` lists the groups of configs/ (configs/hydra/default.yaml).
    OmegaConf.register_new_resolver("config_groups", config_group_listing, replace=True)


def config_group_listing() -> str:
    """The groups train.yaml's defaults list picks (not hydra's, not export-only ones),
    each with the options in configs/<group>/."""
    root = Path(__file__).resolve().parents[1] / "configs"
    defaults = OmegaConf.load(root / "train.yaml").defaults
    groups = [next(iter(entry)) for entry in defaults if isinstance(entry, DictConfig)]
    lines = []
    for group in groups:
        if group != "hydra" and (root / group).is_dir():
            options = ", ".join(sorted(path.stem for path in (root / group).glob("*.yaml")))
            lines.append(f"  {group:<15} {options}")
    return "\n".join(lines)


# Numbers in the free-form groups (model, dataset, optimizer, scheduler), checked by key
# name wherever they appear at a group's top level, so a fork's own model or dataset config
# gets the same checks where it uses the same keys. "kind": int or number (int or float).
KEY_RULES: dict[str, dict[str, Any]] = {
    "lr": {"kind": "number", "above": 0.0},
    "max_lr": {"kind": "number", "above": 0.0},
    "momentum": {"kind": "number", "min": 0.0, "max": 1.0},
    "weight_decay": {"kind": "number", "min": 0.0},
    "eps": {"kind": "number", "above": 0.0},
    "pct_start": {"kind": "number", "above": 0.0, "below": 1.0},
    "warmup_epochs": {"kind": "number", "min": 0.0},
    "min_lr_ratio": {"kind": "number", "min": 0.0, "max": 1.0},
    "gamma": {"kind": "number", "above": 0.0},
    "factor": {"kind": "number", "above": 0.0, "below": 1.0},
    "patience": {"kind": "int", "min": 0},
    "width": {"kind": "int", "min": 1},
    "width_mult": {"kind": "number", "above": 0.0},
    "depth": {"kind": "int", "min": 1},
    "in_channels": {"kind": "int", "min": 1},
    "hidden_size": {"kind": "int", "min": 1},
    "embedding_dim": {"kind": "int", "min": 1},
    "num_layers": {"kind": "int", "min": 1},
    "vocab_size": {"kind": "int", "min": 2},
    "dropout": {"kind": "number", "min": 0.0, "below": 1.0},
    "num_classes": {"kind": "int", "min": 1},
    "image_size": {"kind": "int", "min": 1},
    "train_size": {"kind": "int", "min": 1},
    "val_size": {"kind": "int", "min": 1},
    "test_size": {"kind": "int", "min": 1},
    "noise": {"kind": "number", "min": 0.0},
    "val_fraction": {"kind": "number", "above": 0.0, "below": 1.0},
    "min_length": {"kind": "int", "min": 1},
    "max_length": {"kind": "int", "min": 1},
    "seed": {"kind": "int"},
}
FREE_FORM_GROUPS = ("model", "dataset", "optimizer", "scheduler")
KINDS = {"int": ((int,), "an integer"), "number": ((int, float), "a number")}


def typed(group: str, node: Any) -> Any:
    """The group's config as its schema's dataclass object (`TrainerConfig`, ...): how config
    reaches code. Keys a node lacks (a checkpoint written before they existed) take their
    defaults."""
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(SCHEMAS[group]), node))


def may_change_on_resume(key: str) -> bool:
    """Whether `resume=` accepts an override of the dotted `key` (e.g. trainer.max_epochs):
    declared by `resume=True` on its schema field (or on a field holding it)."""
    group, *path = key.split(".")
    schema = SCHEMAS.get(group)
    for name in path:
        schema_field = next((f for f in fields(schema) if f.name == name), None) if schema else None
        if schema_field is None:
            return False
        if schema_field.metadata.get("resume"):
            return True
        schema = schema_field.type if is_dataclass(schema_field.type) else None
    return False


def _check(key: str, value: Any, rules: dict[str, Any]) -> None:
    if value is None:
        return
    if "kind" in rules:
        types, described = KINDS[rules["kind"]]
        if isinstance(value, bool) or not isinstance(value, types):
            raise UserError(f"{key}={value!r} is not valid: must be {described}")
    if "choices" in rules and value not in rules["choices"]:
        valid = ", ".join(str(choice) for choice in rules["choices"])
        raise UserError(f"{key}={value!r} is not valid; choose one of: {valid}")
    if "min" in rules and value < rules["min"]:
        raise UserError(f"{key}={value} is out of range: must be >= {rules['min']}")
    if "above" in rules and value <= rules["above"]:
        raise UserError(f"{key}={value} is out of range: must be > {rules['above']}")
    if "max" in rules and value > rules["max"]:
        raise UserError(f"{key}={value} is out of range: must be <= {rules['max']}")
    if "below" in rules and value >= rules["below"]:
        raise UserError(f"{key}={value} is out of range: must be < {rules['below']}")


def validate_node(prefix: str, node: DictConfig, schema: type) -> None:
    for schema_field in fields(schema):
        key = f"{prefix}.{schema_field.name}"
        value = node[schema_field.name]
        if is_dataclass(schema_field.type):
            validate_node(key, value, schema_field.type)
        elif schema_field.metadata:
            _check(key, value, dict(schema_field.metadata))


def _missing_keys(node: Any, prefix: str = "") -> Iterator[str]:
    """Dotted keys whose value is `???` (OmegaConf.missing_keys resolves interpolations,
    and so fails on `${dataset.num_classes}` before naming the key)."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        name = f"{prefix}{key}" if isinstance(node, dict) else f"{prefix[:-1]}[{key}]."
        if value == "???":
            yield name.rstrip(".")
        elif isinstance(value, dict | list):
            yield from _missing_keys(value, f"{name}." if isinstance(node, dict) else name)


def validate_config(cfg: DictConfig) -> None:
    """Check ranges and choices of every schema-backed group present in `cfg`, and that
    no required value (`???` in a YAML) is left unset."""
    missing = list(_missing_keys(OmegaConf.to_container(cfg, resolve=False)))
    if missing:
        raise UserError(
            f"{', '.join(missing)}: required, but not set; give a value on the command line, e.g. {missing[0]}=..."
        )
    for group, schema in SCHEMAS.items():
        if group in cfg:
            validate_node(group, cfg[group], schema)
    if cfg.get("task") == "classification" and "dataset" in cfg:
        classes = cfg.dataset.get("num_classes")
        if isinstance(classes, int) and classes < 2:
            raise UserError(
                f"dataset.num_classes={classes}: a classification task needs at least 2 classes "
                "(with one, every prediction is right and the run learns nothing)"
            )
    if "seed" in cfg:
        _check("seed", cfg.seed, KEY_RULES["seed"])
    for group in FREE_FORM_GROUPS:
        node = cfg.get(group)
        if not isinstance(node, DictConfig):
            continue
        for key in node:
            if key in KEY_RULES:
                try:
                    value = node[key]
                except InterpolationResolutionError:
                    continue  # e.g. lstm's ${dataset.vocab_size} on an image dataset: the build says so
                _check(f"{group}.{key}", value, KEY_RULES[key])
