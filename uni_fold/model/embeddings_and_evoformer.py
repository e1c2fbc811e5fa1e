"""Suppl. Alg. 2 lines 5-18 (Jumper et al. 2021): the embeddings and the Evoformer trunk.

:class:`EmbeddingsAndEvoformer` (AF2's ``EmbeddingsAndEvoformer``, parameter scope
``evoformer``) turns one recycling slice of the processed features and the recycled state
into the single, pair and MSA representations that the structure module and the heads read.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from uni_fold.config import EmbeddingsAndEvoformerConfig, EvoformerBlockConfig
from uni_fold.model.embedders import (
    AF2_EVOFORMER_PATH,
    ExtraMSAEmbedder,
    InputEmbedder,
    RecyclingEmbedder,
    create_extra_msa_feature,
    extra_msa_embedder_rows,
    input_embedder_rows,
    recycling_embedder_rows,
)
from uni_fold.model.evoformer import EvoformerStack
from uni_fold.model.primitives import Linear
from uni_fold.model.template import (
    TemplateEmbedding,
    TemplateTorsionEmbedder,
    build_template_angle_feat,
    template_embedding_rows,
    template_torsion_embedder_rows,
)
from uni_fold.model.weights import Table, evoformer_stack_rows, linear_rows, prefixed

logger = logging.getLogger(__name__)


def _per_head(total: int | None, width: int, num_head: int, where: str) -> int:
    total = width if total is None else total
    if total % num_head:
        raise ValueError(f"{where}: width {total} is not divisible by num_head={num_head}")
    return total // num_head


def _evoformer_block_kwargs(evo: EvoformerBlockConfig, c_m: int, c_z: int) -> dict[str, Any]:
    """:class:`EvoformerBlock` arguments from AF2's per-module config."""
    row, col = evo.msa_row_attention_with_pair_bias, evo.msa_column_attention
    tas, tae = evo.triangle_attention_starting_node, evo.triangle_attention_ending_node
    tmo, tmi = evo.triangle_multiplication_outgoing, evo.triangle_multiplication_incoming
    same = [
        ("msa_column_attention.num_head", col.num_head, row.num_head),
        ("triangle_attention_ending_node.num_head", tae.num_head, tas.num_head),
        ("triangle_multiplication_incoming.num_intermediate_channel",
         tmi.num_intermediate_channel, tmo.num_intermediate_channel),
        ("pair_transition.num_intermediate_factor",
         evo.pair_transition.num_intermediate_factor, evo.msa_transition.num_intermediate_factor),
    ]
    for name, value, reference in same:
        if value != reference:
            raise ValueError(
                f"evoformer.{name} = {value} differs from its partner ({reference}); the "
                "Evoformer block takes one value for both, as every AF2 preset has"
            )
    return {
        "c_hidden_msa_att": _per_head(row.key_dim, c_m, row.num_head, "MSA attention"),
        "c_hidden_opm": evo.outer_product_mean.num_outer_channel,
        "c_hidden_mul": tmo.num_intermediate_channel,
        "c_hidden_pair_att": _per_head(tas.key_dim, c_z, tas.num_head, "triangle attention"),
        "num_heads_msa": row.num_head,
        "num_heads_pair": tas.num_head,
        "transition_n": evo.msa_transition.num_intermediate_factor,
        "msa_dropout": row.dropout_rate,
        "pair_dropout": tmo.dropout_rate,
    }


class EmbeddingsAndEvoformer(nn.Module):
    """Suppl. Alg. 2 lines 5-18 (Jumper et al. 2021): embed the features and the recycled
    state, add the templates, run the extra-MSA stack and the Evoformer; AF2's
    ``EmbeddingsAndEvoformer`` (parameter scope ``evoformer``).

    ``forward(batch, prev)`` takes one recycling slice of the features (``aatype [N_res]``,
    ``target_feat [N_res, 22]``, ``msa_feat [N_seq, N_res, 49]``, ``msa_mask``, ``seq_mask``,
    ``residue_index``, the extra MSA ``[N_extra, N_res]`` and, with templates,
    ``template_* [N_templ, ...]``) and ``prev`` (``prev_pos [N_res, 37, 3]``,
    ``prev_msa_first_row [N_res, c_m]``, ``prev_pair [N_res, N_res, c_z]``). Returns
    ``single [N_res, c_s]``, ``pair [N_res, N_res, c_z]``, ``msa [N_seq, N_res, c_m]`` (the
    template rows cropped away) and ``msa_first_row [N_res, c_m]``, all in fp32.
    """

    def __init__(self, config: EmbeddingsAndEvoformerConfig):
        super().__init__()
        c = config
        self.config = config
        self.input_embedder = InputEmbedder(c.c_m, c.c_z, c.max_relative_feature)
        self.recycling_embedder = RecyclingEmbedder(
            c.c_m, c.c_z, c.prev_pos.min_bin, c.prev_pos.max_bin, c.prev_pos.num_bins,
            recycle_pos=c.recycle_pos, recycle_features=c.recycle_features,
        )
        t = c.template
        self.template_embedding = TemplateEmbedding(c.c_z, t) if t.enabled else None
        self.template_torsion_embedder = (
            TemplateTorsionEmbedder(c.c_m) if t.enabled and t.embed_torsion_angles else None
        )
        self.extra_msa_embedder = ExtraMSAEmbedder(c.c_e)
        self.extra_msa_stack = EvoformerStack(
            c.extra_msa_stack_num_block, c.c_e, c.c_z, is_extra_msa=True,
            **_evoformer_block_kwargs(c.evoformer, c.c_e, c.c_z),
        )
        self.evoformer_iteration = EvoformerStack(
            c.evoformer_num_block, c.c_m, c.c_z,
            **_evoformer_block_kwargs(c.evoformer, c.c_m, c.c_z),
        )
        self.single_activations = Linear(c.c_m, c.c_s)

    def forward(
        self, batch: Mapping[str, torch.Tensor], prev: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        dtype = self.single_activations.weight.dtype
        seq_mask = batch["seq_mask"].to(dtype)
        pair_mask = seq_mask[..., :, None] * seq_mask[..., None, :]

        # Alg. 2 lines 5-6: input embedding and recycling (Alg. 3, 32).
        m, z = self.input_embedder(batch["target_feat"], batch["msa_feat"], batch["residue_index"])
        m_prev, z_prev = self.recycling_embedder(
            batch["aatype"], prev["prev_pos"], prev["prev_msa_first_row"], prev["prev_pair"]
        )
        if m_prev is not None:
            m = torch.cat([m[..., :1, :, :] + m_prev[..., None, :, :], m[..., 1:, :, :]], dim=-3)
        if z_prev is not None:
            z = z + z_prev

        # Lines 9-13: templates into the pair representation.
        if self.template_embedding is not None:
            z = z + self.template_embedding(z, batch, pair_mask)

        # Lines 14-16: extra MSA stack (Alg. 18) updates the pair representation.
        extra = self.extra_msa_embedder(
            create_extra_msa_feature(
                batch["extra_msa"], batch["extra_has_deletion"], batch["extra_deletion_value"]
            )
        )
        _, z = self.extra_msa_stack(extra, z, batch["extra_msa_mask"].to(dtype), pair_mask)
        z = z.to(dtype)

        # Lines 7-8: template torsion angles as extra MSA rows, masked by the psi mask.
        num_seq = m.shape[-3]
        msa_mask = batch["msa_mask"].to(dtype)
        if self.template_torsion_embedder is not None:
            feat, rows_mask = build_template_angle_feat(
                batch["template_aatype"],
                batch["template_all_atom_positions"],
                batch["template_all_atom_masks"],
            )
            m = torch.cat([m, self.template_torsion_embedder(feat)], dim=-3)
            msa_mask = torch.cat([msa_mask, rows_mask.to(dtype)], dim=-2)

        # Lines 17-18: the Evoformer, then the single representation.
        m, z = self.evoformer_iteration(m, z, msa_mask, pair_mask)
        m, z = m.to(dtype), z.to(dtype)
        return {
            "single": self.single_activations(m[..., 0, :, :]),
            "pair": z,
            "msa": m[..., :num_seq, :, :],
            "msa_first_row": m[..., 0, :, :],
        }


# ----------------------------------------------------------------------------------------
# AF2 parameter import (see uni_fold.model.weights)


def embeddings_and_evoformer_rows(
    prefix: str, e: EmbeddingsAndEvoformerConfig, af2_path: str = AF2_EVOFORMER_PATH
) -> Table:
    """Rows for :class:`EmbeddingsAndEvoformer` at ``prefix`` <- AF2's ``evoformer`` scope."""
    rows: Table = {
        **input_embedder_rows("input_embedder", af2_path, relpos=bool(e.max_relative_feature)),
        **recycling_embedder_rows(
            "recycling_embedder", af2_path, e.recycle_pos, e.recycle_features
        ),
        **extra_msa_embedder_rows("extra_msa_embedder", af2_path),
        **evoformer_stack_rows(
            "extra_msa_stack", f"{af2_path}/extra_msa_stack", e.extra_msa_stack_num_block,
            is_extra_msa=True,
        ),
        **evoformer_stack_rows(
            "evoformer_iteration", f"{af2_path}/evoformer_iteration", e.evoformer_num_block
        ),
        **linear_rows("single_activations", f"{af2_path}/single_activations"),
    }
    if e.template.enabled:
        rows.update(template_embedding_rows(
            "template_embedding", e.template.template_pair_stack.num_block,
            af2_path=f"{af2_path}/template_embedding", gating=e.template.attention.gating,
        ))
        if e.template.embed_torsion_angles:
            rows.update(template_torsion_embedder_rows("template_torsion_embedder", af2_path))
    return prefixed(rows, prefix)
