"""Embedders: the first layers of every recycling iteration.

* :class:`InputEmbedder` turns the target and clustered-MSA features into the initial MSA
  and pair representations, with the relative-position encoding (Suppl. Alg. 3-5).
* :class:`RecyclingEmbedder` adds the previous iteration's outputs back in (Suppl. Alg. 32).
* :class:`ExtraMSAEmbedder` projects the one-hot extra MSA (Suppl. Alg. 2 line 14) built by
  :func:`create_extra_msa_feature`.

Shared geometry helpers live here too: :func:`pseudo_beta` (CB, or CA for glycine) and
:func:`dgram_from_positions` (one-hot distance histogram), used by the recycling and
template embedders.

Module attribute names are AF2's parameter scope names (``preprocess_1d``,
``prev_pos_linear``, ...), so the weight table in ``uni_fold.model.weights`` maps them
one to one.
"""
from __future__ import annotations

import logging

import torch
from torch import nn

from data_pipeline import residue_constants as rc
from uni_fold.model.primitives import LayerNorm, Linear
from uni_fold.model.weights import Table, layer_norm_rows, linear_rows, prefixed

logger = logging.getLogger(__name__)

#: Width of ``target_feat``: 20 amino acids, unknown, and the "between segments" bit.
TARGET_FEAT_DIM = 22
#: Width of ``msa_feat``: cluster one-hot (23), has-deletion, deletion value, cluster
#: profile (23), deletion mean (Suppl. Table 1).
MSA_FEAT_DIM = 49
#: Width of the extra-MSA feature: one-hot over 23 classes (20 amino acids, unknown, gap,
#: mask token), has-deletion and deletion value.
EXTRA_MSA_FEAT_DIM = 25
#: Classes of the MSA one-hot encodings (``extra_msa`` values are in ``[0, 23)``).
NUM_MSA_CLASSES = 23

_GLY = rc.restype_order["G"]
_CA = rc.atom_order["CA"]
_CB = rc.atom_order["CB"]


# ----------------------------------------------------------------------------------------
# Geometry helpers


def pseudo_beta(
    aatype: torch.Tensor,
    all_atom_positions: torch.Tensor,
    all_atom_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The CB atom of each residue, or CA for glycine (which has no CB).

    Args:
        aatype: ``[*, N_res]`` integer residue types.
        all_atom_positions: ``[*, N_res, 37, 3]``.
        all_atom_mask: ``[*, N_res, 37]`` or ``None``.
    Returns:
        ``(positions [*, N_res, 3], mask [*, N_res] or None)``; the mask is float.
    """
    is_gly = aatype == _GLY
    positions = torch.where(
        is_gly[..., None], all_atom_positions[..., _CA, :], all_atom_positions[..., _CB, :]
    )
    if all_atom_mask is None:
        return positions, None
    mask = torch.where(is_gly, all_atom_mask[..., _CA], all_atom_mask[..., _CB])
    return positions, mask.float()


def dgram_from_positions(
    positions: torch.Tensor, num_bins: int, min_bin: float, max_bin: float
) -> torch.Tensor:
    """One-hot histogram of pairwise distances (Suppl. Alg. 32 line 2, Alg. 2 line 9).

    ``num_bins`` bins whose left edges are spaced evenly from ``min_bin`` to ``max_bin``
    (Å); the last bin is open to the right. A distance below ``min_bin`` falls in no bin
    (all zeros), as in AF2. Computed in fp32 on squared distances.

    Args:
        positions: ``[*, N_res, 3]``.
    Returns:
        ``[*, N_res, N_res, num_bins]`` float32 of zeros and ones.
    """
    positions = positions.float()
    lower = torch.linspace(min_bin, max_bin, num_bins, device=positions.device) ** 2
    upper = torch.cat([lower[1:], lower.new_tensor([1e8])])
    diff = positions[..., :, None, :] - positions[..., None, :, :]
    dist2 = diff.square().sum(dim=-1, keepdim=True)
    return ((dist2 > lower) & (dist2 < upper)).float()


# ----------------------------------------------------------------------------------------
# Input embedder (Alg. 3) with relative positions (Alg. 4, 5)


class InputEmbedder(nn.Module):
    """Suppl. Alg. 3 (Jumper et al. 2021): initial MSA and pair representations.

    ``m = preprocess_1d(target_feat) + preprocess_msa(msa_feat)``;
    ``z = left_single(target_feat)_i + right_single(target_feat)_j + relpos(i, j)``
    where relpos (Alg. 4, 5) one-hot encodes the residue-index offset clipped to
    ``[-max_relative_feature, max_relative_feature]``.

    Shapes: ``target_feat [*, N_res, 22]``, ``msa_feat [*, N_seq, N_res, 49]``,
    ``residue_index [*, N_res]`` -> ``m [*, N_seq, N_res, c_m]``, ``z [*, N_res, N_res, c_z]``.
    """

    def __init__(
        self,
        c_m: int,
        c_z: int,
        max_relative_feature: int = 32,
        tf_dim: int = TARGET_FEAT_DIM,
        msa_dim: int = MSA_FEAT_DIM,
    ):
        super().__init__()
        self.max_relative_feature = max_relative_feature
        self.preprocess_1d = Linear(tf_dim, c_m)
        self.preprocess_msa = Linear(msa_dim, c_m)
        self.left_single = Linear(tf_dim, c_z)
        self.right_single = Linear(tf_dim, c_z)
        # AF2's parameter scope for the relative-position projection is spelled
        # "pair_activiations"; the attribute keeps that spelling so the weight table
        # maps it directly.
        self.pair_activiations = (
            Linear(2 * max_relative_feature + 1, c_z) if max_relative_feature else None
        )

    def relpos(self, residue_index: torch.Tensor) -> torch.Tensor:
        """Suppl. Alg. 4: ``[*, N_res] -> [*, N_res, N_res, c_z]``."""
        assert self.pair_activiations is not None
        r = self.max_relative_feature
        offset = residue_index[..., :, None].long() - residue_index[..., None, :].long()
        bins = torch.clamp(offset + r, 0, 2 * r)
        one_hot = nn.functional.one_hot(bins, 2 * r + 1)
        return self.pair_activiations(one_hot.to(self.pair_activiations.weight.dtype))

    def forward(
        self,
        target_feat: torch.Tensor,
        msa_feat: torch.Tensor,
        residue_index: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        dtype = self.preprocess_1d.weight.dtype
        target_feat = target_feat.to(dtype)
        m = self.preprocess_1d(target_feat)[..., None, :, :] + self.preprocess_msa(
            msa_feat.to(dtype)
        )
        z = self.left_single(target_feat)[..., :, None, :] + self.right_single(target_feat)[
            ..., None, :, :
        ]
        if self.pair_activiations is not None:
            z = z + self.relpos(residue_index)
        return m, z


# ----------------------------------------------------------------------------------------
# Recycling embedder (Alg. 32)


class RecyclingEmbedder(nn.Module):
    """Suppl. Alg. 32 (Jumper et al. 2021): embed the previous iteration's outputs.

    Returns the update to the first MSA row, ``prev_msa_first_row_norm(m_prev)``, and the
    update to the pair representation, ``prev_pos_linear(dgram(pseudo_beta(x_prev))) +
    prev_pair_norm(z_prev)``. ``recycle_pos`` / ``recycle_features`` switch the two parts
    (AF2's config flags); a switched-off part contributes nothing.

    Shapes: ``aatype [*, N_res]``, ``prev_pos [*, N_res, 37, 3]``,
    ``prev_msa_first_row [*, N_res, c_m]``, ``prev_pair [*, N_res, N_res, c_z]`` ->
    ``(m_first_row_update [*, N_res, c_m] or None, z_update [*, N_res, N_res, c_z] or None)``.
    """

    def __init__(
        self,
        c_m: int,
        c_z: int,
        min_bin: float = 3.25,
        max_bin: float = 20.75,
        num_bins: int = 15,
        recycle_pos: bool = True,
        recycle_features: bool = True,
    ):
        super().__init__()
        self.min_bin = min_bin
        self.max_bin = max_bin
        self.num_bins = num_bins
        self.prev_pos_linear = Linear(num_bins, c_z) if recycle_pos else None
        self.prev_msa_first_row_norm = LayerNorm(c_m) if recycle_features else None
        self.prev_pair_norm = LayerNorm(c_z) if recycle_features else None

    def forward(
        self,
        aatype: torch.Tensor,
        prev_pos: torch.Tensor,
        prev_msa_first_row: torch.Tensor,
        prev_pair: torch.Tensor,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        m_update = None
        z_update = None
        if self.prev_pos_linear is not None:
            x, _ = pseudo_beta(aatype, prev_pos.float())
            dgram = dgram_from_positions(x, self.num_bins, self.min_bin, self.max_bin)
            z_update = self.prev_pos_linear(dgram.to(self.prev_pos_linear.weight.dtype))
        if self.prev_msa_first_row_norm is not None and self.prev_pair_norm is not None:
            m_update = self.prev_msa_first_row_norm(prev_msa_first_row)
            pair = self.prev_pair_norm(prev_pair)
            z_update = pair if z_update is None else z_update + pair
        return m_update, z_update


# ----------------------------------------------------------------------------------------
# Extra MSA (Alg. 2 line 14)


def create_extra_msa_feature(
    extra_msa: torch.Tensor,
    extra_has_deletion: torch.Tensor,
    extra_deletion_value: torch.Tensor,
) -> torch.Tensor:
    """The per-position extra-MSA feature (Suppl. Table 1, ``extra_msa_feat``).

    One-hot of the residue class (23: 20 amino acids, unknown, gap, mask token), then the
    has-deletion bit and the (already squashed) deletion value. Built as late as possible
    because the one-hot of thousands of sequences is large.

    Shapes: ``extra_msa [*, N_extra, N_res]`` (int), ``extra_has_deletion``,
    ``extra_deletion_value`` ``[*, N_extra, N_res]`` -> ``[*, N_extra, N_res, 25]`` float32.
    """
    if extra_msa.is_floating_point():
        raise ValueError(
            f"extra_msa must hold integer residue classes, got dtype {extra_msa.dtype}; "
            "pass the processed feature (values in [0, 23)), not a one-hot"
        )
    one_hot = nn.functional.one_hot(extra_msa.long(), NUM_MSA_CLASSES).float()
    return torch.cat(
        [one_hot, extra_has_deletion.float()[..., None], extra_deletion_value.float()[..., None]],
        dim=-1,
    )


class ExtraMSAEmbedder(nn.Module):
    """Suppl. Alg. 2 line 14: project the extra-MSA feature to ``c_e`` channels.

    Shapes: ``extra_msa_feat [*, N_extra, N_res, 25] -> [*, N_extra, N_res, c_e]``.
    """

    def __init__(self, c_e: int, feat_dim: int = EXTRA_MSA_FEAT_DIM):
        super().__init__()
        self.extra_msa_activations = Linear(feat_dim, c_e)

    def forward(self, extra_msa_feat: torch.Tensor) -> torch.Tensor:
        return self.extra_msa_activations(
            extra_msa_feat.to(self.extra_msa_activations.weight.dtype)
        )


# ----------------------------------------------------------------------------------------
# AF2 parameter import (see uni_fold.model.weights). In AF2 these layers sit directly in
# the ``alphafold/alphafold_iteration/evoformer`` scope.

AF2_EVOFORMER_PATH = "alphafold/alphafold_iteration/evoformer"


def input_embedder_rows(
    prefix: str, af2_path: str = AF2_EVOFORMER_PATH, relpos: bool = True
) -> Table:
    """Rows for :class:`InputEmbedder` at ``prefix`` <- AF2's ``preprocess_1d``,
    ``preprocess_msa``, ``left_single``, ``right_single``, ``pair_activiations``."""
    names = ["preprocess_1d", "preprocess_msa", "left_single", "right_single"]
    if relpos:
        names.append("pair_activiations")
    rows: Table = {}
    for name in names:
        rows.update(linear_rows(name, f"{af2_path}/{name}"))
    return prefixed(rows, prefix)


def recycling_embedder_rows(
    prefix: str,
    af2_path: str = AF2_EVOFORMER_PATH,
    recycle_pos: bool = True,
    recycle_features: bool = True,
) -> Table:
    """Rows for :class:`RecyclingEmbedder` <- AF2's ``prev_pos_linear``,
    ``prev_msa_first_row_norm``, ``prev_pair_norm``."""
    rows: Table = {}
    if recycle_pos:
        rows.update(linear_rows("prev_pos_linear", f"{af2_path}/prev_pos_linear"))
    if recycle_features:
        for name in ("prev_msa_first_row_norm", "prev_pair_norm"):
            rows.update(layer_norm_rows(name, f"{af2_path}/{name}"))
    return prefixed(rows, prefix)


def extra_msa_embedder_rows(prefix: str, af2_path: str = AF2_EVOFORMER_PATH) -> Table:
    """Rows for :class:`ExtraMSAEmbedder` <- AF2's ``extra_msa_activations``."""
    return prefixed(
        linear_rows("extra_msa_activations", f"{af2_path}/extra_msa_activations"), prefix
    )
