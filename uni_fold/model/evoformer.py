"""The Evoformer block and stack (main trunk and extra-MSA flavour)."""
from __future__ import annotations

import logging

import torch
import torch.utils.checkpoint
from torch import nn

from uni_fold.model.msa import (
    MSAColumnAttention,
    MSAColumnGlobalAttention,
    MSARowAttentionWithPairBias,
)
from uni_fold.model.primitives import SharedDropout
from uni_fold.model.runtime import RuntimeAware, autocast_context
from uni_fold.model.transition import OuterProductMean, Transition
from uni_fold.model.triangle import TriangleAttention, TriangleMultiplication

logger = logging.getLogger(__name__)


def _masks(
    m: torch.Tensor,
    z: torch.Tensor,
    msa_mask: torch.Tensor | None,
    pair_mask: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate shapes and fill in all-ones masks where none is given."""
    if m.ndim < 3 or z.ndim < 3:
        raise ValueError(
            f"Evoformer: m must be [*, N_seq, N_res, c_m] and z [*, N_res, N_res, c_z]; got "
            f"{tuple(m.shape)} and {tuple(z.shape)}"
        )
    n_res = m.shape[-2]
    if z.shape[-3:-1] != (n_res, n_res) or z.shape[:-3] != m.shape[:-3]:
        raise ValueError(
            f"Evoformer: pair activations {tuple(z.shape)} do not match MSA activations "
            f"{tuple(m.shape)} (need z = [*, {n_res}, {n_res}, c_z] with the same batch axes)"
        )
    if msa_mask is None:
        msa_mask = m.new_ones(m.shape[:-1])
    if pair_mask is None:
        pair_mask = z.new_ones(z.shape[:-1])
    return msa_mask, pair_mask


class EvoformerBlock(nn.Module):
    """Suppl. Alg. 6 lines 2-10 (Jumper et al. 2021): one Evoformer block; with
    ``is_extra_msa=True`` the extra-MSA block of Suppl. Alg. 18 (global column attention,
    Alg. 19).

    Order: MSA row attention with pair bias, MSA column (global) attention, MSA transition,
    outer product mean, triangle multiplication outgoing / incoming, triangle attention
    starting / ending node, pair transition; each a residual update. With
    ``outer_product_mean_first`` (AF-Multimer) the outer product mean runs first.

    Dropout (training mode only), as in AF2: rate ``msa_dropout`` (0.15) shared across
    rows after the row attention, ``pair_dropout`` (0.25) shared across rows after both
    triangle multiplications and the starting-node attention and across columns after the
    ending-node attention; the other updates have rate 0 in AF2 and no dropout here.

    Widths: ``c_m`` (``c_e`` for the extra MSA), ``c_z``; ``c_hidden_*`` are per-head
    widths (AF2's ``key_dim // num_head``: 32 for the main MSA, 8 for the extra MSA).

    Shapes: ``m [*, N_seq, N_res, c_m]``, ``z [*, N_res, N_res, c_z]``,
    ``msa_mask [*, N_seq, N_res]``, ``pair_mask [*, N_res, N_res]`` ->
    ``(m, z)`` with the same shapes.
    """

    def __init__(
        self,
        c_m: int,
        c_z: int,
        c_hidden_msa_att: int = 32,
        c_hidden_opm: int = 32,
        c_hidden_mul: int = 128,
        c_hidden_pair_att: int = 32,
        num_heads_msa: int = 8,
        num_heads_pair: int = 4,
        transition_n: int = 4,
        msa_dropout: float = 0.15,
        pair_dropout: float = 0.25,
        is_extra_msa: bool = False,
        outer_product_mean_first: bool = False,
    ):
        super().__init__()
        self.is_extra_msa = is_extra_msa
        self.outer_product_mean_first = outer_product_mean_first
        self.msa_row_attention_with_pair_bias = MSARowAttentionWithPairBias(
            c_m, c_z, c_hidden_msa_att, num_heads_msa
        )
        if is_extra_msa:
            self.msa_column_global_attention = MSAColumnGlobalAttention(
                c_m, c_hidden_msa_att, num_heads_msa
            )
        else:
            self.msa_column_attention = MSAColumnAttention(c_m, c_hidden_msa_att, num_heads_msa)
        self.msa_transition = Transition(c_m, transition_n)
        self.outer_product_mean = OuterProductMean(c_m, c_z, c_hidden_opm)
        self.triangle_multiplication_outgoing = TriangleMultiplication(
            c_z, c_hidden_mul, outgoing=True
        )
        self.triangle_multiplication_incoming = TriangleMultiplication(
            c_z, c_hidden_mul, outgoing=False
        )
        self.triangle_attention_starting_node = TriangleAttention(
            c_z, c_hidden_pair_att, num_heads_pair, starting=True
        )
        self.triangle_attention_ending_node = TriangleAttention(
            c_z, c_hidden_pair_att, num_heads_pair, starting=False
        )
        self.pair_transition = Transition(c_z, transition_n)
        self.msa_dropout_rowwise = SharedDropout(msa_dropout, "per_row")
        self.pair_dropout_rowwise = SharedDropout(pair_dropout, "per_row")
        self.pair_dropout_columnwise = SharedDropout(pair_dropout, "per_column")

    def forward(
        self,
        m: torch.Tensor,
        z: torch.Tensor,
        msa_mask: torch.Tensor | None = None,
        pair_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        msa_mask, pair_mask = _masks(m, z, msa_mask, pair_mask)
        if self.outer_product_mean_first:
            z = z + self.outer_product_mean(m, msa_mask)
        m = m + self.msa_dropout_rowwise(self.msa_row_attention_with_pair_bias(m, z, msa_mask))
        if self.is_extra_msa:
            m = m + self.msa_column_global_attention(m, msa_mask)
        else:
            m = m + self.msa_column_attention(m, msa_mask)
        m = m + self.msa_transition(m, msa_mask)
        if not self.outer_product_mean_first:
            z = z + self.outer_product_mean(m, msa_mask)
        z = z + self.pair_dropout_rowwise(self.triangle_multiplication_outgoing(z, pair_mask))
        z = z + self.pair_dropout_rowwise(self.triangle_multiplication_incoming(z, pair_mask))
        z = z + self.pair_dropout_rowwise(self.triangle_attention_starting_node(z, pair_mask))
        z = z + self.pair_dropout_columnwise(self.triangle_attention_ending_node(z, pair_mask))
        z = z + self.pair_transition(z, pair_mask)
        return m, z


class EvoformerStack(nn.Module, RuntimeAware):
    """Suppl. Alg. 6 (Jumper et al. 2021): ``num_blocks`` Evoformer blocks in sequence;
    with ``is_extra_msa=True`` the extra-MSA stack of Suppl. Alg. 18.

    AF2's projection of the first MSA row to the single representation is not part of
    this stack (it belongs to the embedding module around it). Runtime knobs:
    ``checkpoint_blocks`` recomputes each block in the backward pass while training,
    ``precision="bf16"`` runs the blocks under bf16 autocast. Keyword arguments are those
    of :class:`EvoformerBlock`.

    Shapes: as :class:`EvoformerBlock`.
    """

    def __init__(self, num_blocks: int, c_m: int, c_z: int, **block_kwargs: object):
        super().__init__()
        if num_blocks < 0:
            raise ValueError(f"EvoformerStack num_blocks must be >= 0, got {num_blocks}")
        self.blocks = nn.ModuleList(
            EvoformerBlock(c_m, c_z, **block_kwargs) for _ in range(num_blocks)  # type: ignore[arg-type]
        )

    def forward(
        self,
        m: torch.Tensor,
        z: torch.Tensor,
        msa_mask: torch.Tensor | None = None,
        pair_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        msa_mask, pair_mask = _masks(m, z, msa_mask, pair_mask)
        checkpoint = self.runtime.checkpoint_blocks and self.training and torch.is_grad_enabled()
        with autocast_context(self.runtime, m.device.type):
            for block in self.blocks:
                if checkpoint:
                    m, z = torch.utils.checkpoint.checkpoint(
                        block, m, z, msa_mask, pair_mask, use_reentrant=False
                    )
                else:
                    m, z = block(m, z, msa_mask, pair_mask)
        return m, z
