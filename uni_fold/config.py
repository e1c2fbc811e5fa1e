"""Typed model configurations with AlphaFold 2's preset names.

One nested dataclass tree (``Config``) is the single source of every width, count and
loss weight. Named presets (``model_1`` ... ``model_5`` and their ``_ptm`` variants, plus
``tiny`` for tests) are small diffs applied to the defaults, which follow the AF2
supplement (Jumper et al. 2021, Suppl. Tables 4 and 5) and DeepMind's v2.3 release.

Overrides are dotted paths into the tree, e.g.
``{"model.embeddings_and_evoformer.evoformer_num_block": 2}``, given as a dict, as keyword
shorthands to :func:`model_config`, or read from a YAML/JSON file with
:func:`load_overrides`. Every override is type-checked and an unknown path is an error.

Widths use the paper's names: ``c_m`` (MSA, AF2 ``msa_channel``), ``c_z`` (pair,
``pair_channel``), ``c_s`` (single, ``seq_channel``), ``c_e`` (extra MSA,
``extra_msa_channel``), ``c_t`` (template pair).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# ----------------------------------------------------------------------------------------
# Evoformer pieces (Suppl. Alg. 6-15)


@dataclass
class AttentionConfig:
    """Gated multi-head attention (row / column / triangle attention)."""

    num_head: int = 8
    gating: bool = True
    dropout_rate: float = 0.0
    orientation: str = "per_row"  # axis along which dropout masks are shared
    shared_dropout: bool = True
    key_dim: int | None = None  # None: input width // num_head
    value_dim: int | None = None


@dataclass
class TransitionConfig:
    """Two-layer MLP with a ``num_intermediate_factor`` wider hidden layer (Alg. 9, 15)."""

    num_intermediate_factor: int = 4
    dropout_rate: float = 0.0
    orientation: str = "per_row"
    shared_dropout: bool = True


@dataclass
class OuterProductMeanConfig:
    """MSA -> pair update (Alg. 10)."""

    num_outer_channel: int = 32
    dropout_rate: float = 0.0
    first: bool = False  # multimer runs it at the start of the block
    orientation: str = "per_row"
    shared_dropout: bool = True


@dataclass
class TriangleMultiplicationConfig:
    """Triangle multiplicative update (Alg. 11 outgoing, Alg. 12 incoming)."""

    outgoing: bool = True
    num_intermediate_channel: int = 128
    dropout_rate: float = 0.25
    orientation: str = "per_row"
    shared_dropout: bool = True


def _row_attention(num_head: int, dropout: float, **kw: Any) -> Any:
    return field(
        default_factory=lambda: AttentionConfig(num_head=num_head, dropout_rate=dropout, **kw)
    )


@dataclass
class EvoformerBlockConfig:
    """One Evoformer block (Alg. 6); attribute names follow AF2's module names."""

    msa_row_attention_with_pair_bias: AttentionConfig = _row_attention(8, 0.15)
    msa_column_attention: AttentionConfig = field(
        default_factory=lambda: AttentionConfig(num_head=8, orientation="per_column")
    )
    msa_transition: TransitionConfig = field(default_factory=TransitionConfig)
    outer_product_mean: OuterProductMeanConfig = field(default_factory=OuterProductMeanConfig)
    triangle_multiplication_outgoing: TriangleMultiplicationConfig = field(
        default_factory=lambda: TriangleMultiplicationConfig(outgoing=True)
    )
    triangle_multiplication_incoming: TriangleMultiplicationConfig = field(
        default_factory=lambda: TriangleMultiplicationConfig(outgoing=False)
    )
    triangle_attention_starting_node: AttentionConfig = _row_attention(4, 0.25)
    triangle_attention_ending_node: AttentionConfig = field(
        default_factory=lambda: AttentionConfig(
            num_head=4, dropout_rate=0.25, orientation="per_column"
        )
    )
    pair_transition: TransitionConfig = field(default_factory=TransitionConfig)


# ----------------------------------------------------------------------------------------
# Templates (Suppl. Alg. 16-17)


@dataclass
class TemplatePairStackConfig:
    """Template pair stack: triangle updates and a transition on each template (Alg. 16)."""

    num_block: int = 2
    triangle_attention_starting_node: AttentionConfig = _row_attention(
        4, 0.25, key_dim=64, value_dim=64
    )
    triangle_attention_ending_node: AttentionConfig = field(
        default_factory=lambda: AttentionConfig(
            num_head=4, dropout_rate=0.25, orientation="per_column", key_dim=64, value_dim=64
        )
    )
    triangle_multiplication_outgoing: TriangleMultiplicationConfig = field(
        default_factory=lambda: TriangleMultiplicationConfig(
            outgoing=True, num_intermediate_channel=64
        )
    )
    triangle_multiplication_incoming: TriangleMultiplicationConfig = field(
        default_factory=lambda: TriangleMultiplicationConfig(
            outgoing=False, num_intermediate_channel=64
        )
    )
    pair_transition: TransitionConfig = field(
        default_factory=lambda: TransitionConfig(num_intermediate_factor=2)
    )


@dataclass
class BinsConfig:
    """Distance histogram: ``num_bins`` bins between ``min_bin`` and ``max_bin`` (Å)."""

    min_bin: float
    max_bin: float
    num_bins: int


@dataclass
class TemplateConfig:
    enabled: bool = False
    embed_torsion_angles: bool = False
    c_t: int = 64
    attention: AttentionConfig = field(
        default_factory=lambda: AttentionConfig(num_head=4, gating=False, key_dim=64, value_dim=64)
    )
    dgram_features: BinsConfig = field(
        default_factory=lambda: BinsConfig(min_bin=3.25, max_bin=50.75, num_bins=39)
    )
    template_pair_stack: TemplatePairStackConfig = field(default_factory=TemplatePairStackConfig)
    max_templates: int = 4
    use_template_unit_vector: bool = False


@dataclass
class EmbeddingsAndEvoformerConfig:
    c_m: int = 256
    c_z: int = 128
    c_s: int = 384
    c_e: int = 64
    evoformer_num_block: int = 48
    extra_msa_stack_num_block: int = 4
    max_relative_feature: int = 32
    recycle_features: bool = True
    recycle_pos: bool = True
    prev_pos: BinsConfig = field(
        default_factory=lambda: BinsConfig(min_bin=3.25, max_bin=20.75, num_bins=15)
    )
    evoformer: EvoformerBlockConfig = field(default_factory=EvoformerBlockConfig)
    template: TemplateConfig = field(default_factory=TemplateConfig)


# ----------------------------------------------------------------------------------------
# Heads and structure module (Suppl. Alg. 20-29, Section 1.9)


@dataclass
class FapeConfig:
    clamp_distance: float = 10.0
    clamp_type: str = "relu"
    loss_unit_distance: float = 10.0


@dataclass
class SidechainConfig:
    atom_clamp_distance: float = 10.0
    num_channel: int = 128
    num_residual_block: int = 2
    weight_frac: float = 0.5
    length_scale: float = 10.0


@dataclass
class StructureModuleConfig:
    num_layer: int = 8
    num_channel: int = 384
    num_head: int = 12
    num_layer_in_transition: int = 3
    num_scalar_qk: int = 16
    num_scalar_v: int = 16
    num_point_qk: int = 4
    num_point_v: int = 8
    position_scale: float = 10.0
    dropout: float = 0.1
    fape: FapeConfig = field(default_factory=FapeConfig)
    sidechain: SidechainConfig = field(default_factory=SidechainConfig)
    angle_norm_weight: float = 0.01
    chi_weight: float = 0.5
    clash_overlap_tolerance: float = 1.5
    violation_tolerance_factor: float = 12.0
    structural_violation_loss_weight: float = 1.0
    weight: float = 1.0


@dataclass
class DistogramHeadConfig:
    first_break: float = 2.3125
    last_break: float = 21.6875
    num_bins: int = 64
    weight: float = 0.3


@dataclass
class _ResolutionFiltered:
    """Heads whose loss is trained only on structures with resolution in a range."""

    filter_by_resolution: bool = True
    min_resolution: float = 0.1
    max_resolution: float = 3.0


@dataclass
class PredictedLDDTHeadConfig(_ResolutionFiltered):
    num_bins: int = 50
    num_channels: int = 128
    weight: float = 0.01


@dataclass
class PredictedAlignedErrorHeadConfig(_ResolutionFiltered):
    """PAE / pTM head; ``weight == 0`` means the head is absent (AF2 non-ptm models)."""

    max_error_bin: float = 31.0
    num_bins: int = 64
    num_channels: int = 128
    weight: float = 0.0


@dataclass
class ExperimentallyResolvedHeadConfig(_ResolutionFiltered):
    weight: float = 0.01


@dataclass
class MaskedMsaHeadConfig:
    num_output: int = 23
    weight: float = 2.0


@dataclass
class HeadsConfig:
    distogram: DistogramHeadConfig = field(default_factory=DistogramHeadConfig)
    predicted_lddt: PredictedLDDTHeadConfig = field(default_factory=PredictedLDDTHeadConfig)
    predicted_aligned_error: PredictedAlignedErrorHeadConfig = field(
        default_factory=PredictedAlignedErrorHeadConfig
    )
    experimentally_resolved: ExperimentallyResolvedHeadConfig = field(
        default_factory=ExperimentallyResolvedHeadConfig
    )
    masked_msa: MaskedMsaHeadConfig = field(default_factory=MaskedMsaHeadConfig)
    structure_module: StructureModuleConfig = field(default_factory=StructureModuleConfig)


@dataclass
class ModelConfig:
    embeddings_and_evoformer: EmbeddingsAndEvoformerConfig = field(
        default_factory=EmbeddingsAndEvoformerConfig
    )
    heads: HeadsConfig = field(default_factory=HeadsConfig)
    num_recycle: int = 3
    recycle_early_stop_tolerance: float = 0.0
    resample_msa_in_recycling: bool = True


# ----------------------------------------------------------------------------------------
# Input processing (what uni_fold.data does between raw features and the batch)


@dataclass
class MaskedMsaConfig:
    profile_prob: float = 0.1
    same_prob: float = 0.1
    uniform_prob: float = 0.1
    replace_fraction: float = 0.15


@dataclass
class DataConfig:
    masked_msa: MaskedMsaConfig = field(default_factory=MaskedMsaConfig)
    max_msa_clusters: int = 512
    max_extra_msa: int = 1024
    max_templates: int = 4
    msa_cluster_features: bool = True
    reduce_msa_clusters_by_max_templates: bool = False
    resample_msa_in_recycling: bool = True
    use_templates: bool = False
    subsample_templates: bool = False
    num_ensemble: int = 1


@dataclass
class Config:
    """Everything that defines a model: architecture, heads and input processing."""

    name: str = "model_1"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        """Rebuild a config from :meth:`to_dict` output; unknown keys are an error."""
        cfg = cls()
        apply_overrides(cfg, flatten(d))
        return cfg


# ----------------------------------------------------------------------------------------
# Presets (Suppl. Table 5 and the AF2 v2.3 release's model configs)

_TEMPLATES_ON = {
    "data.use_templates": True,
    "data.reduce_msa_clusters_by_max_templates": True,
    "model.embeddings_and_evoformer.template.enabled": True,
    "model.embeddings_and_evoformer.template.embed_torsion_angles": True,
}
_BIG_EXTRA_MSA = {"data.max_extra_msa": 5120}
_PTM = {"model.heads.predicted_aligned_error.weight": 0.1}

_MONOMER_DIFFS: dict[str, dict[str, Any]] = {
    "model_1": {**_TEMPLATES_ON, **_BIG_EXTRA_MSA},  # model 1.1.1
    "model_2": {**_TEMPLATES_ON},  # model 1.1.2
    "model_3": {**_BIG_EXTRA_MSA},  # model 1.2.1
    "model_4": {**_BIG_EXTRA_MSA},  # model 1.2.2
    "model_5": {},  # model 1.2.3
}

PRESETS: dict[str, dict[str, Any]] = {}
for _name, _diff in _MONOMER_DIFFS.items():
    PRESETS[_name] = dict(_diff)
    PRESETS[f"{_name}_ptm"] = {**_diff, **_PTM}

# A few-parameter network for tests and CPU training: every module present, tiny widths.
_EVO = "model.embeddings_and_evoformer"
_SM = "model.heads.structure_module"
_TINY: dict[str, Any] = {
    **_TEMPLATES_ON,
    **_PTM,
    "data.max_msa_clusters": 16,
    "data.max_extra_msa": 32,
    "data.max_templates": 2,
    **{f"{_EVO}.{k}": v for k, v in dict(
        c_m=16, c_z=8, c_s=24, c_e=8, evoformer_num_block=2, extra_msa_stack_num_block=1
    ).items()},
    f"{_EVO}.evoformer.outer_product_mean.num_outer_channel": 4,
    f"{_EVO}.template.c_t": 8,
    f"{_EVO}.template.template_pair_stack.num_block": 1,
    **{f"{_SM}.{k}": v for k, v in dict(
        num_layer=2, num_channel=24, num_head=2, num_scalar_qk=4, num_scalar_v=4,
        num_point_qk=2, num_point_v=2,
    ).items()},
    f"{_SM}.sidechain.num_channel": 8,
    "model.heads.predicted_lddt.num_channels": 8,
    "model.heads.predicted_aligned_error.num_channels": 8,
    "model.num_recycle": 1,
}
for _block in (f"{_EVO}.evoformer", f"{_EVO}.template.template_pair_stack"):
    for _att in ("triangle_attention_starting_node", "triangle_attention_ending_node"):
        _TINY[f"{_block}.{_att}.num_head"] = 2
    for _mul in ("triangle_multiplication_outgoing", "triangle_multiplication_incoming"):
        _TINY[f"{_block}.{_mul}.num_intermediate_channel"] = 8
for _att in ("msa_row_attention_with_pair_bias", "msa_column_attention"):
    _TINY[f"{_EVO}.evoformer.{_att}.num_head"] = 2
for _att in ("template.attention", "template.template_pair_stack.triangle_attention_starting_node",
             "template.template_pair_stack.triangle_attention_ending_node"):
    _TINY.update({f"{_EVO}.{_att}.num_head": 2, f"{_EVO}.{_att}.key_dim": 4,
                  f"{_EVO}.{_att}.value_dim": 4})
PRESETS["tiny"] = _TINY

# Keyword shorthands accepted by model_config(); each names one dotted path.
SHORTHANDS: dict[str, str] = {
    "num_recycle": "model.num_recycle",
    "evoformer_num_block": "model.embeddings_and_evoformer.evoformer_num_block",
    "extra_msa_stack_num_block": "model.embeddings_and_evoformer.extra_msa_stack_num_block",
    "template_pair_stack_num_block": (
        "model.embeddings_and_evoformer.template.template_pair_stack.num_block"
    ),
    "recycle_early_stop_tolerance": "model.recycle_early_stop_tolerance",
    "max_msa_clusters": "data.max_msa_clusters",
    "max_extra_msa": "data.max_extra_msa",
    "max_templates": "data.max_templates",
}


def model_config(
    name: str, overrides: dict[str, Any] | None = None, **shorthands: Any
) -> Config:
    """The config of preset ``name`` with ``overrides`` (dotted paths) and shorthands applied.

    ``model_config("model_1_ptm", evoformer_num_block=2, num_recycle=1)`` and
    ``model_config("model_1_ptm", {"model.num_recycle": 1})`` are both accepted; see
    :data:`SHORTHANDS` for the keyword names. ``None`` values are ignored.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}")
    cfg = Config(name=name)
    apply_overrides(cfg, PRESETS[name])
    extra: dict[str, Any] = {}
    for key, value in shorthands.items():
        if key not in SHORTHANDS:
            raise TypeError(
                f"model_config() got an unknown override {key!r}; use one of "
                f"{sorted(SHORTHANDS)} or pass a dotted path in `overrides`"
            )
        if value is not None:
            extra[SHORTHANDS[key]] = value
    apply_overrides(cfg, {**(overrides or {}), **extra})
    return cfg


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; leaves that are not dicts are kept as is."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out


def apply_overrides(cfg: Any, overrides: dict[str, Any]) -> None:
    """Set each dotted path in ``overrides`` on the dataclass tree ``cfg``, type-checked.

    Nested dicts are flattened first, so YAML/JSON trees and dotted keys both work.
    """
    for path, value in flatten(overrides).items():
        node = cfg
        parts = path.split(".")
        for i, part in enumerate(parts):
            if not dataclasses.is_dataclass(node) or part not in _field_names(node):
                where = ".".join(parts[:i]) or type(cfg).__name__
                known = sorted(_field_names(node)) if dataclasses.is_dataclass(node) else []
                raise KeyError(f"unknown config key {path!r}: {where!r} has no field {part!r}"
                               + (f" (fields: {', '.join(known)})" if known else ""))
            if i < len(parts) - 1:
                node = getattr(node, part)
        hint = typing.get_type_hints(type(node))[parts[-1]]
        setattr(node, parts[-1], _coerce(path, value, hint))


def load_overrides(path: str | Path) -> dict[str, Any]:
    """Read overrides from a ``.json``, ``.yaml`` or ``.yml`` file (nested or dotted keys)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config override file {path} does not exist")
    text = path.read_text()
    if path.suffix == ".json":
        data = json.loads(text)
    elif path.suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text)
    else:
        raise ValueError(f"config override file {path}: use a .json, .yaml or .yml file")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"config override file {path} must hold a mapping of keys to values")
    return flatten(data)


def copy_config(cfg: Config) -> Config:
    return copy.deepcopy(cfg)


def _field_names(node: Any) -> set[str]:
    return {f.name for f in dataclasses.fields(node)}


def _coerce(path: str, value: Any, hint: Any) -> Any:
    """Check ``value`` against the field's annotation; ints widen to float, nothing else."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(path, value, option)
            except (TypeError, KeyError) as e:
                errors.append(str(e))
        raise TypeError(errors[0] if errors else f"config key {path!r}: bad value {value!r}")
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        raise TypeError(
            f"config key {path!r} expects a {hint.__name__} or nested keys, got {value!r}"
        )
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    else:
        return value
    raise TypeError(
        f"config key {path!r} expects {hint.__name__}, got {value!r} ({type(value).__name__})"
    )
