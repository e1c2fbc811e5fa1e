"""Attention over the MSA representation: row-wise with pair bias, column-wise, and the
global column-wise flavour used by the extra-MSA stack."""
from __future__ import annotations

import torch
from torch import nn

from uni_fold.model.primitives import Attention, GlobalAttention, LayerNorm, Linear, mask_bias


def _check_msa(m: torch.Tensor, msa_mask: torch.Tensor, name: str) -> None:
    if m.ndim < 3:
        raise ValueError(
            f"{name}: MSA activations must be [*, N_seq, N_res, c_m], got {tuple(m.shape)}"
        )
    if msa_mask.shape != m.shape[:-1]:
        raise ValueError(
            f"{name}: msa_mask shape {tuple(msa_mask.shape)} must be [*, N_seq, N_res] = "
            f"{tuple(m.shape[:-1])}"
        )


def pair_bias(z: torch.Tensor, linear: nn.Module) -> torch.Tensor:
    """Per-head attention bias from the pair representation.

    ``z [*, N_q, N_k, c_z] -> [*, 1, H, N_q, N_k]`` (the leading 1 broadcasts over the
    attention batch axis, e.g. the MSA rows).
    """
    return linear(z).movedim(-1, -3).unsqueeze(-4)


class MSARowAttentionWithPairBias(nn.Module):
    """Suppl. Alg. 7 (Jumper et al. 2021): gated self-attention along each MSA row, with
    a per-head bias projected from the pair representation.

    Shapes: ``m [*, N_seq, N_res, c_m]``, ``z [*, N_res, N_res, c_z]``,
    ``msa_mask [*, N_seq, N_res]`` -> update ``[*, N_seq, N_res, c_m]``.
    """

    def __init__(self, c_m: int, c_z: int, c_hidden: int = 32, num_heads: int = 8):
        super().__init__()
        self.query_norm = LayerNorm(c_m)
        self.feat_2d_norm = LayerNorm(c_z)
        self.feat_2d_linear = Linear(c_z, num_heads, bias=False, init="normal")
        self.attention = Attention(c_m, c_m, c_hidden, num_heads, gating=True)

    def forward(self, m: torch.Tensor, z: torch.Tensor, msa_mask: torch.Tensor) -> torch.Tensor:
        _check_msa(m, msa_mask, "MSARowAttentionWithPairBias")
        key_bias = mask_bias(msa_mask)[..., :, None, None, :]  # [*, N_seq, 1, 1, N_res]
        m = self.query_norm(m)
        z_bias = pair_bias(self.feat_2d_norm(z), self.feat_2d_linear)  # [*, 1, H, N_res, N_res]
        return self.attention(m, m, [key_bias, z_bias])


class MSAColumnAttention(nn.Module):
    """Suppl. Alg. 8 (Jumper et al. 2021): gated self-attention along each MSA column.

    Shapes: ``m [*, N_seq, N_res, c_m]``, ``msa_mask [*, N_seq, N_res]`` -> update
    ``[*, N_seq, N_res, c_m]``.
    """

    def __init__(self, c_m: int, c_hidden: int = 32, num_heads: int = 8):
        super().__init__()
        self.query_norm = LayerNorm(c_m)
        self.attention = Attention(c_m, c_m, c_hidden, num_heads, gating=True)

    def forward(self, m: torch.Tensor, msa_mask: torch.Tensor) -> torch.Tensor:
        _check_msa(m, msa_mask, "MSAColumnAttention")
        m_t = m.transpose(-2, -3)  # [*, N_res, N_seq, c_m]
        mask_t = msa_mask.transpose(-1, -2)
        key_bias = mask_bias(mask_t)[..., :, None, None, :]  # [*, N_res, 1, 1, N_seq]
        m_t = self.query_norm(m_t)
        return self.attention(m_t, m_t, [key_bias]).transpose(-2, -3)


class MSAColumnGlobalAttention(nn.Module):
    """Suppl. Alg. 19 (Jumper et al. 2021): global attention along each column of the
    extra MSA (one averaged query per head; cheap for thousands of sequences).

    Shapes: ``m [*, N_extra, N_res, c_e]``, ``msa_mask [*, N_extra, N_res]`` -> update
    ``[*, N_extra, N_res, c_e]``.
    """

    def __init__(self, c_e: int, c_hidden: int = 8, num_heads: int = 8):
        super().__init__()
        self.query_norm = LayerNorm(c_e)
        self.attention = GlobalAttention(c_e, c_hidden, num_heads, gating=True)

    def forward(self, m: torch.Tensor, msa_mask: torch.Tensor) -> torch.Tensor:
        _check_msa(m, msa_mask, "MSAColumnGlobalAttention")
        m_t = self.query_norm(m.transpose(-2, -3))  # [*, N_res, N_extra, c_e]
        mask_t = msa_mask.transpose(-1, -2)
        return self.attention(m_t, mask_t).transpose(-2, -3)
