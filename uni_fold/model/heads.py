"""Output heads of the network, Suppl. Section 1.9 (Jumper et al. 2021).

Each head is a small projection of one representation into logits:

=========================== ======================== ==================================
head                        reads                    returns
=========================== ======================== ==================================
:class:`DistogramHead`      pair ``z``               ``logits [*, N, N, 64]``, ``bin_edges``
:class:`MaskedMsaHead`      MSA ``m``                ``logits [*, N_seq, N, 23]``
:class:`PredictedLDDTHead`  structure-module single  ``logits [*, N, 50]``
:class:`PredictedAlignedErrorHead` pair ``z``        ``logits [*, N, N, 64]``, ``breaks``
:class:`ExperimentallyResolvedHead` Evoformer single ``logits [*, N, 37]``
=========================== ======================== ==================================

The last projection of every head is "final"-initialised (zeros), as AF2 with
``zero_init``. Confidence scores from the logits are in :mod:`uni_fold.model.confidence`.
Attribute names are AF2's module names, so the weight rows (``*_rows`` functions at the end
of this file, see :mod:`uni_fold.model.weights`) map one to one.
"""
from __future__ import annotations

import logging

import torch
from torch import nn

from uni_fold.config import (
    DistogramHeadConfig,
    MaskedMsaHeadConfig,
    PredictedAlignedErrorHeadConfig,
    PredictedLDDTHeadConfig,
)
from uni_fold.model.primitives import LayerNorm, Linear
from uni_fold.model.weights import Table, layer_norm_rows, linear_rows, prefixed

logger = logging.getLogger(__name__)

Tensor = torch.Tensor

# Number of atom slots in the atom37 layout (experimentally-resolved logits).
ATOM_TYPE_NUM = 37

AF2_HEADS_PATH = "alphafold/alphafold_iteration"


def _check_channels(x: Tensor, c: int, name: str, what: str, min_dim: int = 2) -> None:
    if x.dim() < min_dim or x.shape[-1] != c:
        raise ValueError(f"{name}: {what} has shape {tuple(x.shape)}, expected the last axis "
                         f"to be {c} channels (and at least {min_dim} dims)")


class DistogramHead(nn.Module):
    """Suppl. Section 1.9.8 (Jumper et al. 2021): distogram prediction.

    Logits over ``num_bins`` distance bins for every residue pair, symmetrised as
    ``h_ij + h_ji``. ``bin_edges`` are the ``num_bins - 1`` inner edges
    ``linspace(first_break, last_break)`` (Å) used by the distogram loss.

    Shapes: ``z [*, N_res, N_res, c_z]`` -> ``logits [*, N_res, N_res, num_bins]``,
    ``bin_edges [num_bins - 1]``.
    """

    def __init__(self, c_z: int, cfg: DistogramHeadConfig):
        super().__init__()
        if cfg.num_bins < 2:
            raise ValueError(f"DistogramHead needs num_bins >= 2, got {cfg.num_bins}")
        self.c_z = c_z
        self.num_bins = cfg.num_bins
        self.first_break = cfg.first_break
        self.last_break = cfg.last_break
        self.half_logits = Linear(c_z, cfg.num_bins, init="final")

    def bin_edges(self, device: torch.device | None = None) -> Tensor:
        """Inner bin edges ``[num_bins - 1]`` in Å."""
        return torch.linspace(self.first_break, self.last_break, self.num_bins - 1,
                              device=device, dtype=torch.float32)

    def forward(self, z: Tensor) -> dict[str, Tensor]:
        _check_channels(z, self.c_z, "DistogramHead", "pair representation z", 3)
        half = self.half_logits(z)
        return {"logits": half + half.transpose(-2, -3), "bin_edges": self.bin_edges(z.device)}


class MaskedMsaHead(nn.Module):
    """Suppl. Section 1.9.9 (Jumper et al. 2021): masked-MSA (BERT-style) prediction.

    Shapes: ``m [*, N_seq, N_res, c_m]`` -> ``logits [*, N_seq, N_res, num_output]``
    (23 classes for the monomer: 20 amino acids, X, gap, mask).
    """

    def __init__(self, c_m: int, cfg: MaskedMsaHeadConfig):
        super().__init__()
        self.c_m = c_m
        self.logits = Linear(c_m, cfg.num_output, init="final")

    def forward(self, m: Tensor) -> dict[str, Tensor]:
        _check_channels(m, self.c_m, "MaskedMsaHead", "MSA representation m", 3)
        return {"logits": self.logits(m)}


class PredictedLDDTHead(nn.Module):
    """Suppl. Alg. 29 (Jumper et al. 2021) ``predictPerResidueLDDT_Ca``: pLDDT logits.

    Layer norm, two ReLU layers of ``num_channels``, and ``num_bins`` logits over equal
    lDDT-Ca bins in [0, 1]; :func:`uni_fold.model.confidence.compute_plddt` turns them
    into pLDDT (0-100).

    Args:
        c_s: width of the structure module's single representation (AF2 ``num_channel``).

    Shapes: ``s [*, N_res, c_s]`` -> ``logits [*, N_res, num_bins]``.
    """

    def __init__(self, c_s: int, cfg: PredictedLDDTHeadConfig):
        super().__init__()
        self.c_s = c_s
        c = cfg.num_channels
        self.input_layer_norm = LayerNorm(c_s)
        self.act_0 = Linear(c_s, c, init="relu")
        self.act_1 = Linear(c, c, init="relu")
        self.logits = Linear(c, cfg.num_bins, init="final")

    def forward(self, s: Tensor) -> dict[str, Tensor]:
        _check_channels(s, self.c_s, "PredictedLDDTHead", "single representation s")
        a = self.input_layer_norm(s)
        a = torch.relu(self.act_0(a))
        a = torch.relu(self.act_1(a))
        return {"logits": self.logits(a)}


class PredictedAlignedErrorHead(nn.Module):
    """Suppl. Section 1.9.7 (Jumper et al. 2021): predicted aligned error (PAE / pTM).

    Logits over ``num_bins`` bins of the error of residue ``j``'s position when the
    prediction and the truth are aligned on residue ``i``'s frame. ``breaks`` are the
    ``num_bins - 1`` bin edges ``linspace(0, max_error_bin)`` (Å);
    :mod:`uni_fold.model.confidence` turns the logits into PAE and pTM.

    Shapes: ``z [*, N_res, N_res, c_z]`` -> ``logits [*, N_res, N_res, num_bins]``,
    ``breaks [num_bins - 1]``.
    """

    def __init__(self, c_z: int, cfg: PredictedAlignedErrorHeadConfig):
        super().__init__()
        if cfg.num_bins < 3:
            raise ValueError(f"PredictedAlignedErrorHead needs num_bins >= 3, got {cfg.num_bins}")
        self.c_z = c_z
        self.num_bins = cfg.num_bins
        self.max_error_bin = cfg.max_error_bin
        self.logits = Linear(c_z, cfg.num_bins, init="final")

    def breaks(self, device: torch.device | None = None) -> Tensor:
        """Bin edges ``[num_bins - 1]`` in Å."""
        return torch.linspace(0.0, self.max_error_bin, self.num_bins - 1,
                              device=device, dtype=torch.float32)

    def forward(self, z: Tensor) -> dict[str, Tensor]:
        _check_channels(z, self.c_z, "PredictedAlignedErrorHead", "pair representation z", 3)
        return {"logits": self.logits(z), "breaks": self.breaks(z.device)}


class ExperimentallyResolvedHead(nn.Module):
    """Suppl. Section 1.9.10 (Jumper et al. 2021): "experimentally resolved" prediction.

    One logit per atom37 slot: the log-odds that the atom is resolved in a high-resolution
    experimental structure (apply a sigmoid for the probability).

    Shapes: ``s [*, N_res, c_s]`` (the Evoformer's single representation) ->
    ``logits [*, N_res, 37]``.
    """

    def __init__(self, c_s: int):
        super().__init__()
        self.c_s = c_s
        self.logits = Linear(c_s, ATOM_TYPE_NUM, init="final")

    def forward(self, s: Tensor) -> dict[str, Tensor]:
        _check_channels(s, self.c_s, "ExperimentallyResolvedHead", "single representation s")
        return {"logits": self.logits(s)}


# ----------------------------------------------------------------------------------------
# AF2 parameter import (see uni_fold.model.weights); AF2's module names are the defaults.


def distogram_head_rows(prefix: str, af2_path: str = f"{AF2_HEADS_PATH}/distogram_head") -> Table:
    """Rows for :class:`DistogramHead` <- AF2's ``distogram_head``."""
    return prefixed(linear_rows("half_logits", f"{af2_path}/half_logits"), prefix)


def masked_msa_head_rows(prefix: str, af2_path: str = f"{AF2_HEADS_PATH}/masked_msa_head") -> Table:
    """Rows for :class:`MaskedMsaHead` <- AF2's ``masked_msa_head``."""
    return prefixed(linear_rows("logits", f"{af2_path}/logits"), prefix)


def predicted_lddt_head_rows(
    prefix: str, af2_path: str = f"{AF2_HEADS_PATH}/predicted_lddt_head"
) -> Table:
    """Rows for :class:`PredictedLDDTHead` <- AF2's ``predicted_lddt_head``."""
    rows: Table = layer_norm_rows("input_layer_norm", f"{af2_path}/input_layer_norm")
    for name in ("act_0", "act_1", "logits"):
        rows.update(linear_rows(name, f"{af2_path}/{name}"))
    return prefixed(rows, prefix)


def predicted_aligned_error_head_rows(
    prefix: str, af2_path: str = f"{AF2_HEADS_PATH}/predicted_aligned_error_head"
) -> Table:
    """Rows for :class:`PredictedAlignedErrorHead` <- AF2's ``predicted_aligned_error_head``."""
    return prefixed(linear_rows("logits", f"{af2_path}/logits"), prefix)


def experimentally_resolved_head_rows(
    prefix: str, af2_path: str = f"{AF2_HEADS_PATH}/experimentally_resolved_head"
) -> Table:
    """Rows for :class:`ExperimentallyResolvedHead` <- AF2's ``experimentally_resolved_head``."""
    return prefixed(linear_rows("logits", f"{af2_path}/logits"), prefix)
