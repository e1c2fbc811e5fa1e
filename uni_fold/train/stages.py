"""Training settings: the optimiser / runtime knobs (:class:`TrainConfig`), AF2's two
training stages (:data:`STAGES`, Jumper et al. 2021, Suppl. Table 4) and the run
configuration that joins them with the model config (:class:`RunConfig`).

A run is configured in this order, each step overriding the one before:

1. the model preset (``uni_fold.config.model_config``), e.g. ``model_1_ptm`` or ``tiny``;
2. the stage: ``initial_training`` or ``finetune`` (or ``none`` to keep the preset's
   input sizes and the :class:`TrainConfig` defaults);
3. ``--set key=value`` overrides. The first word of the key picks the tree:
   ``model.*`` / ``data.*`` the model config (architecture, input processing; saved as
   ``config.json`` with every checkpoint), ``loss.<config path>`` only the config the
   loss reads (loss weights), ``train.*`` the :class:`TrainConfig`, and ``train_data.*``
   the :class:`~uni_fold.data.train_config.TrainingDataConfig` (crop size, filters,
   distillation ratio). Values are read as JSON, then YAML scalars, else kept as text.

The stage's loss weights go to the loss config only, never to the model config: a head
whose loss weight is 0 in initial training (experimentally resolved) is still built, so
the same checkpoint loads in the fine-tuning stage that trains it.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from uni_fold.config import Config, apply_overrides, copy_config, model_config
from uni_fold.data.train_config import TrainingDataConfig

logger = logging.getLogger(__name__)

__all__ = [
    "TrainConfig",
    "Stage",
    "STAGES",
    "RunConfig",
    "build_run_config",
    "parse_set_overrides",
    "parse_value",
]

PRECISIONS = ("auto", "fp32", "bf16")
STRATEGIES = ("ddp", "deepspeed")
ATTENTION_BACKENDS = ("auto", "torch", "sdpa", "deepspeed")


@dataclass
class TrainConfig:
    """How the trainer optimises (Suppl. Section 1.11.3 for AF2's values).

    Attributes:
        learning_rate: Adam's base learning rate (AF2: 1e-3, fine-tuning 5e-4).
        adam_beta1, adam_beta2, adam_eps: Adam's moments and epsilon (AF2: 0.9, 0.999, 1e-6).
        warmup_steps: linear warm-up of the learning rate over this many updates (AF2:
            128,000 samples = 1000 steps of 128 examples; none in fine-tuning).
        decay_every, decay_factor: the learning rate is multiplied by ``decay_factor``
            every ``decay_every`` updates (AF2: 0.95 every 50,000).
        grad_clip_norm: clip the gradient to this global L2 norm (AF2: 0.1); 0 disables.
        ema_decay: decay of the exponential moving average of the weights (AF2: 0.999);
            the EMA weights are validated and saved.
        grad_accum_steps: examples per rank per update (gradient accumulation); the
            global batch is ``world_size * grad_accum_steps`` (AF2: 128).
        max_steps: updates to run; None: the stage's sample count over the global batch.
        seed: seed of the model initialisation, the data stream and the dropout masks.
        precision: ``bf16`` (autocast in the trunk, fp32 master weights), ``fp32``, or
            ``auto`` (bf16 on CUDA, fp32 on the CPU).
        checkpoint_blocks: activation checkpointing of every Evoformer block.
        chunk_size: chunk size of the trunk's attention and triangle ops (None: off).
        attention_backend: ``torch``, ``sdpa``, ``deepspeed``, or ``auto`` (sdpa on
            CUDA, torch on the CPU); see :class:`uni_fold.model.runtime.RuntimeConfig`.
        strategy: ``ddp`` (torch DistributedDataParallel) or ``deepspeed`` (ZeRO).
        zero_stage: DeepSpeed ZeRO stage (1 or 2).
        checkpoint_every: write a checkpoint every this many updates (and at the end).
        keep_checkpoints: keep the newest this many checkpoints (0 keeps all).
        validate_every: validate with the EMA weights every this many updates (0: never).
        log_every: console log every this many updates (``metrics.jsonl`` gets every one).
        num_workers: data-loading worker processes per rank.
        init_from: initial weights: an AF2 ``params_model_*.npz``, or a checkpoint folder
            (``model.safetensors`` + ``config.json``, e.g. a training checkpoint's
            ``ema/``); None: random initialisation.
        max_consecutive_skips: stop with an error after this many steps in a row whose
            loss or gradient was not finite.
        tensorboard: also write TensorBoard logs when ``tensorboard`` is installed.
    """

    learning_rate: float = 1e-3
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-6
    warmup_steps: int = 1000
    decay_every: int = 50_000
    decay_factor: float = 0.95
    grad_clip_norm: float = 0.1
    ema_decay: float = 0.999
    grad_accum_steps: int = 1
    max_steps: int | None = None
    seed: int = 0
    precision: str = "auto"
    checkpoint_blocks: bool = True
    chunk_size: int | None = None
    attention_backend: str = "auto"
    strategy: str = "ddp"
    zero_stage: int = 2
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    validate_every: int = 1000
    log_every: int = 10
    num_workers: int = 2
    init_from: str | None = None
    max_consecutive_skips: int = 50
    tensorboard: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming every bad field (called again after overrides)."""
        problems = []
        if not self.learning_rate > 0:
            problems.append(f"learning_rate must be > 0, got {self.learning_rate}")
        if not (0 <= self.adam_beta1 < 1 and 0 <= self.adam_beta2 < 1):
            problems.append("adam_beta1 and adam_beta2 must be in [0, 1)")
        if not self.adam_eps > 0:
            problems.append(f"adam_eps must be > 0, got {self.adam_eps}")
        if self.warmup_steps < 0 or self.decay_every < 1:
            problems.append("warmup_steps must be >= 0 and decay_every >= 1")
        if not 0 < self.decay_factor <= 1:
            problems.append(f"decay_factor must be in (0, 1], got {self.decay_factor}")
        if self.grad_clip_norm < 0:
            problems.append(f"grad_clip_norm must be >= 0 (0 disables), got "
                            f"{self.grad_clip_norm}")
        if not 0 <= self.ema_decay < 1:
            problems.append(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.grad_accum_steps < 1:
            problems.append(f"grad_accum_steps must be >= 1, got {self.grad_accum_steps}")
        if self.max_steps is not None and self.max_steps < 0:
            problems.append(f"max_steps must be >= 0, got {self.max_steps}")
        if self.seed < 0:
            problems.append(f"seed must be >= 0, got {self.seed}")
        if self.precision not in PRECISIONS:
            problems.append(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.attention_backend not in ATTENTION_BACKENDS:
            problems.append(f"attention_backend must be one of {ATTENTION_BACKENDS}, got "
                            f"{self.attention_backend!r}")
        if self.strategy not in STRATEGIES:
            problems.append(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.zero_stage not in (1, 2):
            problems.append(f"zero_stage must be 1 or 2, got {self.zero_stage}")
        if self.checkpoint_every < 1 or self.keep_checkpoints < 0:
            problems.append("checkpoint_every must be >= 1 and keep_checkpoints >= 0")
        if self.validate_every < 0 or self.log_every < 1 or self.num_workers < 0:
            problems.append("validate_every and num_workers must be >= 0, log_every >= 1")
        if self.max_consecutive_skips < 1:
            problems.append("max_consecutive_skips must be >= 1")
        if problems:
            raise ValueError("train config: " + "; ".join(problems))


@dataclass(frozen=True)
class Stage:
    """One row of Suppl. Table 4 (Jumper et al. 2021).

    Attributes:
        name: ``initial_training`` or ``finetune``.
        crop_size: residues per example (``N_res``).
        max_msa_clusters: MSA cluster centres (``N_seq``).
        max_extra_msa: extra MSA rows (``N_extra_seq``).
        max_templates: templates (``N_templ``).
        learning_rate: base learning rate.
        warmup_steps: learning-rate warm-up in updates of 128 examples.
        structural_violation_loss_weight: weight of the violation loss.
        experimentally_resolved_weight: weight of the experimentally-resolved loss.
        num_samples: training examples of the stage (AF2: ~10 M and ~1.5 M).
        init: where the stage's weights come from (documentation).
    """

    name: str
    crop_size: int
    max_msa_clusters: int
    max_extra_msa: int
    max_templates: int
    learning_rate: float
    warmup_steps: int
    structural_violation_loss_weight: float
    experimentally_resolved_weight: float
    num_samples: int
    init: str

    def model_overrides(self) -> dict[str, Any]:
        """Input-processing settings of the model config (dotted paths)."""
        return {
            "data.max_msa_clusters": self.max_msa_clusters,
            "data.max_extra_msa": self.max_extra_msa,
            "data.max_templates": self.max_templates,
            "model.embeddings_and_evoformer.template.max_templates": self.max_templates,
            # AF2 trains on a random subset of the templates (Suppl. 1.2.7).
            "data.subsample_templates": True,
        }

    def loss_overrides(self) -> dict[str, Any]:
        """Loss weights, applied to the loss config only."""
        return {
            "model.heads.structure_module.structural_violation_loss_weight":
                self.structural_violation_loss_weight,
            "model.heads.experimentally_resolved.weight": self.experimentally_resolved_weight,
        }


#: Suppl. Table 4: initial training from random weights, then fine-tuning.
STAGES: dict[str, Stage] = {
    "initial_training": Stage(
        name="initial_training", crop_size=256, max_msa_clusters=128, max_extra_msa=1024,
        max_templates=4, learning_rate=1e-3, warmup_steps=1000,
        structural_violation_loss_weight=0.0, experimentally_resolved_weight=0.0,
        num_samples=10_000_000, init="random",
    ),
    "finetune": Stage(
        name="finetune", crop_size=384, max_msa_clusters=512, max_extra_msa=5120,
        max_templates=4, learning_rate=5e-4, warmup_steps=0,
        structural_violation_loss_weight=1.0, experimentally_resolved_weight=0.01,
        num_samples=1_500_000, init="initial_training",
    ),
}
STAGE_NAMES = (*STAGES, "none")


@dataclass
class RunConfig:
    """Everything a training run is configured with.

    Attributes:
        model: the model config (architecture and input processing; ``config.json``).
        loss: the config the loss reads: ``model`` with the stage's loss weights.
        train: optimiser, schedule, precision, distribution and checkpointing.
        train_data: the training data settings (crop, filters, distillation).
        stage: the stage applied (``none`` for none).
    """

    model: Config
    loss: Config
    train: TrainConfig = field(default_factory=TrainConfig)
    train_data: TrainingDataConfig = field(default_factory=TrainingDataConfig)
    stage: str = "none"

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "model": self.model.to_dict(),
            "loss": self.loss.to_dict(),
            "train": dataclasses.asdict(self.train),
            "train_data": dataclasses.asdict(self.train_data),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def stage_num_samples(self) -> int | None:
        return STAGES[self.stage].num_samples if self.stage in STAGES else None


def parse_value(text: str) -> Any:
    """A ``--set`` value: JSON (``1e-3``, ``true``, ``null``, ``"x"``), then a YAML scalar
    (``yes``, ``~``), else the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (bool, int, float, str, type(None))) else text


def parse_set_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["train.learning_rate=5e-4", ...]`` -> ``{"train.learning_rate": 5e-4, ...}``."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected key=value, e.g. "
                             "--set train.learning_rate=5e-4")
        out[key] = parse_value(value.strip())
    return out


_ROOTS = ("model", "data", "name", "loss", "train", "train_data")


def _split_overrides(overrides: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    parts: dict[str, dict[str, Any]] = {"config": {}, "loss": {}, "train": {}, "train_data": {}}
    for key, value in overrides.items():
        root, _, rest = key.partition(".")
        if root not in _ROOTS or (root in ("loss", "train", "train_data") and not rest):
            raise KeyError(f"unknown override {key!r}: keys start with model., data., loss., "
                           "train. or train_data. (e.g. train.learning_rate=5e-4)")
        if root in ("model", "data", "name"):
            parts["config"][key] = value
        else:
            parts[root][rest] = value
    return parts


def build_run_config(
    preset: str, stage: str = "initial_training", overrides: Mapping[str, Any] | None = None
) -> RunConfig:
    """The run configuration of ``preset`` trained in ``stage`` with ``overrides``.

    Raises:
        ValueError: an unknown preset or stage, or a bad value (the message names it).
        KeyError: an unknown override key.
    """
    if stage not in STAGE_NAMES:
        raise ValueError(f"unknown training stage {stage!r}; choose one of {STAGE_NAMES}")
    parts = _split_overrides(overrides or {})
    config = model_config(preset)
    train = TrainConfig()
    train_data = TrainingDataConfig()
    loss_stage: dict[str, Any] = {}
    if stage in STAGES:
        s = STAGES[stage]
        apply_overrides(config, s.model_overrides())
        train.learning_rate = s.learning_rate
        train.warmup_steps = s.warmup_steps
        train_data.crop_size = s.crop_size
        loss_stage = s.loss_overrides()
    try:
        apply_overrides(config, parts["config"])
        apply_overrides(train, parts["train"])
        apply_overrides(train_data, parts["train_data"])
        loss = copy_config(config)
        apply_overrides(loss, loss_stage)
        apply_overrides(loss, parts["loss"])
    except TypeError as err:
        raise ValueError(str(err)) from err
    train.validate()
    train_data.__post_init__()
    return RunConfig(model=config, loss=loss, train=train, train_data=train_data, stage=stage)
