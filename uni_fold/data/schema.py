"""The model batch's one feature table: name -> dtype, symbolic shape, group.

Every processed feature that :func:`uni_fold.data.process.process_features` can return is
listed in :data:`FEATURES`, with AF2's names. Shapes are given for ONE recycling slice;
the batch adds a leading ``[num_recycle + 1]`` axis (times ``num_ensemble``) to every
feature. Symbols:

* ``N_res``: residues (after cropping; padded to the crop size in training),
* ``N_clust``: MSA cluster centres fed to the Evoformer (``max_msa_clusters``, less
  ``max_templates`` when ``reduce_msa_clusters_by_max_templates``),
* ``N_extra``: extra MSA rows (``max_extra_msa``),
* ``N_templ``: templates (``max_templates``).

Integer features are ``torch.int64`` (torch's index type; AF2's own pipeline gives
int32 with the same values). Groups say when a feature is present: ``core`` always,
``template`` when ``use_templates``, ``ground_truth`` when the raw features hold
``all_atom_positions`` (modes ``train`` and ``eval``), ``train`` in training only.

The helpers here use the table to pad, crop and check feature dicts, so that a dimension's
meaning is declared once.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch

__all__ = [
    "NUM_RES",
    "NUM_MSA_SEQ",
    "NUM_EXTRA_SEQ",
    "NUM_TEMPLATES",
    "FeatureSpec",
    "FEATURES",
    "feature_names",
    "check_batch",
    "crop_residues",
    "pad_to_size",
]

NUM_RES = "N_res"
NUM_MSA_SEQ = "N_clust"
NUM_EXTRA_SEQ = "N_extra"
NUM_TEMPLATES = "N_templ"
SYMBOLS = (NUM_RES, NUM_MSA_SEQ, NUM_EXTRA_SEQ, NUM_TEMPLATES)

Dim = str | int


@dataclass(frozen=True)
class FeatureSpec:
    """dtype, symbolic shape (one recycling slice) and group of one processed feature."""

    dtype: torch.dtype
    shape: tuple[Dim, ...]
    group: str
    doc: str


_F32, _I64 = torch.float32, torch.int64
R, C, E, T = NUM_RES, NUM_MSA_SEQ, NUM_EXTRA_SEQ, NUM_TEMPLATES


def _spec(dtype: torch.dtype, shape: tuple[Dim, ...], group: str, doc: str) -> FeatureSpec:
    return FeatureSpec(dtype, shape, group, doc)


#: The table. Order: sequence, MSA, extra MSA, atom layouts, templates, ground truth, train.
FEATURES: dict[str, FeatureSpec] = {
    # --- sequence
    "aatype": _spec(_I64, (R,), "core", "residue types 0..20 (20 = unknown), our order"),
    "target_feat": _spec(_F32, (R, 22), "core", "domain break + one-hot aatype (21)"),
    "residue_index": _spec(_I64, (R,), "core", "residue numbers from the raw features"),
    "seq_length": _spec(_I64, (), "core", "residues before padding (after cropping)"),
    "seq_mask": _spec(_F32, (R,), "core", "1 for real residues, 0 for padding"),
    "is_distillation": _spec(_F32, (), "core", "1 for self-distillation examples"),
    # --- MSA cluster centres
    "msa_feat": _spec(
        _F32, (C, R, 49), "core",
        "one-hot msa (23), has_deletion, deletion_value, cluster_profile (23), "
        "cluster deletion_mean_value",
    ),
    "msa_mask": _spec(_F32, (C, R), "core", "1 for real MSA entries"),
    "msa_row_mask": _spec(_F32, (C,), "core", "1 for real MSA rows"),
    "bert_mask": _spec(_F32, (C, R), "core", "1 where the masked-MSA objective applies"),
    "true_msa": _spec(_I64, (C, R), "core", "the MSA before BERT corruption (0..21)"),
    # --- extra MSA
    "extra_msa": _spec(_I64, (E, R), "core", "extra MSA rows, our alphabet (0..21)"),
    "extra_msa_mask": _spec(_F32, (E, R), "core", "1 for real extra MSA entries"),
    "extra_msa_row_mask": _spec(_F32, (E,), "core", "1 for real extra MSA rows"),
    "extra_has_deletion": _spec(_F32, (E, R), "core", "deletion count clipped to [0, 1]"),
    "extra_deletion_value": _spec(_F32, (E, R), "core", "atan(deletions / 3) * 2 / pi"),
    # --- atom layouts of aatype
    "atom14_atom_exists": _spec(_F32, (R, 14), "core", "atom14 slots the type has"),
    "residx_atom14_to_atom37": _spec(_I64, (R, 14), "core", "atom37 index of each atom14"),
    "residx_atom37_to_atom14": _spec(_I64, (R, 37), "core", "atom14 index of each atom37"),
    "atom37_atom_exists": _spec(_F32, (R, 37), "core", "atom37 slots the type has"),
    # --- templates
    "template_aatype": _spec(_I64, (T, R), "template", "template residue types, our order"),
    "template_all_atom_positions": _spec(_F32, (T, R, 37, 3), "template", "coordinates (Å)"),
    "template_all_atom_masks": _spec(_F32, (T, R, 37), "template", "1 for present atoms"),
    "template_mask": _spec(_F32, (T,), "template", "1 for real templates"),
    "template_sum_probs": _spec(_F32, (T, 1), "template", "the hit's summed probability"),
    "template_pseudo_beta": _spec(_F32, (T, R, 3), "template", "CB (CA for glycine)"),
    "template_pseudo_beta_mask": _spec(_F32, (T, R), "template", "pseudo-beta present"),
    "template_torsion_angles_sin_cos": _spec(
        _F32, (T, R, 7, 2), "template", "omega, phi, psi, chi1-4 as (sin, cos)"
    ),
    "template_alt_torsion_angles_sin_cos": _spec(
        _F32, (T, R, 7, 2), "template", "the same with pi-periodic chis turned by pi"
    ),
    "template_torsion_angles_mask": _spec(_F32, (T, R, 7), "template", "torsion defined"),
    # --- ground truth (from all_atom_positions)
    "all_atom_positions": _spec(_F32, (R, 37, 3), "ground_truth", "coordinates (Å)"),
    "all_atom_mask": _spec(_F32, (R, 37), "ground_truth", "1 for resolved atoms"),
    "resolution": _spec(_F32, (), "ground_truth", "resolution (Å), 0 when unknown"),
    "pseudo_beta": _spec(_F32, (R, 3), "ground_truth", "CB (CA for glycine)"),
    "pseudo_beta_mask": _spec(_F32, (R,), "ground_truth", "pseudo-beta resolved"),
    "atom14_gt_positions": _spec(_F32, (R, 14, 3), "ground_truth", "atom14 coordinates"),
    "atom14_gt_exists": _spec(_F32, (R, 14), "ground_truth", "atom14 atom resolved"),
    "atom14_alt_gt_positions": _spec(
        _F32, (R, 14, 3), "ground_truth", "coordinates with symmetric atom names swapped"
    ),
    "atom14_alt_gt_exists": _spec(_F32, (R, 14), "ground_truth", "mask of the swapped names"),
    "atom14_atom_is_ambiguous": _spec(_F32, (R, 14), "ground_truth", "atom has a swap partner"),
    "rigidgroups_gt_frames": _spec(
        _F32, (R, 8, 12), "ground_truth", "8 rigid-group frames, flat12 (rotation, trans)"
    ),
    "rigidgroups_gt_exists": _spec(_F32, (R, 8), "ground_truth", "frame's atoms resolved"),
    "rigidgroups_group_exists": _spec(_F32, (R, 8), "ground_truth", "the type has the group"),
    "rigidgroups_group_is_ambiguous": _spec(_F32, (R, 8), "ground_truth", "pi-symmetric group"),
    "rigidgroups_alt_gt_frames": _spec(
        _F32, (R, 8, 12), "ground_truth", "frames of the name-swapped side chain, flat12"
    ),
    "backbone_affine_tensor": _spec(
        _F32, (R, 7), "ground_truth", "backbone frame as quaternion (w, x, y, z) + translation"
    ),
    "backbone_affine_mask": _spec(_F32, (R,), "ground_truth", "N, CA, C resolved"),
    "chi_angles": _spec(_F32, (R, 4), "ground_truth", "chi1-4 in radians"),
    "chi_mask": _spec(_F32, (R, 4), "ground_truth", "chi defined by resolved atoms"),
    # --- training only
    "num_iter_recycling": _spec(_I64, (), "train", "recycles to run, drawn per example"),
    "use_clamped_fape": _spec(_F32, (), "train", "1 to clamp the backbone FAPE"),
}

GROUPS = ("core", "template", "ground_truth", "train")


def feature_names(groups: Iterable[str]) -> list[str]:
    """Names of the features in ``groups`` (any of ``core``, ``template``,
    ``ground_truth``, ``train``), in table order."""
    groups = set(groups)
    unknown = groups - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown feature groups {sorted(unknown)}; choose from {GROUPS}")
    return [name for name, spec in FEATURES.items() if spec.group in groups]


def _spec_of(name: str) -> FeatureSpec:
    if name not in FEATURES:
        raise KeyError(f"feature {name!r} is not in uni_fold.data.schema.FEATURES")
    return FEATURES[name]


def pad_to_size(
    feats: Mapping[str, torch.Tensor], sizes: Mapping[str, int]
) -> dict[str, torch.Tensor]:
    """Zero-pad every symbolic dimension of one slice's features to ``sizes[symbol]``.

    Args:
        feats: features without the recycling axis, named as in :data:`FEATURES`.
        sizes: target size per symbol; symbols missing from ``sizes`` are left as they are.
    Returns:
        A new dict; features not in the table pass through unchanged.
    Raises:
        ValueError: when a feature's rank differs from the table or a dimension is already
            larger than its target.
    """
    out: dict[str, torch.Tensor] = {}
    for name, value in feats.items():
        if name not in FEATURES:
            out[name] = value
            continue
        shape = FEATURES[name].shape
        if value.dim() != len(shape):
            raise ValueError(
                f"feature {name!r} has shape {tuple(value.shape)} but the schema says {shape}"
            )
        pad: list[int] = []
        for dim, sym in reversed(list(zip(value.shape, shape, strict=True))):
            target = sizes.get(sym) if isinstance(sym, str) else None
            if target is None:
                pad += [0, 0]
                continue
            if dim > target:
                raise ValueError(
                    f"feature {name!r} has {dim} entries along {sym}, more than the "
                    f"fixed size {target}; crop it first"
                )
            pad += [0, target - dim]
        out[name] = torch.nn.functional.pad(value, pad) if any(pad) else value
    return out


def crop_residues(
    feats: Mapping[str, torch.Tensor], start: int, size: int
) -> dict[str, torch.Tensor]:
    """Keep residues ``start:start + size`` along every ``N_res`` dimension of one slice.

    Features not in the table pass through unchanged; ``seq_length`` is set to the number
    of residues kept.
    """
    out: dict[str, torch.Tensor] = {}
    for name, value in feats.items():
        shape = FEATURES[name].shape if name in FEATURES else ()
        for axis, sym in enumerate(shape):
            if sym == NUM_RES:
                value = value.narrow(axis, start, min(size, value.shape[axis] - start))
        out[name] = value
    if "seq_length" in out:
        kept = out["aatype"].shape[0] if "aatype" in out else size
        out["seq_length"] = torch.tensor(kept, dtype=torch.int64)
    return out


def check_batch(
    batch: Mapping[str, torch.Tensor], num_slices: int | None = None
) -> dict[str, int]:
    """Check a processed batch (leading recycling axis) against :data:`FEATURES`.

    Every feature in the table must have the table's dtype and rank (plus the recycling
    axis), and each symbol must take one size across all features.

    Returns:
        The size of each symbol found, plus ``"num_slices"``.
    Raises:
        ValueError: naming the first feature that does not fit, and what was expected.
    """
    sizes: dict[str, int] = {}
    where: dict[str, str] = {}
    for name, value in batch.items():
        if name not in FEATURES:
            continue
        spec = FEATURES[name]
        if value.dtype != spec.dtype:
            raise ValueError(f"feature {name!r} has dtype {value.dtype}, expected {spec.dtype}")
        if value.dim() != len(spec.shape) + 1:
            raise ValueError(
                f"feature {name!r} has shape {tuple(value.shape)}; expected "
                f"[num_slices, {', '.join(map(str, spec.shape))}]"
            )
        if num_slices is None:
            num_slices = value.shape[0]
        if value.shape[0] != num_slices:
            raise ValueError(
                f"feature {name!r} has {value.shape[0]} recycling slices, expected {num_slices}"
            )
        for dim, sym in zip(value.shape[1:], spec.shape, strict=True):
            if isinstance(sym, int):
                if dim != sym:
                    raise ValueError(
                        f"feature {name!r} has shape {tuple(value.shape)}, expected {sym} "
                        f"in place of {dim} (schema {spec.shape})"
                    )
            elif sym in sizes and sizes[sym] != dim:
                raise ValueError(
                    f"feature {name!r} has {dim} along {sym} but {where[sym]!r} has "
                    f"{sizes[sym]}"
                )
            else:
                sizes.setdefault(sym, dim)
                where.setdefault(sym, name)
    sizes["num_slices"] = num_slices or 0
    return sizes
