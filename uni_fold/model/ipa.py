"""Suppl. Alg. 22 (Jumper et al. 2021): Invariant Point Attention (IPA).

Each residue attends to every other residue with logits made of three equally weighted
terms: scalar query-key products, pair-representation biases and (negative, weighted)
squared distances between query and key *points* that every residue places in its own
frame and that are compared in the global frame. The values are scalars, points (mapped
back into the query residue's frame) and the pair representation. Because only distances
and frame-local coordinates enter the result, the output is invariant to a global rigid
motion of all frames.

Geometry (points, distances, the point-value average and its norm) is computed in fp32
with autocast switched off, so the module can sit inside a bf16 autocast region.

AF2 parameter names (``.../invariant_point_attention/``): ``q_scalar``, ``kv_scalar``,
``q_point_local``, ``kv_point_local``, ``trainable_point_weights``, ``attention_2d``,
``output_projection``; the attribute names here are the same.
"""
from __future__ import annotations

import logging
import math

import torch
from torch import nn

from uni_fold.geometry.precision import autocast_disabled
from uni_fold.geometry.rigid import Rigid
from uni_fold.model.primitives import Linear
from uni_fold.model.weights import Row, Table, linear_rows, prefixed

logger = logging.getLogger(__name__)

# Additive logit bias for masked residue pairs (AF2 uses 1e5 in IPA, not the 1e9 of the
# Evoformer's attention).
IPA_MASK_INF = 1e5
# Under the square root of the point-value norms, as AF2.
IPA_DIST_EPS = 1e-8


def _softplus_inverse(y: float) -> float:
    """``x`` with ``softplus(x) = y``."""
    return math.log(math.expm1(y))


class InvariantPointAttention(nn.Module):
    """Suppl. Alg. 22 (Jumper et al. 2021): invariant point attention over residues.

    Args:
        c_s: width of the single representation (input and output), AF2 ``num_channel``.
        c_z: width of the pair representation.
        num_head: attention heads ``N_head``.
        num_scalar_qk: scalar query/key channels per head ``c``.
        num_scalar_v: scalar value channels per head.
        num_point_qk: query/key points per head ``N_query_points``.
        num_point_v: value points per head ``N_point_values``.

    Shapes:
        ``s [*, N_res, c_s]``, ``z [*, N_res, N_res, c_z]``, ``frames Rigid [*, N_res]``
        (translations in AF2's scaled units, i.e. Å / ``position_scale``),
        ``mask [*, N_res]`` -> ``[*, N_res, c_s]``.
    """

    def __init__(
        self,
        c_s: int,
        c_z: int,
        num_head: int,
        num_scalar_qk: int,
        num_scalar_v: int,
        num_point_qk: int,
        num_point_v: int,
    ):
        super().__init__()
        for name, value in (("num_head", num_head), ("num_scalar_qk", num_scalar_qk),
                            ("num_scalar_v", num_scalar_v), ("num_point_qk", num_point_qk),
                            ("num_point_v", num_point_v)):
            if value < 1:
                raise ValueError(f"InvariantPointAttention needs {name} >= 1, got {value}")
        self.c_s = c_s
        self.c_z = c_z
        self.num_head = num_head
        self.num_scalar_qk = num_scalar_qk
        self.num_scalar_v = num_scalar_v
        self.num_point_qk = num_point_qk
        self.num_point_v = num_point_v

        h = num_head
        self.q_scalar = Linear(c_s, h * num_scalar_qk)
        self.kv_scalar = Linear(c_s, h * (num_scalar_qk + num_scalar_v))
        self.q_point_local = Linear(c_s, 3 * h * num_point_qk)
        self.kv_point_local = Linear(c_s, 3 * h * (num_point_qk + num_point_v))
        # softplus(trainable_point_weights) = gamma^h of Alg. 22 line 7; starts at 1.
        self.trainable_point_weights = nn.Parameter(
            torch.full((h,), _softplus_inverse(1.0))
        )
        self.attention_2d = Linear(c_z, h)
        c_cat = h * (num_scalar_v + 4 * num_point_v + c_z)
        self.output_projection = Linear(c_cat, c_s, init="final")

        # Each logit term gets a third of the variance (Alg. 22 lines 7-8): w_L = sqrt(1/3),
        # w_C = sqrt(2 / (9 N_query_points)), scalar terms 1/sqrt(c).
        self.scalar_weight = math.sqrt(1.0 / (3 * num_scalar_qk))
        self.point_weight = math.sqrt(1.0 / (3 * num_point_qk * 9.0 / 2))
        self.pair_weight = math.sqrt(1.0 / 3)

    def _local_points(self, proj: torch.Tensor, frames: Rigid, num_points: int) -> torch.Tensor:
        """Linear output ``[*, N, 3 * H * P]`` (x block, y block, z block) -> global points
        ``[*, N, H, P, 3]`` (fp32)."""
        xyz_local = proj.unflatten(-1, (3, -1)).transpose(-1, -2)  # [*, N, H*P, 3]
        xyz_global = frames[..., None].apply(xyz_local)  # fp32
        return xyz_global.unflatten(-2, (self.num_head, num_points))

    def forward(
        self, s: torch.Tensor, z: torch.Tensor, frames: Rigid, mask: torch.Tensor
    ) -> torch.Tensor:
        if s.shape[-1] != self.c_s:
            raise ValueError(f"IPA: s has {s.shape[-1]} channels, expected c_s={self.c_s}")
        n_res = s.shape[-2]
        if z.shape != s.shape[:-1] + (n_res, self.c_z):
            raise ValueError(
                f"IPA: z has shape {tuple(z.shape)}, expected "
                f"{tuple(s.shape[:-1]) + (n_res, self.c_z)} ([*, N_res, N_res, c_z])"
            )
        if tuple(frames.shape) != tuple(s.shape[:-1]):
            raise ValueError(f"IPA: frames have batch shape {tuple(frames.shape)}, expected "
                             f"{tuple(s.shape[:-1])} ([*, N_res])")
        if mask.shape != s.shape[:-1]:
            raise ValueError(f"IPA: mask has shape {tuple(mask.shape)}, expected "
                             f"{tuple(s.shape[:-1])} ([*, N_res])")
        h, c_qk, p_qk = self.num_head, self.num_scalar_qk, self.num_point_qk

        # Scalar queries, keys, values (Alg. 22 line 1): [*, N, H, c].
        q_nhc = self.q_scalar(s).unflatten(-1, (h, c_qk))
        kv_nhc = self.kv_scalar(s).unflatten(-1, (h, -1))
        k_nhc, v_nhc = kv_nhc.split([c_qk, self.num_scalar_v], dim=-1)

        # Points in the global frame (Alg. 22 lines 2-3): [*, N, H, P, 3], fp32.
        q_pts_nhpx = self._local_points(self.q_point_local(s), frames, p_qk)
        kv_pts_nhpx = self._local_points(
            self.kv_point_local(s), frames, p_qk + self.num_point_v
        )
        k_pts_nhpx, v_pts_nhpx = kv_pts_nhpx.split([p_qk, self.num_point_v], dim=-2)

        # Pair bias (Alg. 22 line 4): [*, H, N, N].
        b_hij = self.attention_2d(z).movedim(-1, -3)

        with autocast_disabled():
            # Scalar term.
            logits_hij = torch.einsum(
                "...ihc,...jhc->...hij",
                (q_nhc * self.scalar_weight).float(),
                k_nhc.float(),
            )
            # Point term: -gamma^h w_C / 2 * sum_p |q_ip - k_jp|^2, one coordinate at a time.
            gamma_h = nn.functional.softplus(self.trainable_point_weights.float())
            w_h = (self.point_weight * gamma_h)[:, None, None, None]  # [H, 1, 1, 1]
            q_hip = q_pts_nhpx.movedim(-3, -4)  # [*, H, N, P, 3]
            k_hjp = k_pts_nhpx.movedim(-3, -4)
            dist2_hijp = 0.0
            for x in range(3):
                diff = q_hip[..., :, None, :, x] - k_hjp[..., None, :, :, x]
                dist2_hijp = dist2_hijp + diff * diff
            logits_hij = logits_hij - 0.5 * (w_h * dist2_hijp).sum(dim=-1)
            logits_hij = logits_hij + self.pair_weight * b_hij.float()
            mask = mask.float()
            pair_mask_ij = mask[..., :, None] * mask[..., None, :]
            logits_hij = logits_hij - IPA_MASK_INF * (1.0 - pair_mask_ij[..., None, :, :])
            attn_hij = torch.softmax(logits_hij, dim=-1)

            # Point values averaged in the global frame, then mapped into each query
            # residue's frame (Alg. 22 line 10), with their norms.
            o_pts_global = torch.einsum("...hij,...jhpx->...ihpx", attn_hij, v_pts_nhpx)
            o_pts_local = frames[..., None, None].invert_apply(o_pts_global)  # [*, N, H, P, 3]
            o_pts_norm = torch.sqrt(IPA_DIST_EPS + (o_pts_local**2).sum(dim=-1))

        # Scalar values and pair values (Alg. 22 lines 9, 11).
        o_scalar = torch.einsum("...hij,...jhc->...ihc", attn_hij.to(v_nhc.dtype), v_nhc)
        o_pair = torch.einsum("...hij,...ijc->...ihc", attn_hij.to(z.dtype), z)

        out_dtype = o_scalar.dtype
        features = [
            o_scalar.flatten(-2),
            *[o_pts_local[..., x].flatten(-2).to(out_dtype) for x in range(3)],
            o_pts_norm.flatten(-2).to(out_dtype),
            o_pair.flatten(-2).to(out_dtype),
        ]
        return self.output_projection(torch.cat(features, dim=-1))


def invariant_point_attention_rows(prefix: str, af2_path: str) -> Table:
    """Weight-table rows (see :mod:`uni_fold.model.weights`) for an
    :class:`InvariantPointAttention` at ``prefix`` <- AF2's module at ``af2_path``
    (e.g. ``.../structure_module/fold_iteration/invariant_point_attention``)."""
    rows: Table = {"trainable_point_weights": Row(af2_path, "trainable_point_weights")}
    for name in ("q_scalar", "kv_scalar", "q_point_local", "kv_point_local", "attention_2d",
                 "output_projection"):
        rows.update(linear_rows(name, f"{af2_path}/{name}"))
    return prefixed(rows, prefix)
