"""AF2's training losses in PyTorch (Jumper et al. 2021, Suppl. Section 1.9).

Split by family: :mod:`~uni_fold.loss.fape` (backbone and side-chain FAPE, renaming of
symmetric atoms), :mod:`~uni_fold.loss.violations` (bond, angle and clash violations),
:mod:`~uni_fold.loss.chi` (torsion supervision), :mod:`~uni_fold.loss.heads` (distogram,
masked MSA, pLDDT, experimentally resolved, PAE), :mod:`~uni_fold.loss.lddt` (the lDDT
metric) and :mod:`~uni_fold.loss.alphafold_loss` (the weighted total).
"""
from uni_fold.loss.alphafold_loss import (
    AlphaFoldLoss,
    alphafold_loss,
    select_recycling_slice,
    structure_module_loss,
)
from uni_fold.loss.chi import supervised_chi_loss
from uni_fold.loss.fape import (
    backbone_loss,
    compute_renamed_ground_truth,
    find_optimal_renaming,
    frame_aligned_point_error,
    sidechain_loss,
)
from uni_fold.loss.heads import (
    distogram_loss,
    experimentally_resolved_loss,
    masked_msa_loss,
    predicted_aligned_error_loss,
    predicted_lddt_loss,
)
from uni_fold.loss.lddt import lddt, lddt_ca
from uni_fold.loss.violations import (
    between_residue_bond_loss,
    between_residue_clash_loss,
    compute_violation_metrics,
    extreme_ca_ca_distance_violations,
    find_structural_violations,
    structural_violation_loss,
    within_residue_violations,
)

__all__ = [
    "AlphaFoldLoss",
    "alphafold_loss",
    "backbone_loss",
    "between_residue_bond_loss",
    "between_residue_clash_loss",
    "compute_renamed_ground_truth",
    "compute_violation_metrics",
    "distogram_loss",
    "experimentally_resolved_loss",
    "extreme_ca_ca_distance_violations",
    "find_optimal_renaming",
    "find_structural_violations",
    "frame_aligned_point_error",
    "lddt",
    "lddt_ca",
    "masked_msa_loss",
    "predicted_aligned_error_loss",
    "predicted_lddt_loss",
    "select_recycling_slice",
    "sidechain_loss",
    "structural_violation_loss",
    "structure_module_loss",
    "supervised_chi_loss",
    "within_residue_violations",
]
