"""Suppl. Alg. 20 (Jumper et al. 2021): the structure module.

The single representation is turned into one rigid frame per residue (the backbone) by
``num_layer`` applications of one shared :class:`FoldIteration` (IPA, transition,
backbone update), and every layer also predicts the seven torsion angles from which the
side-chain frames and atom14 positions follow (Alg. 24).

Units, as in AF2: the backbone frames the layers pass to each other keep translations in
``Å / position_scale`` (nanometres for ``position_scale = 10``); IPA works in those units.
Side chains, atoms and every returned frame (``sm["affine"]``, ``final_affines``) are in Å.
The frames are carried as AF2's 7-vector ``quaternion (w, x, y, z) + translation`` and the
backbone update multiplies the quaternion (Alg. 23), so the per-layer ``affine`` outputs
match AF2's ``traj`` including the quaternion's sign.

All geometry runs in fp32 with autocast switched off.
"""
from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from uni_fold.config import SidechainConfig, StructureModuleConfig
from uni_fold.geometry import all_atom
from uni_fold.geometry.precision import fp32_no_autocast
from uni_fold.geometry.rigid import Rigid, quat_multiply_by_vec, rot_vec_mul
from uni_fold.model.ipa import InvariantPointAttention, invariant_point_attention_rows
from uni_fold.model.primitives import LayerNorm, Linear
from uni_fold.model.weights import Table, layer_norm_rows, linear_rows, prefixed

logger = logging.getLogger(__name__)

Tensor = torch.Tensor

# The 7 torsion angles per residue (omega, phi, psi, chi1-4) as (sin, cos).
NUM_TORSIONS = 7
# Floor of the squared norm when normalising predicted (sin, cos) pairs, as AF2.
ANGLE_NORM_EPS = 1e-12


def identity_affine(
    batch_shape: tuple[int, ...], device: torch.device, dtype: torch.dtype = torch.float32
) -> Tensor:
    """AF2's 7-vector ``[*, 7]`` for identity frames: quaternion (1, 0, 0, 0), zero shift."""
    affine = torch.zeros(batch_shape + (7,), device=device, dtype=dtype)
    affine[..., 0] = 1.0
    return affine


def affine_to_rigid(affine: Tensor) -> Rigid:
    """``[*, 7]`` (unit quaternion + translation) -> ``Rigid [*]`` (no re-normalisation)."""
    return Rigid.from_tensor_7(affine, normalize_quat=False)


@fp32_no_autocast
def pre_compose_affine(affine: Tensor, update: Tensor) -> Tensor:
    """Suppl. Alg. 23 (Jumper et al. 2021) lines 2-4: apply a backbone update to frames.

    ``update [*, 6] = (b, c, d, t)``: the new quaternion is ``q * (1, b, c, d)`` normalised
    and the translation moves by ``R(q) t`` (the update acts in the local frame, before the
    old transform: AF2's ``QuatAffine.pre_compose``).

    Args:
        affine: ``[*, 7]`` current frames (unit quaternion + translation).
        update: ``[*, 6]`` from the ``affine_update`` projection.
    Returns:
        ``[*, 7]`` updated frames, quaternion normalised.
    """
    quat, trans = affine[..., :4], affine[..., 4:]
    new_quat = quat + quat_multiply_by_vec(quat, update[..., :3])
    new_quat = new_quat / torch.linalg.vector_norm(new_quat, dim=-1, keepdim=True)
    rot = affine_to_rigid(affine).rot
    new_trans = trans + rot_vec_mul(rot, update[..., 3:])
    return torch.cat([new_quat, new_trans], dim=-1)


@fp32_no_autocast
def scale_affine_translation(affine: Tensor, factor: float) -> Tensor:
    """Multiply the translation part of ``[*, 7]`` frames by ``factor`` (quaternion kept)."""
    return torch.cat([affine[..., :4], affine[..., 4:] * factor], dim=-1)


@fp32_no_autocast
def l2_normalize_angles(x: Tensor, eps: float = ANGLE_NORM_EPS) -> Tensor:
    """``x / sqrt(max(|x|^2, eps))`` over the last axis (the (sin, cos) pair), in fp32."""
    return x / torch.sqrt(torch.clamp((x * x).sum(dim=-1, keepdim=True), min=eps))


class MultiRigidSidechain(nn.Module):
    """Suppl. Alg. 20 lines 11-14 and Alg. 24: torsion angles -> frames -> atom14 positions.

    The angle ResNet reads the current and the initial single representation, predicts
    unnormalised ``(sin, cos)`` pairs for omega, phi, psi, chi1-4, and the all-atom
    geometry turns them into the 8 rigid-group frames and the idealised atom14 positions.

    Args:
        c_s: width of the structure module's activations (AF2 ``num_channel``).
        c_s_initial: width of the initial single representation (AF2 ``seq_channel``).
        cfg: AF2's ``sidechain`` config (``num_channel``, ``num_residual_block``).

    Shapes:
        ``act [*, N_res, c_s]``, ``initial_act [*, N_res, c_s_initial]``,
        ``backbone Rigid [*, N_res]`` in Å, ``aatype [*, N_res]`` -> dict with
        ``angles_sin_cos`` and ``unnormalized_angles_sin_cos`` ``[*, N_res, 7, 2]``,
        ``frames Rigid [*, N_res, 8]`` and ``atom_pos [*, N_res, 14, 3]`` (Å, fp32).
    """

    def __init__(self, c_s: int, c_s_initial: int, cfg: SidechainConfig):
        super().__init__()
        c = cfg.num_channel
        self.input_projection = Linear(c_s, c)
        self.input_projection_1 = Linear(c_s_initial, c)
        self.resblock1 = nn.ModuleList(
            [Linear(c, c, init="relu") for _ in range(cfg.num_residual_block)]
        )
        self.resblock2 = nn.ModuleList(
            [Linear(c, c, init="final") for _ in range(cfg.num_residual_block)]
        )
        self.unnormalized_angles = Linear(c, 2 * NUM_TORSIONS)

    def forward(
        self, act: Tensor, initial_act: Tensor, backbone: Rigid, aatype: Tensor
    ) -> dict[str, Any]:
        relu = torch.relu
        a = self.input_projection(relu(act)) + self.input_projection_1(relu(initial_act))
        for block1, block2 in zip(self.resblock1, self.resblock2, strict=True):
            a = a + block2(relu(block1(relu(a))))
        unnormalized = self.unnormalized_angles(relu(a)).unflatten(-1, (NUM_TORSIONS, 2))
        unnormalized = unnormalized.float()
        angles = l2_normalize_angles(unnormalized)
        frames = all_atom.torsion_angles_to_frames(aatype, backbone, angles)
        atom_pos = all_atom.frames_to_atom14_positions(aatype, frames)
        return {
            "angles_sin_cos": angles,
            "unnormalized_angles_sin_cos": unnormalized,
            "frames": frames,
            "atom_pos": atom_pos,
        }


class FoldIteration(nn.Module):
    """Suppl. Alg. 20 (Jumper et al. 2021) lines 6-14: one layer of the structure module.

    IPA with a residual connection, dropout and layer norm (lines 6-8), a 3-layer ReLU
    transition with the same (line 9), the backbone update (line 10, Alg. 23) and the
    side-chain prediction (lines 11-14).

    Shapes:
        ``act [*, N_res, c]``, ``initial_act [*, N_res, c_s]``, ``z [*, N_res, N_res, c_z]``
        (already layer-normed), ``affine [*, N_res, 7]`` (scaled units), ``mask [*, N_res]``,
        ``aatype [*, N_res]`` -> (``act`` ``[*, N_res, c]``, updated ``affine [*, N_res, 7]``
        with gradients still attached, side-chain dict of :class:`MultiRigidSidechain`).
    """

    def __init__(self, c_s: int, c_z: int, cfg: StructureModuleConfig):
        super().__init__()
        c = cfg.num_channel
        if cfg.num_layer_in_transition < 1:
            raise ValueError(
                f"num_layer_in_transition must be >= 1, got {cfg.num_layer_in_transition}"
            )
        self.position_scale = cfg.position_scale
        self.invariant_point_attention = InvariantPointAttention(
            c, c_z, cfg.num_head, cfg.num_scalar_qk, cfg.num_scalar_v,
            cfg.num_point_qk, cfg.num_point_v,
        )
        self.attention_layer_norm = LayerNorm(c)
        n = cfg.num_layer_in_transition
        self.transition = nn.ModuleList(
            [Linear(c, c, init="relu" if i < n - 1 else "final") for i in range(n)]
        )
        self.transition_layer_norm = LayerNorm(c)
        self.affine_update = Linear(c, 6, init="final")
        self.rigid_sidechain = MultiRigidSidechain(c, c_s, cfg.sidechain)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(
        self,
        act: Tensor,
        initial_act: Tensor,
        z: Tensor,
        affine: Tensor,
        mask: Tensor,
        aatype: Tensor,
    ) -> tuple[Tensor, Tensor, dict[str, Any]]:
        frames = affine_to_rigid(affine)
        act = act + self.invariant_point_attention(act, z, frames, mask)
        act = self.attention_layer_norm(self.dropout(act))

        update = act
        for i, layer in enumerate(self.transition):
            update = layer(update)
            if i < len(self.transition) - 1:
                update = torch.relu(update)
        act = self.transition_layer_norm(self.dropout(act + update))

        affine = pre_compose_affine(affine, self.affine_update(act))
        backbone_angstrom = affine_to_rigid(scale_affine_translation(affine, self.position_scale))
        sidechain = self.rigid_sidechain(act, initial_act, backbone_angstrom, aatype)
        return act, affine, sidechain


class StructureModule(nn.Module):
    """Suppl. Alg. 20 (Jumper et al. 2021): single + pair representation -> atoms.

    Layer-norms the inputs (lines 1-2), projects the single representation (line 3),
    starts from identity frames (line 4) and applies one :class:`FoldIteration` with
    shared weights ``num_layer`` times; between layers the rotation is detached (line 20),
    the translation is not.

    Args:
        c_s: width of the single representation (AF2 ``seq_channel``).
        c_z: width of the pair representation.
        cfg: AF2's structure-module config (``num_channel``, ``num_layer``, IPA sizes, ...).

    ``forward(s [*, N_res, c_s], z [*, N_res, N_res, c_z], aatype [*, N_res] int,
    seq_mask [*, N_res])`` returns:

    * ``final_atom14_positions [*, N_res, 14, 3]``, ``final_atom14_mask [*, N_res, 14]``,
    * ``final_atom_positions [*, N_res, 37, 3]`` (zero where the atom does not exist),
      ``final_atom_mask [*, N_res, 37]``,
    * ``final_affines [*, N_res, 7]``: last layer's frames, translation in Å,
    * ``single [*, N_res, num_channel]``: the last activations (AF2's
      ``representations['structure_module']``, the input of the pLDDT head),
    * ``sm``: per-layer outputs stacked on a leading layer axis ``L = num_layer``:
      ``affine [L, *, N_res, 7]`` (AF2's ``traj``: quaternion + translation in Å),
      ``angles_sin_cos`` and ``unnormalized_angles_sin_cos [L, *, N_res, 7, 2]``,
      ``atom_pos [L, *, N_res, 14, 3]``, ``frames [L, *, N_res, 8, 4, 4]`` (rigid-group
      frames as homogeneous matrices, Å), ``single [*, N_res, num_channel]``, and
      ``sidechains``: a dict holding the same four side-chain tensors, as AF2 nests them.

    All positions, frames and angles are fp32, also under bf16 autocast.
    """

    def __init__(self, c_s: int, c_z: int, cfg: StructureModuleConfig):
        super().__init__()
        if cfg.num_layer < 1:
            raise ValueError(f"StructureModuleConfig.num_layer must be >= 1, got {cfg.num_layer}")
        self.c_s = c_s
        self.c_z = c_z
        self.num_layer = cfg.num_layer
        self.position_scale = cfg.position_scale
        self.single_layer_norm = LayerNorm(c_s)
        self.initial_projection = Linear(c_s, cfg.num_channel)
        self.pair_layer_norm = LayerNorm(c_z)
        self.fold_iteration = FoldIteration(c_s, c_z, cfg)

    def _check_inputs(self, s: Tensor, z: Tensor, aatype: Tensor, seq_mask: Tensor) -> None:
        if s.dim() < 2 or s.shape[-1] != self.c_s:
            raise ValueError(f"StructureModule: single representation s has shape "
                             f"{tuple(s.shape)}, expected [*, N_res, c_s={self.c_s}]")
        lead = tuple(s.shape[:-1])
        if tuple(z.shape) != lead + (s.shape[-2], self.c_z):
            raise ValueError(f"StructureModule: pair representation z has shape "
                             f"{tuple(z.shape)}, expected {lead + (s.shape[-2], self.c_z)}")
        if tuple(aatype.shape) != lead:
            raise ValueError(f"StructureModule: aatype has shape {tuple(aatype.shape)}, expected "
                             f"{lead}; pass integer residue types, not one-hot")
        if tuple(seq_mask.shape) != lead:
            raise ValueError(f"StructureModule: seq_mask has shape {tuple(seq_mask.shape)}, "
                             f"expected {lead}")

    def forward(self, s: Tensor, z: Tensor, aatype: Tensor, seq_mask: Tensor) -> dict[str, Any]:
        self._check_inputs(s, z, aatype, seq_mask)
        s = self.single_layer_norm(s)
        initial_act = s
        act = self.initial_projection(s)
        z = self.pair_layer_norm(z)
        # Frames are fp32 (fp64 only for fp64 inputs, e.g. gradient checks).
        geometry_dtype = torch.float64 if s.dtype == torch.float64 else torch.float32
        affine = identity_affine(tuple(s.shape[:-1]), s.device, geometry_dtype)

        layers: list[dict[str, Tensor]] = []
        for _ in range(self.num_layer):
            act, affine, sidechain = self.fold_iteration(
                act, initial_act, z, affine, seq_mask, aatype
            )
            layers.append({
                "affine": scale_affine_translation(affine, self.position_scale),
                "angles_sin_cos": sidechain["angles_sin_cos"],
                "unnormalized_angles_sin_cos": sidechain["unnormalized_angles_sin_cos"],
                "atom_pos": sidechain["atom_pos"],
                "frames": sidechain["frames"].to_tensor_4x4(),
            })
            # Alg. 20 line 20: no gradient flows through the rotation into the next layer.
            affine = torch.cat([affine[..., :4].detach(), affine[..., 4:]], dim=-1)

        sm: dict[str, Any] = {k: torch.stack([out[k] for out in layers]) for k in layers[0]}
        sm["single"] = act
        sidechain_keys = ("angles_sin_cos", "unnormalized_angles_sin_cos", "atom_pos", "frames")
        sm["sidechains"] = {k: sm[k] for k in sidechain_keys}
        masks = all_atom.make_atom14_masks(aatype)
        atom14 = sm["atom_pos"][-1]
        atom37 = all_atom.atom14_to_atom37(atom14, aatype)
        return {
            "final_atom14_positions": atom14,
            "final_atom14_mask": masks["atom14_atom_exists"],
            "final_atom_positions": atom37,
            "final_atom_mask": masks["atom37_atom_exists"],
            "final_affines": sm["affine"][-1],
            "single": act,
            "sm": sm,
        }


# ----------------------------------------------------------------------------------------
# AF2 parameter import (see uni_fold.model.weights)

AF2_STRUCTURE_MODULE_PATH = "alphafold/alphafold_iteration/structure_module"


def _numbered_rows(prefix: str, af2_path: str, name: str, count: int) -> Table:
    """Rows for ``prefix.<name>.<i>`` <- AF2's repeated ``name``, ``name_1``, ``name_2``, ...
    (haiku numbers a module name used more than once in the same scope)."""
    rows: Table = {}
    for i in range(count):
        af2_name = name if i == 0 else f"{name}_{i}"
        rows.update(linear_rows(f"{name}.{i}", f"{af2_path}/{af2_name}"))
    return prefixed(rows, prefix)


def multi_rigid_sidechain_rows(prefix: str, af2_path: str, num_residual_block: int) -> Table:
    """Rows for :class:`MultiRigidSidechain` <- AF2's ``rigid_sidechain``."""
    rows: Table = {}
    for name in ("input_projection", "input_projection_1", "unnormalized_angles"):
        rows.update(linear_rows(name, f"{af2_path}/{name}"))
    for name in ("resblock1", "resblock2"):
        rows.update(_numbered_rows("", af2_path, name, num_residual_block))
    return prefixed(rows, prefix)


def fold_iteration_rows(prefix: str, af2_path: str, cfg: StructureModuleConfig) -> Table:
    """Rows for :class:`FoldIteration` <- AF2's ``fold_iteration`` (shared by all layers,
    so its arrays are not stacked)."""
    rows: Table = {
        **invariant_point_attention_rows(
            "invariant_point_attention", f"{af2_path}/invariant_point_attention"
        ),
        **layer_norm_rows("attention_layer_norm", f"{af2_path}/attention_layer_norm"),
        **_numbered_rows("", af2_path, "transition", cfg.num_layer_in_transition),
        **layer_norm_rows("transition_layer_norm", f"{af2_path}/transition_layer_norm"),
        **linear_rows("affine_update", f"{af2_path}/affine_update"),
        **multi_rigid_sidechain_rows(
            "rigid_sidechain", f"{af2_path}/rigid_sidechain", cfg.sidechain.num_residual_block
        ),
    }
    return prefixed(rows, prefix)


def structure_module_rows(
    prefix: str, cfg: StructureModuleConfig, af2_path: str = AF2_STRUCTURE_MODULE_PATH
) -> Table:
    """Weight-table rows for a :class:`StructureModule` at ``prefix`` (``""`` for the module
    itself) <- AF2's ``structure_module`` at ``af2_path``. Use with
    :func:`uni_fold.model.weights.load_af2_params`."""
    rows: Table = {
        **layer_norm_rows("single_layer_norm", f"{af2_path}/single_layer_norm"),
        **linear_rows("initial_projection", f"{af2_path}/initial_projection"),
        **layer_norm_rows("pair_layer_norm", f"{af2_path}/pair_layer_norm"),
        **fold_iteration_rows("fold_iteration", f"{af2_path}/fold_iteration", cfg),
    }
    return prefixed(rows, prefix)
