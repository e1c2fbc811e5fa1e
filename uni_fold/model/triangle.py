"""Triangle updates of the pair representation: multiplicative (outgoing / incoming
edges) and attention (around the starting / ending node)."""
from __future__ import annotations

import torch
from torch import nn

from uni_fold.model.msa import pair_bias
from uni_fold.model.primitives import Attention, LayerNorm, Linear, chunk_apply, mask_bias
from uni_fold.model.runtime import RuntimeAware


def _check_pair(z: torch.Tensor, pair_mask: torch.Tensor, name: str) -> None:
    if z.ndim < 3 or z.shape[-2] != z.shape[-3]:
        raise ValueError(
            f"{name}: pair activations must be [*, N_res, N_res, c_z], got {tuple(z.shape)}"
        )
    if pair_mask.shape != z.shape[:-1]:
        raise ValueError(
            f"{name}: pair_mask shape {tuple(pair_mask.shape)} must be [*, N_res, N_res] = "
            f"{tuple(z.shape[:-1])}"
        )


class TriangleMultiplication(nn.Module, RuntimeAware):
    """Suppl. Alg. 11 / 12 (Jumper et al. 2021): triangle multiplicative update using
    outgoing edges (``x_ij = sum_k a_ik * b_jk``) or incoming edges
    (``x_ij = sum_k a_ki * b_kj``), with AF2's separate left/right projections and gates.

    AF2's weight names are kept: ``left_projection`` / ``right_projection`` give ``a`` /
    ``b`` for outgoing edges; for incoming edges the sum is ``sum_k right_ki * left_kj``,
    as in AF2's equation ``'kjc,kic->ijc'``.

    Shapes: ``z [*, N_res, N_res, c_z]``, ``pair_mask [*, N_res, N_res]`` -> update
    ``[*, N_res, N_res, c_z]``. With ``runtime.chunk_size`` the product, the centre layer
    norm, the output projection and the gate are computed ``chunk_size`` rows ``i`` at a time.
    """

    def __init__(self, c_z: int, c_hidden: int = 128, outgoing: bool = True):
        super().__init__()
        self.outgoing = outgoing
        self.layer_norm_input = LayerNorm(c_z)
        self.left_projection = Linear(c_z, c_hidden)
        self.right_projection = Linear(c_z, c_hidden)
        self.left_gate = Linear(c_z, c_hidden, init="gating")
        self.right_gate = Linear(c_z, c_hidden, init="gating")
        self.center_layer_norm = LayerNorm(c_hidden)
        self.output_projection = Linear(c_hidden, c_z, init="final")
        self.gating_linear = Linear(c_z, c_z, init="gating")

    def _rows(self, lhs: torch.Tensor, rhs: torch.Tensor, z_rows: torch.Tensor) -> torch.Tensor:
        if self.outgoing:  # lhs = left [*, i, k, c], rhs = right [*, j, k, c]
            x_ijc = torch.einsum("...ikc,...jkc->...ijc", lhs, rhs)
        else:  # lhs = right [*, k, i, c], rhs = left [*, k, j, c]
            x_ijc = torch.einsum("...kic,...kjc->...ijc", lhs, rhs)
        x_ijc = self.output_projection(self.center_layer_norm(x_ijc))
        return x_ijc * torch.sigmoid(self.gating_linear(z_rows))

    def forward(self, z: torch.Tensor, pair_mask: torch.Tensor) -> torch.Tensor:
        _check_pair(z, pair_mask, type(self).__name__)
        mask = pair_mask[..., None].to(z.dtype)
        z = self.layer_norm_input(z)
        left = mask * self.left_projection(z) * torch.sigmoid(self.left_gate(z))
        right = mask * self.right_projection(z) * torch.sigmoid(self.right_gate(z))
        if self.outgoing:
            args, dims = [left, right, z], [-3, None, -3]
        else:
            args, dims = [right, left, z], [-2, None, -3]
        return chunk_apply(self._rows, args, dims, self.runtime.chunk_size, out_dim=-3)


class TriangleAttention(nn.Module):
    """Suppl. Alg. 13 / 14 (Jumper et al. 2021): gated self-attention around the starting
    node (along rows, ``starting=True``) or the ending node (along columns), biased by a
    per-head projection of the pair representation itself.

    Shapes: ``z [*, N_res, N_res, c_z]``, ``pair_mask [*, N_res, N_res]`` -> update
    ``[*, N_res, N_res, c_z]``.
    """

    def __init__(self, c_z: int, c_hidden: int = 32, num_heads: int = 4, starting: bool = True):
        super().__init__()
        self.starting = starting
        self.query_norm = LayerNorm(c_z)
        self.feat_2d_linear = Linear(c_z, num_heads, bias=False, init="normal")
        self.attention = Attention(c_z, c_z, c_hidden, num_heads, gating=True)

    def forward(self, z: torch.Tensor, pair_mask: torch.Tensor) -> torch.Tensor:
        _check_pair(z, pair_mask, type(self).__name__)
        if not self.starting:
            z = z.transpose(-2, -3)
            pair_mask = pair_mask.transpose(-1, -2)
        key_bias = mask_bias(pair_mask)[..., :, None, None, :]  # [*, I, 1, 1, J]
        z = self.query_norm(z)
        tri_bias = pair_bias(z, self.feat_2d_linear)  # [*, 1, H, I, J]
        out = self.attention(z, z, [key_bias, tri_bias])
        return out if self.starting else out.transpose(-2, -3)
