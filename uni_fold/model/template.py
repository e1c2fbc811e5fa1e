"""Template embedding: structural hints from homologous structures.

* pair side (Suppl. Alg. 2 lines 9-13): each template's pair features
  (:func:`build_template_pair_feat`) go through ``embedding2d`` and the
  :class:`TemplatePairStack` (Alg. 16) in :class:`SingleTemplateEmbedding`; the query pair
  representation then attends over the templates at every residue pair
  (:class:`TemplateEmbedding`, Alg. 17 "TemplatePointwiseAttention").
* MSA side (Alg. 2 lines 7-8): each template's residue types and torsion angles
  (:func:`build_template_angle_feat`) become an extra MSA row
  (:class:`TemplateTorsionEmbedder`).

Attribute names follow AF2's parameter scopes (``single_template_embedding``,
``template_pair_stack``, ``embedding2d``, ``output_layer_norm``, ``attention``,
``template_single_embedding``, ``template_projection``).
"""
from __future__ import annotations

import logging

import torch
from torch import nn

from data_pipeline import residue_constants as rc
from uni_fold.config import TemplateConfig, TemplatePairStackConfig
from uni_fold.geometry.all_atom import atom37_to_torsion_angles, backbone_frames_from_atom37
from uni_fold.model.embedders import dgram_from_positions
from uni_fold.model.primitives import Attention, LayerNorm, Linear, SharedDropout, mask_bias
from uni_fold.model.transition import Transition
from uni_fold.model.triangle import TriangleAttention, TriangleMultiplication
from uni_fold.model.weights import (
    Table,
    attention_rows,
    layer_norm_rows,
    linear_rows,
    prefixed,
    stack_rows,
    transition_rows,
    triangle_attention_rows,
    triangle_multiplication_rows,
)

logger = logging.getLogger(__name__)

#: Template residue classes: 20 amino acids, unknown, gap.
NUM_TEMPLATE_AATYPES = 22
#: Width of the template torsion feature: aatype one-hot (22), sin/cos of the 7 torsions
#: (14), the alternative (pi-shifted) sin/cos (14), and the 7 torsion masks.
TEMPLATE_ANGLE_FEAT_DIM = 57
_N, _CA, _C = (rc.atom_order[a] for a in ("N", "CA", "C"))


def template_pair_feat_dim(num_dgram_bins: int = 39) -> int:
    """Width of the template pair feature: distogram, pseudo-beta mask, aatype of j and
    of i, unit vector and backbone mask (88 for AF2's 39 bins)."""
    return num_dgram_bins + 1 + 2 * NUM_TEMPLATE_AATYPES + 3 + 1


def _head_dim(total: int | None, width: int, num_head: int, where: str) -> int:
    """Per-head width from AF2's total ``key_dim``/``value_dim`` (None: the input width)."""
    total = width if total is None else total
    if total % num_head:
        raise ValueError(f"{where}: key/value width {total} is not divisible by {num_head} heads")
    return total // num_head


# ----------------------------------------------------------------------------------------
# Template pair stack (Alg. 16)


class TemplatePairBlock(nn.Module):
    """One block of Suppl. Alg. 16 (Jumper et al. 2021): triangle attention around the
    starting and ending node, triangle multiplication with outgoing and incoming edges,
    and a pair transition, each a residual update with AF2's shared dropout.

    Shapes: ``t [*, N_res, N_res, c_t]``, ``pair_mask [*, N_res, N_res]`` -> same as ``t``.
    """

    def __init__(self, c_t: int, config: TemplatePairStackConfig):
        super().__init__()
        tas, tae = config.triangle_attention_starting_node, config.triangle_attention_ending_node
        tmo, tmi = config.triangle_multiplication_outgoing, config.triangle_multiplication_incoming
        if tas.key_dim != tas.value_dim or tae.key_dim != tae.value_dim:
            raise ValueError("template triangle attention needs key_dim == value_dim")
        self.triangle_attention_starting_node = TriangleAttention(
            c_t, _head_dim(tas.key_dim, c_t, tas.num_head, "template attention"), tas.num_head,
            starting=True,
        )
        self.triangle_attention_ending_node = TriangleAttention(
            c_t, _head_dim(tae.key_dim, c_t, tae.num_head, "template attention"), tae.num_head,
            starting=False,
        )
        self.triangle_multiplication_outgoing = TriangleMultiplication(
            c_t, tmo.num_intermediate_channel, outgoing=True
        )
        self.triangle_multiplication_incoming = TriangleMultiplication(
            c_t, tmi.num_intermediate_channel, outgoing=False
        )
        self.pair_transition = Transition(c_t, config.pair_transition.num_intermediate_factor)
        self.dropouts = nn.ModuleDict(
            {
                name: SharedDropout(cfg.dropout_rate, cfg.orientation)
                for name, cfg in (
                    ("triangle_attention_starting_node", tas),
                    ("triangle_attention_ending_node", tae),
                    ("triangle_multiplication_outgoing", tmo),
                    ("triangle_multiplication_incoming", tmi),
                    ("pair_transition", config.pair_transition),
                )
            }
        )

    def forward(self, t: torch.Tensor, pair_mask: torch.Tensor) -> torch.Tensor:
        for name in (
            "triangle_attention_starting_node",
            "triangle_attention_ending_node",
            "triangle_multiplication_outgoing",
            "triangle_multiplication_incoming",
        ):
            t = t + self.dropouts[name](getattr(self, name)(t, pair_mask))
        return t + self.dropouts["pair_transition"](self.pair_transition(t, pair_mask))


class TemplatePairStack(nn.Module):
    """Suppl. Alg. 16 (Jumper et al. 2021): ``num_block`` :class:`TemplatePairBlock` s.

    Shapes: ``t [*, N_res, N_res, c_t]``, ``pair_mask [*, N_res, N_res]`` -> same as ``t``.
    """

    def __init__(self, c_t: int, config: TemplatePairStackConfig):
        super().__init__()
        self.blocks = nn.ModuleList(TemplatePairBlock(c_t, config) for _ in range(config.num_block))

    def forward(self, t: torch.Tensor, pair_mask: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            t = block(t, pair_mask)
        return t


# ----------------------------------------------------------------------------------------
# One template (Alg. 2 lines 9 and 11)


def build_template_pair_feat(
    template_aatype: torch.Tensor,
    template_all_atom_positions: torch.Tensor,
    template_all_atom_masks: torch.Tensor,
    template_pseudo_beta: torch.Tensor,
    template_pseudo_beta_mask: torch.Tensor,
    config: TemplateConfig,
) -> torch.Tensor:
    """Pair features of templates (Suppl. Table 1 ``template_distogram``,
    ``template_unit_vector``, ...), zero wherever the backbone of i or j is missing.

    Channels: pseudo-beta distogram, pseudo-beta mask_ij, one-hot aatype of j, of i, unit
    vector from i's CA to j's CA in i's backbone frame (zero unless
    ``use_template_unit_vector``, which no AF2 monomer preset sets), backbone mask_ij (N, CA
    and C of both residues present).

    Shapes: ``template_aatype [*, N_res]``, ``template_all_atom_positions
    [*, N_res, 37, 3]``, ``template_all_atom_masks [*, N_res, 37]``,
    ``template_pseudo_beta [*, N_res, 3]``, ``template_pseudo_beta_mask [*, N_res]`` ->
    ``[*, N_res, N_res, 88]`` float32.
    """
    bins = config.dgram_features
    n_res = template_aatype.shape[-1]
    pb_mask = template_pseudo_beta_mask.float()
    pb_mask_2d = pb_mask[..., :, None] * pb_mask[..., None, :]
    dgram = dgram_from_positions(template_pseudo_beta, bins.num_bins, bins.min_bin, bins.max_bin)
    aatype = nn.functional.one_hot(template_aatype.long(), NUM_TEMPLATE_AATYPES).float()
    aatype_j = aatype[..., None, :, :].expand(*aatype.shape[:-2], n_res, n_res, -1)
    aatype_i = aatype[..., :, None, :].expand(*aatype.shape[:-2], n_res, n_res, -1)

    masks = template_all_atom_masks.float()
    bb_mask = masks[..., _N] * masks[..., _CA] * masks[..., _C]
    bb_mask_2d = bb_mask[..., :, None] * bb_mask[..., None, :]
    if config.use_template_unit_vector:
        # Unit vector from residue i to j in i's backbone frame (origin CA, x towards C,
        # N in the xy plane), zero where either backbone is missing.
        frames = backbone_frames_from_atom37(template_all_atom_positions.float())
        ca = template_all_atom_positions[..., _CA, :].float()
        v_ij = frames[..., None].invert_apply(ca[..., None, :, :])
        inv_dist = torch.rsqrt(1e-6 + v_ij.square().sum(dim=-1)) * bb_mask_2d
        unit_vector = v_ij * inv_dist[..., None]
    else:
        unit_vector = bb_mask_2d.new_zeros((*bb_mask_2d.shape, 3))
    feat = torch.cat(
        [dgram, pb_mask_2d[..., None], aatype_j, aatype_i, unit_vector, bb_mask_2d[..., None]],
        dim=-1,
    )
    return feat * bb_mask_2d[..., None]


class SingleTemplateEmbedding(nn.Module):
    """Suppl. Alg. 2 lines 9 and 11 (Jumper et al. 2021): embed one template's pair
    features (``embedding2d``), run the :class:`TemplatePairStack`, layer-normalise.

    Shapes: ``template_pair_feat [*, N_res, N_res, 88]``, ``pair_mask [*, N_res, N_res]``
    (the query's padding mask, not the template's) -> ``[*, N_res, N_res, c_t]``.
    """

    def __init__(self, config: TemplateConfig):
        super().__init__()
        self.embedding2d = Linear(
            template_pair_feat_dim(config.dgram_features.num_bins), config.c_t, init="relu"
        )
        self.template_pair_stack = TemplatePairStack(config.c_t, config.template_pair_stack)
        self.output_layer_norm = LayerNorm(config.c_t)

    def forward(self, template_pair_feat: torch.Tensor, pair_mask: torch.Tensor) -> torch.Tensor:
        t = self.embedding2d(template_pair_feat.to(self.embedding2d.weight.dtype))
        t = self.template_pair_stack(t, pair_mask)
        return self.output_layer_norm(t)


# ----------------------------------------------------------------------------------------
# All templates, point-wise attention (Alg. 17)


class TemplateEmbedding(nn.Module):
    """Suppl. Alg. 2 lines 9-13 and Alg. 17 "TemplatePointwiseAttention" (Jumper et al.
    2021): embed every template with shared weights, then let each query pair ``z_ij``
    attend over the templates' ``t_ij``; the result is the update to ``z``.

    Templates are embedded one at a time, which bounds memory at one template's pair stack.
    If no template is present (``template_mask`` all zero) the update is exactly zero.

    Shapes: ``z [N_res, N_res, c_z]``, template features with a leading ``N_templ`` axis
    (``template_aatype [N_templ, N_res]``, ``template_mask [N_templ]``, ...),
    ``pair_mask [N_res, N_res]`` -> update ``[N_res, N_res, c_z]``.
    """

    FEATURES = (
        "template_aatype",
        "template_all_atom_positions",
        "template_all_atom_masks",
        "template_pseudo_beta",
        "template_pseudo_beta_mask",
        "template_mask",
    )

    def __init__(self, c_z: int, config: TemplateConfig):
        super().__init__()
        self.config = config
        att = config.attention
        if att.key_dim != att.value_dim:
            raise ValueError("template point-wise attention needs key_dim == value_dim")
        self.single_template_embedding = SingleTemplateEmbedding(config)
        self.attention = Attention(
            c_q=c_z,
            c_kv=config.c_t,
            c_hidden=_head_dim(att.key_dim, c_z, att.num_head, "template point-wise attention"),
            num_heads=att.num_head,
            c_out=c_z,
            gating=att.gating,
        )

    def forward(
        self, z: torch.Tensor, batch: dict[str, torch.Tensor], pair_mask: torch.Tensor
    ) -> torch.Tensor:
        template_mask = batch["template_mask"].to(z.dtype)
        num_templ = template_mask.shape[-1]
        t_list = []
        for i in range(num_templ):
            feat = build_template_pair_feat(
                batch["template_aatype"][i],
                batch["template_all_atom_positions"][i],
                batch["template_all_atom_masks"][i],
                batch["template_pseudo_beta"][i],
                batch["template_pseudo_beta_mask"][i],
                self.config,
            )
            t_list.append(self.single_template_embedding(feat, pair_mask))
        t = torch.stack(t_list, dim=-2)  # [N_res, N_res, N_templ, c_t]
        bias = mask_bias(template_mask)[None, None, None, None, :]  # [1, 1, 1, 1, N_templ]
        out = self.attention(z[..., None, :], t.to(z.dtype), [bias]).squeeze(-2)
        return out * (template_mask.sum() > 0).to(out.dtype)


# ----------------------------------------------------------------------------------------
# Template torsion angles as extra MSA rows (Alg. 2 lines 7-8)


_CHI_ATOMS = torch.as_tensor(rc.chi_angles_atom_indices_with_unk)  # [21, 4, 4] atom37 ids
_BACKBONE_QUADS = (  # (residue offset, atom37 id) of the 4 atoms of omega, phi, psi
    ((-1, rc.atom_order["CA"]), (-1, _C), (0, _N), (0, _CA)),
    ((-1, _C), (0, _N), (0, _CA), (0, _C)),
    ((0, _N), (0, _CA), (0, _C), (0, rc.atom_order["O"])),
)


def _torsion_sin_cos(aatype: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """(sin, cos) of the 7 torsions ``[*, N_res, 7, 2]`` with AF2's exact float32
    arithmetic.

    The atoms of undefined torsions (missing atoms are at the origin) can be collinear, e.g.
    the omega of a template residue whose predecessor is unaligned. AF2 keeps the value its
    Gram-Schmidt gives there, which is rounding noise, and feeds it to the network with
    its released parameters. To give the same numbers this follows AF2's operation order
    component by component: frame from the first three atoms (Suppl. Alg. 21), the fourth
    atom mapped by the inverted frame as ``R^T x - R^T t``, and with correctly rounded
    square roots (``torch.sqrt`` on AVX-512 CPUs can be 1 ulp off; fp64 then fp32 is exact).
    """

    def sqrt(x: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(x.double()).float()

    aatype = torch.clamp(aatype.long(), max=20)
    pos = positions.float()
    prev = torch.cat([torch.zeros_like(pos[..., :1, :, :]), pos[..., :-1, :, :]], dim=-3)
    backbone = torch.stack(
        [
            torch.stack([(prev if off else pos)[..., atom, :] for off, atom in quad], dim=-2)
            for quad in _BACKBONE_QUADS
        ],
        dim=-3,
    )  # [*, N, 3, 4, 3]
    chi_idx = _CHI_ATOMS.to(pos.device)[aatype]  # [*, N, 4, 4]
    chis = torch.gather(
        pos[..., None, :, :].expand(*chi_idx.shape[:-1], 37, 3),
        -2,
        chi_idx[..., None].expand(*chi_idx.shape, 3),
    )  # [*, N, 4, 4, 3]
    quads = torch.cat([backbone, chis], dim=-3)  # [*, N, 7, 4, 3]
    xy_x, xy_y, xy_z = quads[..., 0, :].unbind(-1)
    nx_x, nx_y, nx_z = quads[..., 1, :].unbind(-1)
    o_x, o_y, o_z = quads[..., 2, :].unbind(-1)
    p_x, p_y, p_z = quads[..., 3, :].unbind(-1)

    e0x, e0y, e0z = o_x - nx_x, o_y - nx_y, o_z - nx_z
    norm = sqrt(e0x * e0x + e0y * e0y + e0z * e0z + 1e-8)
    e0x, e0y, e0z = e0x / norm, e0y / norm, e0z / norm
    e1x, e1y, e1z = xy_x - o_x, xy_y - o_y, xy_z - o_z
    c = e1x * e0x + e1y * e0y + e1z * e0z
    e1x, e1y, e1z = e1x - c * e0x, e1y - c * e0y, e1z - c * e0z
    norm = sqrt(e1x * e1x + e1y * e1y + e1z * e1z + 1e-8)
    e1x, e1y, e1z = e1x / norm, e1y / norm, e1z / norm
    e2x, e2y, e2z = e0y * e1z - e0z * e1y, e0z * e1x - e0x * e1z, e0x * e1y - e0y * e1x
    # Only the local y and z of the fourth atom are needed: rows e1 and e2 of R^T.
    y = (e1x * p_x + e1y * p_y + e1z * p_z) + -(e1x * o_x + e1y * o_y + e1z * o_z)
    z = (e2x * p_x + e2y * p_y + e2z * p_z) + -(e2x * o_x + e2y * o_y + e2z * o_z)
    sin_cos = torch.stack([z, y], dim=-1)
    sin, cos = sin_cos[..., :1], sin_cos[..., 1:]
    sin_cos = sin_cos / sqrt(sin * sin + cos * cos + 1e-8)
    # psi is measured to O, opposite the next residue's N: mirror it.
    return sin_cos * sin_cos.new_tensor([1.0, 1.0, -1.0, 1.0, 1.0, 1.0, 1.0])[:, None]


def build_template_angle_feat(
    template_aatype: torch.Tensor,
    template_all_atom_positions: torch.Tensor,
    template_all_atom_masks: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-residue template features for the MSA (Suppl. Table 1 ``template_angle_feat``).

    One-hot aatype (22), sin/cos of the 7 torsions (14), their alternative (pi-shifted)
    values (14) and the torsion masks (7). Undefined torsions keep whatever the missing
    atoms give, as AF2 does with its released parameters (see :func:`_torsion_sin_cos`).
    Also returns the MSA mask for these rows: the psi mask, which depends only on the
    residue's own backbone.

    Shapes: ``template_aatype [*, N_templ, N_res]``, ``template_all_atom_positions
    [*, N_templ, N_res, 37, 3]``, ``template_all_atom_masks [*, N_templ, N_res, 37]`` ->
    ``(feat [*, N_templ, N_res, 57], mask [*, N_templ, N_res])``.
    """
    with torch.autocast(template_aatype.device.type, enabled=False):
        angles = atom37_to_torsion_angles(
            template_aatype, template_all_atom_positions, template_all_atom_masks
        )
        sin_cos = _torsion_sin_cos(template_aatype, template_all_atom_positions)
    mask = angles["torsion_angles_mask"]
    pi_periodic = torch.as_tensor(rc.chi_pi_periodic + [[0.0] * 4], device=sin_cos.device)
    alt_sign = torch.cat(
        [torch.ones(3, device=sin_cos.device).expand(*template_aatype.shape, 3),
         1.0 - 2.0 * pi_periodic[torch.clamp(template_aatype.long(), max=20)]],
        dim=-1,
    )
    alt_sin_cos = sin_cos * alt_sign[..., None]
    aatype = nn.functional.one_hot(template_aatype.long(), NUM_TEMPLATE_AATYPES).float()
    feat = torch.cat([aatype, sin_cos.flatten(-2), alt_sin_cos.flatten(-2), mask], dim=-1)
    return feat, mask[..., 2]


class TemplateTorsionEmbedder(nn.Module):
    """Suppl. Alg. 2 lines 7-8 (Jumper et al. 2021): template torsion features to MSA
    rows, a two-layer ReLU MLP (``template_single_embedding``, ``template_projection``).

    Shapes: ``template_angle_feat [*, N_templ, N_res, 57] -> [*, N_templ, N_res, c_m]``.
    """

    def __init__(self, c_m: int, feat_dim: int = TEMPLATE_ANGLE_FEAT_DIM):
        super().__init__()
        self.template_single_embedding = Linear(feat_dim, c_m, init="relu")
        self.template_projection = Linear(c_m, c_m, init="relu")

    def forward(self, template_angle_feat: torch.Tensor) -> torch.Tensor:
        x = self.template_single_embedding(
            template_angle_feat.to(self.template_single_embedding.weight.dtype)
        )
        return self.template_projection(torch.relu(x))


# ----------------------------------------------------------------------------------------
# AF2 parameter import (see uni_fold.model.weights)

AF2_TEMPLATE_EMBEDDING_PATH = "alphafold/alphafold_iteration/evoformer/template_embedding"
AF2_EVOFORMER_PATH = "alphafold/alphafold_iteration/evoformer"
#: Where haiku's layer stack puts the stacked template pair blocks.
AF2_TEMPLATE_PAIR_STACK_SUFFIX = (
    "single_template_embedding/template_pair_stack/__layer_stack_no_state"
)


def template_pair_block_rows(prefix: str, af2_path: str) -> Table:
    """Rows for one :class:`TemplatePairBlock` (unstacked; see :func:`stack_rows`)."""
    rows: Table = {}
    for name in ("triangle_attention_starting_node", "triangle_attention_ending_node"):
        rows.update(triangle_attention_rows(name, f"{af2_path}/{name}"))
    for name in ("triangle_multiplication_outgoing", "triangle_multiplication_incoming"):
        rows.update(triangle_multiplication_rows(name, f"{af2_path}/{name}"))
    rows.update(transition_rows("pair_transition", f"{af2_path}/pair_transition"))
    return prefixed(rows, prefix)


def template_pair_stack_rows(prefix: str, af2_path: str, num_blocks: int) -> Table:
    """Rows for :class:`TemplatePairStack` <- AF2's ``template_pair_stack`` at ``af2_path``
    (its blocks are stacked by haiku's layer stack under ``__layer_stack_no_state``)."""
    block = template_pair_block_rows("", f"{af2_path}/__layer_stack_no_state")
    return stack_rows(block, num_blocks, f"{prefix}.blocks" if prefix else "blocks")


def single_template_embedding_rows(prefix: str, af2_path: str, num_blocks: int) -> Table:
    """Rows for :class:`SingleTemplateEmbedding` <- AF2's ``single_template_embedding``."""
    rows: Table = {
        **linear_rows("embedding2d", f"{af2_path}/embedding2d"),
        **template_pair_stack_rows(
            "template_pair_stack", f"{af2_path}/template_pair_stack", num_blocks
        ),
        **layer_norm_rows("output_layer_norm", f"{af2_path}/output_layer_norm"),
    }
    return prefixed(rows, prefix)


def template_embedding_rows(
    prefix: str, num_blocks: int, af2_path: str = AF2_TEMPLATE_EMBEDDING_PATH, gating: bool = False
) -> Table:
    """Rows for :class:`TemplateEmbedding` at ``prefix`` <- AF2's ``template_embedding``
    with ``num_blocks`` stacked template pair blocks."""
    rows: Table = {
        **single_template_embedding_rows(
            "single_template_embedding", f"{af2_path}/single_template_embedding", num_blocks
        ),
        **attention_rows("attention", f"{af2_path}/attention", gating=gating),
    }
    return prefixed(rows, prefix)


def template_torsion_embedder_rows(prefix: str, af2_path: str = AF2_EVOFORMER_PATH) -> Table:
    """Rows for :class:`TemplateTorsionEmbedder` <- AF2's ``template_single_embedding`` and
    ``template_projection``."""
    rows: Table = {}
    for name in ("template_single_embedding", "template_projection"):
        rows.update(linear_rows(name, f"{af2_path}/{name}"))
    return prefixed(rows, prefix)
