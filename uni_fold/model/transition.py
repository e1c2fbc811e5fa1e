"""Point-wise transitions and the outer product mean (MSA -> pair)."""
from __future__ import annotations

import torch
from torch import nn

from uni_fold.model.primitives import LayerNorm, Linear, chunk_apply
from uni_fold.model.runtime import RuntimeAware


class Transition(nn.Module, RuntimeAware):
    """Suppl. Alg. 9 / 15 (Jumper et al. 2021): MSA or pair transition, a two-layer MLP
    with a ``n`` times wider ReLU hidden layer.

    As in AF2 the mask is not applied to the output (padded positions are masked by the
    consumers). With ``runtime.chunk_size`` it runs ``chunk_size`` rows at a time.

    Shapes: ``x [*, N_rows, N_cols, c] -> update [*, N_rows, N_cols, c]``.
    """

    def __init__(self, c: int, n: int = 4):
        super().__init__()
        self.input_layer_norm = LayerNorm(c)
        self.transition1 = Linear(c, n * c, init="relu")
        self.transition2 = Linear(n * c, c, init="final")

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        return self.transition2(torch.relu(self.transition1(self.input_layer_norm(x))))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is not None and mask.shape != x.shape[:-1]:
            raise ValueError(
                f"Transition: mask shape {tuple(mask.shape)} must be {tuple(x.shape[:-1])}"
            )
        dim = -3 if x.ndim >= 3 else -2
        return chunk_apply(self._mlp, [x], [dim], self.runtime.chunk_size, out_dim=dim)


class OuterProductMean(nn.Module, RuntimeAware):
    """Suppl. Alg. 10 (Jumper et al. 2021): pair update from the mean over MSA rows of the
    outer product of two projections of the MSA.

    ``out_ij = W [sum_s a_si (x) b_sj] / (eps + sum_s mask_si mask_sj) + bias`` with
    ``eps = 1e-3``. With ``runtime.chunk_size`` it runs ``chunk_size`` residues ``i`` at
    a time.

    Shapes: ``m [*, N_seq, N_res, c_m]``, ``msa_mask [*, N_seq, N_res]`` -> update
    ``[*, N_res, N_res, c_z]``.
    """

    def __init__(self, c_m: int, c_z: int, c_hidden: int = 32, eps: float = 1e-3):
        super().__init__()
        self.eps = eps
        self.layer_norm_input = LayerNorm(c_m)
        self.left_projection = Linear(c_m, c_hidden)
        self.right_projection = Linear(c_m, c_hidden)
        self.output_linear = Linear(c_hidden * c_hidden, c_z, init="final")

    def _rows(self, a_sic: torch.Tensor, b_sje: torch.Tensor) -> torch.Tensor:
        outer_ijce = torch.einsum("...sic,...sje->...ijce", a_sic, b_sje)
        return self.output_linear(outer_ijce.flatten(-2))

    def forward(self, m: torch.Tensor, msa_mask: torch.Tensor) -> torch.Tensor:
        if m.ndim < 3 or msa_mask.shape != m.shape[:-1]:
            raise ValueError(
                f"OuterProductMean: m must be [*, N_seq, N_res, c_m] and msa_mask [*, N_seq, "
                f"N_res]; got {tuple(m.shape)} and {tuple(msa_mask.shape)}"
            )
        mask = msa_mask.to(m.dtype)[..., None]
        m = self.layer_norm_input(m)
        a_sic = mask * self.left_projection(m)
        b_sje = mask * self.right_projection(m)
        chunk = self.runtime.chunk_size
        out = chunk_apply(self._rows, [a_sic, b_sje], [-2, None], chunk, out_dim=-3)
        norm_ij = torch.einsum("...si,...sj->...ij", mask[..., 0], mask[..., 0])[..., None]
        return out / (self.eps + norm_ij)
