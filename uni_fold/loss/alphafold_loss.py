"""The AF2 training loss: every head's loss weighted as the config says (Suppl. Eq. 7 as
AF2's implementation weights it), each term returned by name.

``total = sum_head weight_head * loss_head`` over the heads with a non-zero weight, where
the structure module's loss is (Suppl. Alg. 20 lines 17-19, Alg. 27, Section 1.9.11)::

    (1 - sidechain.weight_frac) * mean_layers(backbone FAPE)
      + sidechain.weight_frac * sidechain FAPE
      + chi_weight * chi_loss + angle_norm_weight * angle_norm_loss
      + structural_violation_loss_weight * violation_loss     (if that weight is not 0)

Returned names (all unweighted, one value per example):

==========================  ==============================================================
``loss``                    the weighted total
``fape``                    backbone FAPE of the last structure-module layer (AF2's ``fape``)
``backbone_loss``           backbone FAPE averaged over layers (the term in the total)
``sidechain_fape``          all-atom FAPE after renaming
``chi_loss``                supervised chi loss; ``angle_norm_loss`` the angle-norm loss
``violation_loss``          structural violations (only when their weight is not 0)
``structure_module``        the structure module's combined loss above
``distogram``, ``masked_msa``, ``predicted_lddt``, ``experimentally_resolved``,
``predicted_aligned_error``  the head losses (only heads with a non-zero weight)
``lddt_ca``                 lDDT-C-alpha of the final structure (metric, no gradient)
==========================  ==============================================================
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from uni_fold.config import Config, HeadsConfig, ModelConfig, StructureModuleConfig
from uni_fold.geometry.rigid import Rigid
from uni_fold.loss import heads as head_losses
from uni_fold.loss.chi import supervised_chi_loss
from uni_fold.loss.common import require
from uni_fold.loss.fape import backbone_loss, compute_renamed_ground_truth, sidechain_loss
from uni_fold.loss.lddt import lddt_ca
from uni_fold.loss.violations import (
    compute_violation_metrics,
    find_structural_violations,
    structural_violation_loss,
)

logger = logging.getLogger(__name__)

Tensor = torch.Tensor

__all__ = ["AlphaFoldLoss", "alphafold_loss", "structure_module_loss", "select_recycling_slice"]

_SM_BATCH_KEYS = (
    "aatype", "residue_index", "seq_mask", "atom14_atom_exists",
    "backbone_affine_tensor", "backbone_affine_mask",
    "atom14_gt_positions", "atom14_alt_gt_positions", "atom14_gt_exists",
    "atom14_alt_gt_exists", "atom14_atom_is_ambiguous",
    "rigidgroups_gt_frames", "rigidgroups_alt_gt_frames", "rigidgroups_gt_exists",
    "chi_angles", "chi_mask",
)
_SM_OUTPUT_KEYS = ("affine", "angles_sin_cos", "unnormalized_angles_sin_cos", "atom_pos",
                   "frames")


def structure_module_loss(
    outputs: Mapping[str, Any],
    batch: Mapping[str, Tensor],
    cfg: StructureModuleConfig,
    violation_metrics: bool = False,
) -> dict[str, Tensor]:
    """The structure module's loss (AF2's ``StructureModule.loss``) and its parts.

    Args:
        outputs: the model's outputs: ``sm`` with per-layer ``affine [L, *, N, 7]``,
            ``angles_sin_cos`` / ``unnormalized_angles_sin_cos [L, *, N, 7, 2]``,
            ``atom_pos [L, *, N, 14, 3]``, ``frames [L, *, N, 8, 4, 4]``; and
            ``final_atom14_positions [*, N, 14, 3]`` (else the last ``atom_pos``).
        batch: one recycling slice of the features with the ground truth (see
            ``_SM_BATCH_KEYS``); ``use_clamped_fape`` is used when present.
        cfg: the structure module's config (FAPE, side-chain and violation settings).
        violation_metrics: also return AF2's violation metrics (fractions of residues).
    Returns:
        ``loss``, ``fape``, ``backbone_loss``, ``sidechain_fape``, ``chi_loss``,
        ``angle_norm_loss`` and, when ``cfg.structural_violation_loss_weight`` is not 0,
        ``violation_loss`` (all ``[*]``); plus ``violations_*`` metrics if asked.
    """
    require(batch, _SM_BATCH_KEYS, "the structure-module loss")
    if "sm" not in outputs:
        raise ValueError("the structure-module loss needs outputs['sm'] (per-layer structure "
                         "module outputs, as uni_fold.model.AlphaFold returns them)")
    sm = outputs["sm"]
    missing = [k for k in _SM_OUTPUT_KEYS if k not in sm]
    if missing:
        raise ValueError(f"outputs['sm'] lacks {missing}; pass the structure module's outputs")

    per_layer = backbone_loss(
        sm["affine"], batch["backbone_affine_tensor"], batch["backbone_affine_mask"],
        clamp_distance=cfg.fape.clamp_distance,
        loss_unit_distance=cfg.fape.loss_unit_distance,
        use_clamped_fape=batch.get("use_clamped_fape"),
    )
    ret: dict[str, Tensor] = {"fape": per_layer[-1], "backbone_loss": per_layer.mean(dim=0)}

    final_atom14 = outputs.get("final_atom14_positions", sm["atom_pos"][-1])
    renamed = compute_renamed_ground_truth(
        batch["atom14_gt_positions"], batch["atom14_alt_gt_positions"],
        batch["atom14_atom_is_ambiguous"], batch["atom14_gt_exists"],
        batch["atom14_alt_gt_exists"], final_atom14,
    )
    ret["sidechain_fape"] = sidechain_loss(
        Rigid.from_tensor_4x4(sm["frames"][-1]), sm["atom_pos"][-1],
        batch["rigidgroups_gt_frames"], batch["rigidgroups_alt_gt_frames"],
        batch["rigidgroups_gt_exists"], renamed["renamed_atom14_gt_positions"],
        renamed["renamed_atom14_gt_exists"], renamed["alt_naming_is_better"],
        clamp_distance=cfg.sidechain.atom_clamp_distance,
        length_scale=cfg.sidechain.length_scale,
    )
    ret.update(supervised_chi_loss(
        sm["angles_sin_cos"], sm["unnormalized_angles_sin_cos"], batch["aatype"],
        batch["seq_mask"], batch["chi_mask"], batch["chi_angles"],
    ))
    frac = cfg.sidechain.weight_frac
    loss = ((1.0 - frac) * ret["backbone_loss"] + frac * ret["sidechain_fape"]
            + cfg.chi_weight * ret["chi_loss"] + cfg.angle_norm_weight * ret["angle_norm_loss"])

    violations = None
    if cfg.structural_violation_loss_weight or violation_metrics:
        violations = find_structural_violations(
            batch["aatype"], batch["residue_index"], batch["atom14_atom_exists"], final_atom14,
            violation_tolerance_factor=cfg.violation_tolerance_factor,
            clash_overlap_tolerance=cfg.clash_overlap_tolerance,
        )
    if cfg.structural_violation_loss_weight:
        ret["violation_loss"] = structural_violation_loss(violations,
                                                          batch["atom14_atom_exists"])
        loss = loss + cfg.structural_violation_loss_weight * ret["violation_loss"]
    if violation_metrics:
        with torch.no_grad():
            ret.update(compute_violation_metrics(
                {k: v.detach() for k, v in violations.items()}, final_atom14.detach(),
                batch["atom14_atom_exists"], batch["residue_index"], batch["seq_mask"],
            ))
    ret["loss"] = loss
    return ret


def _heads_config(config: Config | ModelConfig | HeadsConfig) -> HeadsConfig:
    if isinstance(config, Config):
        return config.model.heads
    if isinstance(config, ModelConfig):
        return config.heads
    if isinstance(config, HeadsConfig):
        return config
    raise TypeError(f"expected a Config, ModelConfig or HeadsConfig, got {type(config).__name__}; "
                    "build one with uni_fold.config.model_config(name)")


def _output(outputs: Mapping[str, Any], key: str, head: str) -> Tensor:
    if key not in outputs:
        raise ValueError(f"the {head} head has a non-zero weight but outputs has no {key!r}; "
                         "use the same config for the model and the loss")
    return outputs[key]


def select_recycling_slice(batch: Mapping[str, Any], index: int) -> dict[str, Any]:
    """One recycling slice ``v[index]`` of a processed batch (every feature carries a
    leading recycling axis, see :mod:`uni_fold.data.schema`); non-tensors are kept."""
    return {k: (v[index] if isinstance(v, torch.Tensor) and v.dim() > 0 else v)
            for k, v in batch.items()}


def _loss_slice(outputs: Mapping[str, Any], batch: Mapping[str, Any],
                resample_msa_in_recycling: bool) -> Mapping[str, Any]:
    """The batch as the model's last iteration saw it: slice the recycling axis if the
    batch still has one (index ``num_recycles``, or 0 without MSA resampling)."""
    if "aatype" not in batch or "final_atom_positions" not in outputs:
        return batch
    extra = batch["aatype"].dim() - (outputs["final_atom_positions"].dim() - 2)
    if extra == 0:
        return batch
    if extra != 1:
        raise ValueError(f"batch['aatype'] has shape {tuple(batch['aatype'].shape)} but the "
                         f"outputs have {tuple(outputs['final_atom_positions'].shape[:-2])} "
                         "residues; pass one recycling slice or the whole processed batch")
    if "num_recycles" not in outputs:
        raise ValueError("the batch has a recycling axis but outputs has no 'num_recycles'; "
                         "pass select_recycling_slice(batch, index) instead")
    index = int(outputs["num_recycles"]) if resample_msa_in_recycling else 0
    return select_recycling_slice(batch, index)


def alphafold_loss(
    outputs: Mapping[str, Any],
    batch: Mapping[str, Any],
    config: Config | ModelConfig | HeadsConfig,
    resample_msa_in_recycling: bool = True,
    violation_metrics: bool = False,
) -> dict[str, Tensor]:
    """The weighted AF2 training loss and every term by name (see the module docstring).

    Args:
        outputs: :class:`uni_fold.model.AlphaFold` outputs (``sm``, ``final_*``,
            ``*_logits``, ``distogram_bin_edges`` ...).
        batch: the processed features with ground truth: one recycling slice, or the whole
            batch with its leading recycling axis (the slice of the last iteration is taken).
        config: the model's config; heads with weight 0 are skipped.
        resample_msa_in_recycling: whether the model used a fresh slice per recycle (its
            ``model.resample_msa_in_recycling``; taken from ``config`` when it is a Config
            or ModelConfig).
        violation_metrics: add AF2's ``violations_*`` fractions.
    Returns:
        dict of ``[*]`` tensors; ``loss`` is the one to differentiate.
    """
    heads = _heads_config(config)
    if isinstance(config, Config):
        resample_msa_in_recycling = config.model.resample_msa_in_recycling
    elif isinstance(config, ModelConfig):
        resample_msa_in_recycling = config.resample_msa_in_recycling
    batch = _loss_slice(outputs, batch, resample_msa_in_recycling)

    sm_cfg = heads.structure_module
    ret: dict[str, Tensor] = {}
    sm = structure_module_loss(outputs, batch, sm_cfg, violation_metrics=violation_metrics)
    ret.update({k: v for k, v in sm.items() if k != "loss"})
    ret["structure_module"] = sm["loss"]
    total = sm_cfg.weight * sm["loss"]

    if heads.distogram.weight:
        require(batch, ("pseudo_beta", "pseudo_beta_mask"), "the distogram loss")
        c = heads.distogram
        ret["distogram"] = head_losses.distogram_loss(
            _output(outputs, "distogram_logits", "distogram"), batch["pseudo_beta"],
            batch["pseudo_beta_mask"], c.first_break, c.last_break, c.num_bins,
        )["loss"]
        total = total + c.weight * ret["distogram"]
    if heads.masked_msa.weight:
        require(batch, ("true_msa", "bert_mask"), "the masked-MSA loss")
        ret["masked_msa"] = head_losses.masked_msa_loss(
            _output(outputs, "masked_msa_logits", "masked_msa"), batch["true_msa"],
            batch["bert_mask"],
        )
        total = total + heads.masked_msa.weight * ret["masked_msa"]
    if heads.experimentally_resolved.weight:
        require(batch, ("atom37_atom_exists", "all_atom_mask", "resolution"),
                "the experimentally-resolved loss")
        c = heads.experimentally_resolved
        ret["experimentally_resolved"] = head_losses.experimentally_resolved_loss(
            _output(outputs, "experimentally_resolved_logits", "experimentally_resolved"),
            batch["atom37_atom_exists"], batch["all_atom_mask"], batch["resolution"],
            c.filter_by_resolution, c.min_resolution, c.max_resolution,
        )
        total = total + c.weight * ret["experimentally_resolved"]
    if heads.predicted_lddt.weight:
        require(batch, ("all_atom_positions", "all_atom_mask", "resolution"), "the pLDDT loss")
        c = heads.predicted_lddt
        ret["predicted_lddt"] = head_losses.predicted_lddt_loss(
            _output(outputs, "predicted_lddt_logits", "predicted_lddt"),
            _output(outputs, "final_atom_positions", "predicted_lddt"),
            batch["all_atom_positions"], batch["all_atom_mask"], batch["resolution"],
            c.filter_by_resolution, c.min_resolution, c.max_resolution,
        )
        total = total + c.weight * ret["predicted_lddt"]
    if heads.predicted_aligned_error.weight:
        require(batch, ("resolution",), "the predicted-aligned-error loss")
        c = heads.predicted_aligned_error
        ret["predicted_aligned_error"] = head_losses.predicted_aligned_error_loss(
            _output(outputs, "predicted_aligned_error_logits", "predicted_aligned_error"),
            _output(outputs, "final_affines", "predicted_aligned_error"),
            batch["backbone_affine_tensor"], batch["backbone_affine_mask"],
            c.max_error_bin, batch["resolution"],
            c.filter_by_resolution, c.min_resolution, c.max_resolution,
        )
        total = total + c.weight * ret["predicted_aligned_error"]

    if "final_atom_positions" in outputs and "all_atom_positions" in batch:
        ret["lddt_ca"] = lddt_ca(outputs["final_atom_positions"].detach(),
                                 batch["all_atom_positions"], batch["all_atom_mask"])
    ret["loss"] = total
    return ret


class AlphaFoldLoss(nn.Module):
    """:func:`alphafold_loss` bound to a config, as a module: ``AlphaFoldLoss(config)(outputs,
    batch) -> dict`` (no parameters)."""

    def __init__(self, config: Config | ModelConfig, violation_metrics: bool = False):
        super().__init__()
        if not isinstance(config, (Config, ModelConfig)):
            raise TypeError(f"AlphaFoldLoss needs a Config or ModelConfig, got "
                            f"{type(config).__name__}")
        self.config = config
        self.violation_metrics = violation_metrics

    def forward(self, outputs: Mapping[str, Any], batch: Mapping[str, Any]) -> dict[str, Tensor]:
        return alphafold_loss(outputs, batch, self.config,
                              violation_metrics=self.violation_metrics)
