# Hand-written plumbing (not exported from a notebook): the training config, its TOML file and `--set` overrides.
"""A training run's settings: five typed sections, read from TOML, overridden from the command line.

    $ cs336 train --config configs/cpu.toml --set optim.lr=3e-3 --set run.out_dir=runs/lr3e-3

    >>> cfg = config_from_dict({"optim": {"lr": 3e-3}}, ["run.out_dir=runs/x", "model.norm=post"])
    >>> cfg.optim.lr, cfg.run.out_dir, cfg.model.norm
    (0.003, 'runs/x', 'post')
    >>> config_from_dict({}, ["optim.learning_rate=1"])
    Traceback (most recent call last):
    ...
    cs336_basics.config.ConfigError: unknown config key optim.learning_rate; [optim] has lr, beta1, beta2, eps, weight_decay, grad_clip, embedding_lr_scale, head_lr_scale, bigram_lr_scale, bigram_weight_decay, ema_halflife

The sections are ``[model]`` (``model.ModelConfig``, the same dataclass the model is built from),
``[optim]``, ``[schedule]``, ``[data]`` and ``[run]``. Every field has a type and a default; a
``Literal`` type lists the values it may take. ``load_config`` reads a file (None: the defaults)
and applies ``section.key=value`` overrides, each parsed as a TOML value (``3e-3`` is a float,
``true`` a bool; text that does not parse is a string), then coerced to its field's type and
checked. An unknown section or key, a wrong type, a value out of range or not among the choices
is a ``ConfigError`` that names it. ``config_to_toml`` writes a config that reads back equal.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cs336_basics.model import ModelConfig

__all__ = ["ModelConfig", "OptimConfig", "ScheduleConfig", "DataConfig", "RunConfig", "TrainConfig", "ConfigError",
           "config_from_dict", "load_config", "config_to_toml"]


@dataclass
class OptimConfig:
    lr: float = 1e-3          # peak learning rate (the schedule's max_lr)
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 0.1  # applied to matrices only; gains and other 1-D params are not decayed
    grad_clip: float = 1.0    # max global L2 norm; 0 disables clipping
    # learning-rate multipliers (the schedule scales them alike); see train.optimizer_groups
    embedding_lr_scale: float = 1.0  # token embeddings (no weight decay when this is not 1)
    head_lr_scale: float = 1.0       # lm_head (and a tied embedding matrix); no weight decay when not 1
    bigram_lr_scale: float = 0.0     # the bigram table (model.bigram_buckets); 0: embedding_lr_scale
    bigram_weight_decay: float = 0.0  # its decoupled weight decay (shrinks it by lr * this a step)
    ema_halflife: float = 0.0  # > 0: also keep an average of the weights (WeightAverage, half-life in
                               # steps); validation logs it as val/ema_loss, load_model_from_run uses it


@dataclass
class ScheduleConfig:
    max_steps: int = 5000
    warmup_steps: int = 200
    cosine_steps: int = 0     # step where the cosine reaches min_lr; 0: max_steps
    min_lr_ratio: float = 0.1  # min_lr = lr * min_lr_ratio
    max_seconds: float = 0.0  # > 0: a wall-clock budget; the schedule follows elapsed / max_seconds instead
                              # of step / max_steps and the run stops at the first log step after it
                              # (max_steps stays an upper bound); 0: off
    short_context_until: float = 0.0  # > 0: until this fraction of the schedule, each batch's windows are
                              # cut in two, (2 x batch, context / 2): the same tokens, cheaper attention; 0: off


@dataclass
class DataConfig:
    train_tokens: str = "data/train.npy"
    valid_tokens: str = "data/valid.npy"
    tokenizer: str = ""       # saved tokenizer directory (optional; used by decoding)
    batch_size: int = 32      # global batch (sequences per optimizer step)
    sampler: Literal["uniform", "epoch"] = "uniform"  # uniform: random start positions (get_batch) | epoch:
                              # every window once per epoch, shuffled (epoch_batch_starts; better when data repeats)


@dataclass
class RunConfig:
    out_dir: str = "runs/default"
    seed: int = 0
    device: str = "auto"      # auto (cuda -> mps -> cpu) | cpu | cuda | cuda:N | mps
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 on CUDA, fp32 elsewhere (bf16 = autocast)
    tf32: bool = True         # TF32 matmuls on CUDA
    compile: bool = False     # torch.compile the model, the loss and the optimizer's update
    loss_chunk_rows: int = 0  # > 0: output layer + loss together, this many positions at a time
                              # (linear_cross_entropy: no (batch, seq, vocab) logits; faster on CPU)
    num_threads: int = 0      # CPU threads for torch; 0: torch's default
    deterministic: bool = False
    log_every: int = 10
    eval_every: int = 200
    eval_batches: int = 20
    checkpoint_every: int = 1000
    keep_checkpoints: bool = False  # also keep checkpoints/step_N.pt at every checkpoint
    progress: bool = True     # tqdm bar on stderr
    peak_flops: float = 0.0   # for MFU; 0: measure a matmul peak on the device at start
    wandb: bool = False
    wandb_project: str = "cs336-basics"
    wandb_mode: Literal["online", "offline"] = "online"


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    data: DataConfig = field(default_factory=DataConfig)
    run: RunConfig = field(default_factory=RunConfig)


class ConfigError(ValueError):
    """A config file or override that names an unknown key or holds a bad value."""


# Ranges (the choices come from the Literal types)
_POSITIVE = {("model", k) for k in ModelConfig.SIZES} | {
    ("schedule", "max_steps"), ("data", "batch_size"), ("run", "log_every"), ("run", "eval_every"),
    ("run", "eval_batches"), ("run", "checkpoint_every"),
}
_NON_NEGATIVE = {("model", "d_ff"), ("model", "logit_softcap"), ("optim", "lr"), ("optim", "eps"), ("optim", "weight_decay"),
                 ("optim", "embedding_lr_scale"), ("optim", "head_lr_scale"), ("optim", "ema_halflife"),
                 ("optim", "bigram_lr_scale"), ("optim", "bigram_weight_decay"),
                 ("optim", "grad_clip"), ("schedule", "warmup_steps"), ("schedule", "cosine_steps"),
                 ("schedule", "min_lr_ratio"), ("schedule", "max_seconds"), ("run", "num_threads"), ("run", "peak_flops"),
                 ("run", "loss_chunk_rows")}


def _sections() -> dict[str, type]:
    return {f.name: f.default_factory for f in dataclasses.fields(TrainConfig)}


def _coerce(value: Any, typ: Any, where: str, raw: str | None = None) -> Any:
    if typing.get_origin(typ) is Literal:  # a choice: a string here, checked against the choices in _validate
        typ = str
    kind = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(typ, typ.__name__)
    bad = ConfigError(f"{where} must be {kind}, got {value!r}")
    if typ is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if typ is int:
        if isinstance(value, float) and value.is_integer():  # 1e6 steps
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if typ is str:
        if isinstance(value, str):
            return value
        if raw is not None:  # an override like run.out_dir=2024 parsed as a number: keep the text
            return raw
        raise bad
    raise TypeError(f"unsupported config field type {typ}")


def _validate(section: str, key: str, value: Any, typ: Any) -> None:
    where = f"{section}.{key}"
    choices = typing.get_args(typ) if typing.get_origin(typ) is Literal else None
    if choices is not None and value not in choices:
        raise ConfigError(f"{where} = {value!r} is not one of {', '.join(choices)}")
    if (section, key) in _POSITIVE and not value > 0:
        raise ConfigError(f"{where} must be > 0, got {value!r}")
    if (section, key) in _NON_NEGATIVE and not value >= 0:
        raise ConfigError(f"{where} must be >= 0, got {value!r}")
    if (section, key) == ("schedule", "short_context_until") and not 0 <= value <= 1:
        raise ConfigError(f"{where} is a fraction of the schedule, in [0, 1] (0: off), got {value!r}")
    if key in ("beta1", "beta2") and not 0 <= value < 1:
        raise ConfigError(f"{where} must be in [0, 1), got {value!r}")
    if (section, key) == ("run", "out_dir") and not value.strip():  # "" would train into the current folder
        raise ConfigError(f"{where} must name a folder for the run (e.g. runs/my-run), got {value!r}")


def _set(config: TrainConfig, section: str, key: str, value: Any, raw: str | None = None) -> None:
    sections = _sections()
    if section not in sections:
        raise ConfigError(f"unknown config section [{section}]; the sections are {', '.join(sections)}")
    part = getattr(config, section)
    hints = {name: hint for name, hint in typing.get_type_hints(type(part)).items()
             if typing.get_origin(hint) is not typing.ClassVar}
    if key not in hints:
        raise ConfigError(f"unknown config key {section}.{key}; [{section}] has {', '.join(hints)}")
    value = _coerce(value, hints[key], f"{section}.{key}", raw)
    _validate(section, key, value, hints[key])
    setattr(part, key, value)


def config_from_dict(data: dict[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """A TrainConfig from nested dicts ({"model": {...}, ...}) plus "section.key=value" overrides."""
    config = TrainConfig()
    for section, values in data.items():
        if not isinstance(values, dict):
            raise ConfigError(f"config entry {section!r} must be a [section] table; the sections are {', '.join(_sections())}")
        for key, value in values.items():
            _set(config, section, key, value)
    for item in overrides:
        name, sep, raw = item.partition("=")
        section, dot, key = name.strip().partition(".")
        if not sep or not dot or not key:
            raise ConfigError(f"override {item!r} must look like section.key=value (e.g. optim.lr=3e-3)")
        raw = raw.strip()
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw  # unquoted text, e.g. run.out_dir=runs/x
        _set(config, section, key, value, raw=raw.strip("\"'"))
    return config


def load_config(path: str | os.PathLike | None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a TOML config (None: the defaults) and apply "section.key=value" overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist; see configs/*.toml for presets")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"config file {str(path)!r} is not valid TOML: {err}") from None
    return config_from_dict(data, overrides)


def unrecorded_defaults_dropped(settings: dict[str, Any], recorded: dict[str, Any],
                                defaults: dict[str, Any]) -> dict[str, Any]:
    """``settings`` less those that ``recorded`` lacks and that hold their default value.

    A setting newer than a record (a checkpoint's model, a pipeline stage's options) was at its default in
    the run that wrote it (new switches default to off), so an old run still matches today's settings:
    compare the result with ``recorded``.

    >>> unrecorded_defaults_dropped({"lr": 3e-3, "qk_norm": False}, {"lr": 3e-3}, {"lr": 1e-3, "qk_norm": False})
    {'lr': 0.003}
    >>> unrecorded_defaults_dropped({"lr": 3e-3, "qk_norm": True}, {"lr": 3e-3}, {"lr": 1e-3, "qk_norm": False})
    {'lr': 0.003, 'qk_norm': True}
    """
    return {key: value for key, value in settings.items()
            if key in recorded or key not in defaults or value != defaults[key]}


def config_to_toml(config: TrainConfig) -> str:
    """The config as TOML text that load_config reads back to an equal TrainConfig.

    >>> config_to_toml(TrainConfig()).splitlines()[:3]
    ['[model]', 'vocab_size = 10000', 'context_length = 256']
    """
    def fmt(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, float):
            return repr(v) if math.isfinite(v) else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf"))
        if isinstance(v, int):
            return str(v)
        return json.dumps(v)
    lines = []
    for section in _sections():
        lines.append(f"[{section}]")
        lines += [f"{k} = {fmt(v)}" for k, v in dataclasses.asdict(getattr(config, section)).items()]
        lines.append("")
    return "\n".join(lines)
