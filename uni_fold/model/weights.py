"""Import of AlphaFold 2 parameters (official ``params_*.npz``) through explicit tables.

An AF2 parameter file is a flat mapping ``"<haiku module path>//<param name>" -> array``,
e.g. ``"alphafold/alphafold_iteration/evoformer/evoformer_iteration/
msa_row_attention_with_pair_bias/attention//query_w"``. Parameters of a stack of blocks
(Evoformer, extra MSA, template pair stack) are stored once, stacked along axis 0.

A *table* maps each of our parameter names to a :class:`Row`
``(af2_path, af2_name, transform, block)``: where the AF2 array is, how to bring it into
torch layout, and which slice of a stacked array to take. Tables are built from small
functions, one per module class, that take our prefix and AF2's path and are composed
with :func:`stack_rows` for stacks. Because our attribute names are AF2's module names, the
composition is nearly mechanical::

    table = evoformer_stack_rows(
        "evoformer", "alphafold/alphafold_iteration/evoformer/evoformer_iteration",
        num_blocks=48,
    )
    load_af2_params(model, params, table)

:func:`load_af2_params` is strict: every model parameter must be in the table, every
table row in the model and in ``params``, every array in ``params`` used, and every shape
right; all of it is checked before anything is copied, and the error names the first
offending keys.
"""
from __future__ import annotations

import abc
import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)

_MAX_NAMES = 5


# ----------------------------------------------------------------------------------------
# Transforms: AF2 array -> torch layout


class Transform(abc.ABC):
    """Turns an AF2 array into a torch parameter's layout; knows the resulting shape."""

    @abc.abstractmethod
    def out_shape(self, shape: tuple[int, ...]) -> tuple[int, ...] | None:
        """Shape after the transform, or ``None`` if the transform cannot take ``shape``."""

    @abc.abstractmethod
    def __call__(self, array: np.ndarray) -> np.ndarray:
        """The array in the torch parameter's layout."""


@dataclass(frozen=True)
class Identity(Transform):
    """Unchanged (layer-norm scales and offsets, 1-D biases)."""

    def out_shape(self, shape: tuple[int, ...]) -> tuple[int, ...] | None:
        return shape

    def __call__(self, array: np.ndarray) -> np.ndarray:
        return array


@dataclass(frozen=True)
class Flatten(Transform):
    """``[a, b, ...] -> [a * b * ...]`` (per-head biases ``[H, d] -> [H * d]``)."""

    def out_shape(self, shape: tuple[int, ...]) -> tuple[int, ...] | None:
        return (math.prod(shape),)

    def __call__(self, array: np.ndarray) -> np.ndarray:
        return array.reshape(-1)


@dataclass(frozen=True)
class LinearWeight(Transform):
    """AF2 ``[*in, *out]`` weight -> torch ``[prod(out), prod(in)]``.

    ``num_in_dims`` leading axes are inputs: 1 for ``Linear`` weights and per-head
    projections ``[c, H, d] -> [H * d, c]``; 2 for per-head output weights
    ``[H, d, c] -> [c, H * d]`` and the outer-product-mean weight ``[c, c, c_z]``.
    """

    num_in_dims: int = 1

    def out_shape(self, shape: tuple[int, ...]) -> tuple[int, ...] | None:
        if len(shape) <= self.num_in_dims:
            return None
        n = self.num_in_dims
        return (math.prod(shape[n:]), math.prod(shape[:n]))

    def __call__(self, array: np.ndarray) -> np.ndarray:
        n_in = math.prod(array.shape[: self.num_in_dims])
        return array.reshape(n_in, -1).T


@dataclass(frozen=True)
class SplitLast(Transform):
    """Take part ``part`` of ``parts`` equal pieces of the last axis, then ``then``.

    Reads AF2's fused layouts, e.g. the AF-Multimer triangle multiplication whose
    ``projection`` weight ``[c_z, 2 * c]`` holds the left and right projections.
    """

    part: int
    parts: int
    then: Transform = Identity()

    def out_shape(self, shape: tuple[int, ...]) -> tuple[int, ...] | None:
        if not shape or shape[-1] % self.parts:
            return None
        return self.then.out_shape(shape[:-1] + (shape[-1] // self.parts,))

    def __call__(self, array: np.ndarray) -> np.ndarray:
        size = array.shape[-1] // self.parts
        return self.then(array[..., self.part * size : (self.part + 1) * size])


IDENTITY = Identity()
FLATTEN = Flatten()
LINEAR = LinearWeight(1)
LINEAR_2IN = LinearWeight(2)


class Row(NamedTuple):
    """Where one of our parameters comes from in an AF2 parameter file.

    ``block`` is the index along axis 0 of a stacked array, ``None`` for unstacked ones.
    """

    af2_path: str
    af2_name: str
    transform: Transform = IDENTITY
    block: int | None = None

    @property
    def key(self) -> str:
        """The flat AF2 key, ``"<af2_path>//<af2_name>"``."""
        return f"{self.af2_path}//{self.af2_name}"


Table = dict[str, Row]


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


# ----------------------------------------------------------------------------------------
# Rows per module class


def linear_rows(
    prefix: str,
    af2_path: str,
    bias: bool = True,
    num_in_dims: int = 1,
    weights_name: str = "weights",
    bias_name: str = "bias",
) -> Table:
    """:class:`~uni_fold.model.primitives.Linear` <- AF2 ``Linear`` (``weights``, ``bias``)."""
    rows = {_join(prefix, "weight"): Row(af2_path, weights_name, LinearWeight(num_in_dims))}
    if bias:
        rows[_join(prefix, "bias")] = Row(af2_path, bias_name, FLATTEN)
    return rows


def layer_norm_rows(prefix: str, af2_path: str) -> Table:
    """:class:`~uni_fold.model.primitives.LayerNorm` <- AF2 ``LayerNorm``
    (``scale``, ``offset``)."""
    return {
        _join(prefix, "weight"): Row(af2_path, "scale"),
        _join(prefix, "bias"): Row(af2_path, "offset"),
    }


def attention_rows(prefix: str, af2_path: str, gating: bool = True) -> Table:
    """:class:`~uni_fold.model.primitives.Attention` <- AF2 ``Attention``."""
    rows = {
        _join(prefix, "linear_q.weight"): Row(af2_path, "query_w", LINEAR),
        _join(prefix, "linear_k.weight"): Row(af2_path, "key_w", LINEAR),
        _join(prefix, "linear_v.weight"): Row(af2_path, "value_w", LINEAR),
        _join(prefix, "linear_o.weight"): Row(af2_path, "output_w", LINEAR_2IN),
        _join(prefix, "linear_o.bias"): Row(af2_path, "output_b", FLATTEN),
    }
    if gating:
        rows[_join(prefix, "linear_g.weight")] = Row(af2_path, "gating_w", LINEAR)
        rows[_join(prefix, "linear_g.bias")] = Row(af2_path, "gating_b", FLATTEN)
    return rows


def global_attention_rows(prefix: str, af2_path: str, gating: bool = True) -> Table:
    """:class:`~uni_fold.model.primitives.GlobalAttention` <- AF2 ``GlobalAttention``
    (same parameter names; keys and values have one head, ``[c, d]``)."""
    return attention_rows(prefix, af2_path, gating)


def msa_row_attention_rows(prefix: str, af2_path: str) -> Table:
    """:class:`~uni_fold.model.msa.MSARowAttentionWithPairBias`."""
    return {
        **layer_norm_rows(_join(prefix, "query_norm"), f"{af2_path}/query_norm"),
        **layer_norm_rows(_join(prefix, "feat_2d_norm"), f"{af2_path}/feat_2d_norm"),
        _join(prefix, "feat_2d_linear.weight"): Row(af2_path, "feat_2d_weights", LINEAR),
        **attention_rows(_join(prefix, "attention"), f"{af2_path}/attention"),
    }


def msa_column_attention_rows(prefix: str, af2_path: str) -> Table:
    """:class:`~uni_fold.model.msa.MSAColumnAttention`."""
    return {
        **layer_norm_rows(_join(prefix, "query_norm"), f"{af2_path}/query_norm"),
        **attention_rows(_join(prefix, "attention"), f"{af2_path}/attention"),
    }


def msa_column_global_attention_rows(prefix: str, af2_path: str) -> Table:
    """:class:`~uni_fold.model.msa.MSAColumnGlobalAttention`."""
    return {
        **layer_norm_rows(_join(prefix, "query_norm"), f"{af2_path}/query_norm"),
        **global_attention_rows(_join(prefix, "attention"), f"{af2_path}/attention"),
    }


def transition_rows(prefix: str, af2_path: str) -> Table:
    """:class:`~uni_fold.model.transition.Transition`."""
    return {
        **layer_norm_rows(_join(prefix, "input_layer_norm"), f"{af2_path}/input_layer_norm"),
        **linear_rows(_join(prefix, "transition1"), f"{af2_path}/transition1"),
        **linear_rows(_join(prefix, "transition2"), f"{af2_path}/transition2"),
    }


def outer_product_mean_rows(prefix: str, af2_path: str) -> Table:
    """:class:`~uni_fold.model.transition.OuterProductMean`."""
    return {
        **layer_norm_rows(_join(prefix, "layer_norm_input"), f"{af2_path}/layer_norm_input"),
        **linear_rows(_join(prefix, "left_projection"), f"{af2_path}/left_projection"),
        **linear_rows(_join(prefix, "right_projection"), f"{af2_path}/right_projection"),
        **linear_rows(
            _join(prefix, "output_linear"), af2_path, num_in_dims=2,
            weights_name="output_w", bias_name="output_b",
        ),
    }


def triangle_multiplication_rows(prefix: str, af2_path: str, fused: bool = False) -> Table:
    """:class:`~uni_fold.model.triangle.TriangleMultiplication`.

    ``fused=False`` reads AF2's monomer layout (``left_projection``, ``right_gate``, ...,
    ``layer_norm_input``, ``center_layer_norm``); ``fused=True`` reads the AF-Multimer v3
    layout (``fuse_projection_weights``), whose ``projection`` / ``gate`` hold the left
    and right halves side by side and whose norms are ``left_norm_input`` / ``center_norm``.
    """
    rows: Table = {}
    if fused:
        norms = (("layer_norm_input", "left_norm_input"), ("center_layer_norm", "center_norm"))
        for ours, theirs in norms:
            rows.update(layer_norm_rows(_join(prefix, ours), f"{af2_path}/{theirs}"))
        for part, side in enumerate(("left", "right")):
            for kind in ("projection", "gate"):
                path = f"{af2_path}/{kind}"
                name = _join(prefix, f"{side}_{kind}")
                rows[f"{name}.weight"] = Row(path, "weights", SplitLast(part, 2, LINEAR))
                rows[f"{name}.bias"] = Row(path, "bias", SplitLast(part, 2))
    else:
        for name in ("layer_norm_input", "center_layer_norm"):
            rows.update(layer_norm_rows(_join(prefix, name), f"{af2_path}/{name}"))
        for name in ("left_projection", "right_projection", "left_gate", "right_gate"):
            rows.update(linear_rows(_join(prefix, name), f"{af2_path}/{name}"))
    for name in ("output_projection", "gating_linear"):
        rows.update(linear_rows(_join(prefix, name), f"{af2_path}/{name}"))
    return rows


def triangle_attention_rows(prefix: str, af2_path: str) -> Table:
    """:class:`~uni_fold.model.triangle.TriangleAttention` (starting or ending node)."""
    return {
        **layer_norm_rows(_join(prefix, "query_norm"), f"{af2_path}/query_norm"),
        _join(prefix, "feat_2d_linear.weight"): Row(af2_path, "feat_2d_weights", LINEAR),
        **attention_rows(_join(prefix, "attention"), f"{af2_path}/attention"),
    }


def evoformer_block_rows(
    prefix: str, af2_path: str, is_extra_msa: bool = False, fused_triangle: bool = False
) -> Table:
    """:class:`~uni_fold.model.evoformer.EvoformerBlock` <- AF2 ``EvoformerIteration``."""
    column = (
        ("msa_column_global_attention", msa_column_global_attention_rows)
        if is_extra_msa
        else ("msa_column_attention", msa_column_attention_rows)
    )
    parts: list[tuple[str, Callable[[str, str], Table]]] = [
        ("msa_row_attention_with_pair_bias", msa_row_attention_rows),
        column,
        ("msa_transition", transition_rows),
        ("outer_product_mean", outer_product_mean_rows),
        ("triangle_attention_starting_node", triangle_attention_rows),
        ("triangle_attention_ending_node", triangle_attention_rows),
        ("pair_transition", transition_rows),
    ]
    rows: Table = {}
    for name, fn in parts:
        rows.update(fn(_join(prefix, name), f"{af2_path}/{name}"))
    for name in ("triangle_multiplication_outgoing", "triangle_multiplication_incoming"):
        rows.update(
            triangle_multiplication_rows(_join(prefix, name), f"{af2_path}/{name}", fused_triangle)
        )
    return rows


def stack_rows(block_rows: Table, num_blocks: int, prefix: str = "blocks") -> Table:
    """Rows for ``num_blocks`` blocks whose AF2 arrays are stacked along axis 0.

    ``block_rows`` describes one block with torch names relative to the block; block
    ``i`` becomes ``"<prefix>.<i>.<name>"`` reading slice ``i`` of each array.
    """
    rows: Table = {}
    for i in range(num_blocks):
        for name, row in block_rows.items():
            if row.block is not None:
                raise ValueError(f"stack_rows: row {name!r} is already stacked (block {row.block})")
            rows[_join(prefix, f"{i}.{name}")] = row._replace(block=i)
    return rows


def evoformer_stack_rows(
    prefix: str,
    af2_path: str,
    num_blocks: int,
    is_extra_msa: bool = False,
    fused_triangle: bool = False,
) -> Table:
    """:class:`~uni_fold.model.evoformer.EvoformerStack` at ``prefix`` <- AF2's stacked
    ``EvoformerIteration`` at ``af2_path``, e.g.
    ``alphafold/alphafold_iteration/evoformer/evoformer_iteration`` (main trunk) or
    ``alphafold/alphafold_iteration/evoformer/extra_msa_stack`` (``is_extra_msa=True``)."""
    block = evoformer_block_rows("", af2_path, is_extra_msa, fused_triangle)
    return stack_rows(block, num_blocks, _join(prefix, "blocks"))


def prefixed(table: Mapping[str, Row], prefix: str) -> Table:
    """The same rows with ``prefix.`` in front of every torch name."""
    return {_join(prefix, name): row for name, row in table.items()}


# ----------------------------------------------------------------------------------------
# Reading parameter files


class WeightImportError(ValueError):
    """An AF2 parameter dict does not fit a model / table; the message lists what is wrong."""


def flatten_haiku_params(params: Mapping[str, Mapping[str, object]]) -> dict[str, np.ndarray]:
    """Nested haiku params ``{module_path: {name: array}}`` -> flat ``{"path//name": array}``."""
    return {
        f"{path}//{name}": np.asarray(value)
        for path, group in params.items()
        for name, value in group.items()
    }


def read_af2_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read an official AF2 ``params_*.npz`` into a flat dict (no pickle is executed)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            params = {key: np.asarray(data[key]) for key in data.files}
    except FileNotFoundError:
        raise
    except Exception as err:  # zipfile.BadZipFile, ValueError for pickled members, ...
        raise WeightImportError(
            f"cannot read AF2 parameter file {path}: {err}; download it again from "
            "https://storage.googleapis.com/alphafold/alphafold_params_2022-12-06.tar"
        ) from err
    bad = [k for k in params if "//" not in k]
    if bad:
        raise WeightImportError(
            f"{path} is not an AF2 parameter file: keys like {bad[:3]} lack '//'"
        )
    return params


# ----------------------------------------------------------------------------------------
# The strict loader


def _names(items: Iterable[str]) -> str:
    items = sorted(items)
    shown = ", ".join(items[:_MAX_NAMES])
    more = f" (and {len(items) - _MAX_NAMES} more)" if len(items) > _MAX_NAMES else ""
    return shown + more


def _is_float(array: np.ndarray) -> bool:
    dtype = np.asarray(array).dtype
    return dtype.kind == "f" or dtype.name == "bfloat16"


def check_af2_params(
    module: nn.Module, params: Mapping[str, np.ndarray], table: Mapping[str, Row]
) -> list[str]:
    """All problems loading ``params`` into ``module`` through ``table`` would hit.

    Returns one message per kind of problem (empty list: it fits). Nothing is copied.
    """
    ours = dict(module.named_parameters())
    problems = []
    uncovered = set(ours) - set(table)
    if uncovered:
        problems.append(
            f"{len(uncovered)} model parameter(s) not in the table: {_names(uncovered)}"
        )
    not_in_model = set(table) - set(ours)
    if not_in_model:
        problems.append(
            f"{len(not_in_model)} table row(s) name no model parameter: {_names(not_in_model)}"
        )
    used = {row.key for row in table.values()}
    missing = used - set(params)
    if missing:
        problems.append(f"{len(missing)} AF2 key(s) missing from the params: {_names(missing)}")
    unexpected = set(params) - used
    if unexpected:
        problems.append(
            f"{len(unexpected)} unexpected AF2 key(s), used by no row: {_names(unexpected)}"
        )

    blocks: dict[str, set[int]] = {}
    for row in table.values():
        if row.block is not None:
            blocks.setdefault(row.key, set()).add(row.block)
    bad_stack, bad_stack_keys = [], set()
    for key, idx in sorted(blocks.items()):
        if key not in params:
            continue
        shape = np.shape(params[key])
        if not shape or idx != set(range(shape[0])):
            have = shape[0] if shape else "no"
            bad_stack.append(f"{key} stacks {have} block(s), the table reads {len(idx)}")
            bad_stack_keys.add(key)
    if bad_stack:
        problems.append(
            f"{len(bad_stack)} stacked array(s) with the wrong block count: {_names(bad_stack)}"
        )

    misshapen = []
    for name, row in sorted(table.items()):
        if name not in ours or row.key not in params or row.key in bad_stack_keys:
            continue
        shape = tuple(np.shape(params[row.key]))
        if row.block is not None:
            shape = shape[1:]
        got = row.transform.out_shape(shape)
        want = tuple(ours[name].shape)
        if got != want:
            misshapen.append(f"{name} <- {row.key} {shape} -> {got}, model wants {want}")
    if misshapen:
        problems.append(f"{len(misshapen)} shape mismatch(es): {_names(misshapen)}")

    non_float = [k for k in used & set(params) if not _is_float(params[k])]
    if non_float:
        problems.append(f"{len(non_float)} non-float AF2 array(s): {_names(non_float)}")
    return problems


def load_af2_params(
    module: nn.Module, params: Mapping[str, np.ndarray], table: Mapping[str, Row]
) -> None:
    """Copy AF2 ``params`` (flat ``"path//name" -> array``) into ``module`` via ``table``.

    Raises :class:`WeightImportError` (a ``ValueError``), before copying anything, if a
    model parameter is not in the table, a row names no model parameter, an AF2 key is
    missing or unused, a stacked array has another number of blocks than the table
    reads, or a transformed shape differs from the model's. Arrays are cast to each
    parameter's dtype and device.
    """
    problems = check_af2_params(module, params, table)
    if problems:
        raise WeightImportError(
            "AF2 parameters do not fit the model:\n  - " + "\n  - ".join(problems)
        )
    ours = dict(module.named_parameters())
    with torch.no_grad():
        for name, row in table.items():
            array = np.asarray(params[row.key])
            if array.dtype.kind != "f":  # bfloat16 (ml_dtypes) has no torch.from_numpy
                array = array.astype(np.float32)
            if row.block is not None:
                array = array[row.block]
            value = torch.from_numpy(np.array(row.transform(array), copy=True))  # own, writable
            param = ours[name]
            param.copy_(value.to(device=param.device, dtype=param.dtype))
    n_arrays = len({row.key for row in table.values()})
    logger.info("loaded %d AF2 arrays into %d parameters", n_arrays, len(table))
