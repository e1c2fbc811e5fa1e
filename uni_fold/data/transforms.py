"""Raw features -> per-example tensors: the steps AF2 runs once per example.

These are the non-ensembled transforms of AF2's input pipeline (Jumper et al. 2021,
Suppl. Section 1.2): types and shapes made canonical, the MSA moved from the HHblits
alphabet to ours, sequence/MSA masks, the MSA profile, template residue types, masks and
pseudo-beta positions, and the atom14/atom37 lookups of the sequence. The per-recycle MSA
transforms are in :mod:`uni_fold.data.msa`, ground-truth features in
:mod:`uni_fold.data.ground_truth`.

Raw features follow ``../shared/DESIGN.md``: numpy arrays (or tensors) with AF2's names,
e.g. ``aatype [N_res, 21]`` one-hot in our order, ``msa [N_seq, N_res]`` in the HHblits
alphabet, ``template_aatype [N_templ, N_res, 22]`` one-hot in the HHblits alphabet.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from data_pipeline import residue_constants as rc
from uni_fold.geometry import all_atom

logger = logging.getLogger(__name__)

__all__ = [
    "to_tensor",
    "squeeze_features",
    "correct_msa_restypes",
    "make_seq_mask",
    "make_msa_mask",
    "make_hhblits_profile",
    "fix_templates_aatype",
    "make_template_mask",
    "pseudo_beta_fn",
    "make_template_features",
    "make_atom14_masks",
    "make_target_feat",
]

#: HHblits MSA id -> our id, as a lookup tensor ``[22]``.
_HHBLITS_TO_OURS = torch.tensor(rc.MAP_HHBLITS_AATYPE_TO_OUR_AATYPE, dtype=torch.int64)
_GLY = rc.restype_order["G"]
_CA, _CB = rc.atom_order["CA"], rc.atom_order["CB"]
#: Raw keys whose value is text (object arrays) and never becomes a tensor.
_TEXT_KEYS = {
    "domain_name", "sequence", "msa_species_identifiers", "template_domain_names",
    "template_sequence", "release_date", "template_release_date",
}
_TEMPLATE_KEYS = (
    "template_aatype", "template_all_atom_positions", "template_all_atom_masks",
    "template_sum_probs",
)


def to_tensor(name: str, value: Any) -> torch.Tensor:
    """A raw feature (numpy array, tensor, number or list) as a CPU tensor."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    array = np.asarray(value)
    if array.dtype == object or array.dtype.kind in "USa":
        raise ValueError(f"raw feature {name!r} holds text ({array.dtype}), not numbers")
    return torch.from_numpy(np.ascontiguousarray(array))


def _is_text(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return False
    return np.asarray(value).dtype.kind in "OUSa"


def _as_int(name: str, x: torch.Tensor) -> torch.Tensor:
    if x.is_floating_point():
        rounded = x.round()
        if not torch.equal(rounded, x):
            raise ValueError(f"raw feature {name!r} must hold integers, got fractional values")
        x = rounded
    return x.to(torch.int64)


def _drop_last_singleton(name: str, x: torch.Tensor, rank: int) -> torch.Tensor:
    """``x`` with a trailing size-1 axis removed when it has ``rank + 1`` dims."""
    if x.dim() == rank + 1 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.dim() != rank:
        raise ValueError(f"raw feature {name!r} has shape {tuple(x.shape)}; expected rank {rank}")
    return x


def _seq_aatype(x: torch.Tensor) -> torch.Tensor:
    """``aatype`` as ints ``[N_res]`` from one-hot ``[N_res, 21]`` or ints."""
    if x.dim() == 2:
        if x.shape[-1] != rc.restype_num + 1:
            raise ValueError(
                f"raw feature 'aatype' is one-hot with {x.shape[-1]} classes; expected 21 "
                "(our residue order plus X), as made by make_sequence_features"
            )
        return x.argmax(dim=-1)
    aatype = _as_int("aatype", _drop_last_singleton("aatype", x, 1))
    if aatype.numel() and (int(aatype.min()) < 0 or int(aatype.max()) > rc.restype_num):
        raise ValueError("raw feature 'aatype' must hold residue types 0..20")
    return aatype


def squeeze_features(raw: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Raw feature dict -> tensors with canonical dtypes and shapes.

    Text features are dropped; ``aatype`` becomes ints ``[N_res]``; ``seq_length`` and
    ``num_alignments`` (per-residue copies in AF2's raw features) become scalars;
    ``deletion_matrix_int`` becomes float ``deletion_matrix [N_seq, N_res]``; trailing
    size-1 axes (AF2's tf.Example layout) are removed. Integers are int64, reals float32.

    Raises:
        ValueError: a required feature (``aatype``, ``msa``) is missing, or shapes disagree.
    """
    for required in ("aatype", "msa"):
        if required not in raw:
            raise ValueError(
                f"raw features lack {required!r}; build them with data_pipeline (or AF2's "
                "make_sequence_features / make_msa_features; a single-sequence MSA is the query)"
            )
    t = {k: to_tensor(k, v) for k, v in raw.items() if k not in _TEXT_KEYS and not _is_text(v)}
    out: dict[str, torch.Tensor] = {}
    aatype = _seq_aatype(t["aatype"])
    n = aatype.shape[0]
    out["aatype"] = aatype

    def per_residue(name: str, default: torch.Tensor) -> torch.Tensor:
        x = _as_int(name, _drop_last_singleton(name, t[name], 1)) if name in t else default
        if x.shape != (n,):
            raise ValueError(f"raw feature {name!r} has shape {tuple(x.shape)}, expected ({n},)")
        return x

    out["residue_index"] = per_residue("residue_index", torch.arange(n))
    out["between_segment_residues"] = per_residue(
        "between_segment_residues", torch.zeros(n, dtype=torch.int64)
    )
    if "seq_length" in t:
        seq_length = int(t["seq_length"].flatten()[0])
        if seq_length != n:
            raise ValueError(f"raw 'seq_length' is {seq_length} but 'aatype' has {n} residues")
    out["seq_length"] = torch.tensor(n, dtype=torch.int64)

    msa = _as_int("msa", _drop_last_singleton("msa", t["msa"], 2))
    if msa.shape[0] == 0 or msa.shape[1] != n:
        raise ValueError(
            f"raw 'msa' has shape {tuple(msa.shape)}; expected at least one row (the query) "
            f"and {n} columns"
        )
    if int(msa.min()) < 0 or int(msa.max()) > 21:
        raise ValueError("raw 'msa' must hold HHblits ids 0..21 (20 = X, 21 = gap)")
    out["msa"] = msa
    if "deletion_matrix" in t:
        deletion = _drop_last_singleton("deletion_matrix", t["deletion_matrix"], 2).float()
    elif "deletion_matrix_int" in t:
        deletion = _drop_last_singleton("deletion_matrix_int", t["deletion_matrix_int"], 2)
        deletion = deletion.float()
    else:
        deletion = torch.zeros(msa.shape, dtype=torch.float32)
    if deletion.shape != msa.shape:
        raise ValueError(
            f"the deletion matrix has shape {tuple(deletion.shape)} but 'msa' has "
            f"{tuple(msa.shape)}; they must match"
        )
    out["deletion_matrix"] = deletion
    for name in t:
        if name.endswith("profile"):
            out[name] = t[name].float()
    out["is_distillation"] = torch.tensor(
        float(t["is_distillation"].flatten()[0]) if "is_distillation" in t else 0.0
    )

    if any(k in t for k in _TEMPLATE_KEYS) or "template_all_atom_mask" in t:
        out.update(_squeeze_templates(t, n))
    if "all_atom_positions" in t:
        out.update(_squeeze_structure(t, n))
    return out


def _squeeze_templates(t: dict[str, torch.Tensor], n: int) -> dict[str, torch.Tensor]:
    mask_key = "template_all_atom_masks" if "template_all_atom_masks" in t else (
        "template_all_atom_mask"
    )
    missing = [k for k in ("template_aatype", "template_all_atom_positions") if k not in t]
    if mask_key not in t:
        missing.append("template_all_atom_masks")
    if missing:
        raise ValueError(f"raw template features are incomplete: {missing} missing")
    aatype = t["template_aatype"]
    num_t = aatype.shape[0]
    pos = t["template_all_atom_positions"].float()
    masks = t[mask_key].float()
    if masks.dim() == 4 and masks.shape[-1] == 1:
        masks = masks[..., 0]
    expect = {"template_all_atom_positions": (pos, (num_t, n, 37, 3)),
              "template_all_atom_masks": (masks, (num_t, n, 37))}
    if aatype.dim() == 3:
        expect["template_aatype"] = (aatype, (num_t, n, 22))
    else:
        expect["template_aatype"] = (aatype, (num_t, n))
    for name, (x, shape) in expect.items():
        if tuple(x.shape) != shape:
            raise ValueError(f"raw {name!r} has shape {tuple(x.shape)}, expected {shape}")
    sum_probs = t.get("template_sum_probs", torch.zeros(num_t, 1)).float().reshape(num_t, 1)
    return {
        "template_aatype": aatype,
        "template_all_atom_positions": pos,
        "template_all_atom_masks": masks,
        "template_sum_probs": sum_probs,
    }


def _squeeze_structure(t: dict[str, torch.Tensor], n: int) -> dict[str, torch.Tensor]:
    pos = t["all_atom_positions"].float()
    if "all_atom_mask" not in t:
        raise ValueError("raw features have 'all_atom_positions' but no 'all_atom_mask'")
    mask = t["all_atom_mask"].float()
    if tuple(pos.shape) != (n, 37, 3) or tuple(mask.shape) != (n, 37):
        raise ValueError(
            f"raw 'all_atom_positions' {tuple(pos.shape)} / 'all_atom_mask' "
            f"{tuple(mask.shape)} must be ({n}, 37, 3) / ({n}, 37), aligned with 'aatype'"
        )
    resolution = float(t["resolution"].flatten()[0]) if "resolution" in t else 0.0
    return {
        "all_atom_positions": pos,
        "all_atom_mask": mask,
        "resolution": torch.tensor(resolution, dtype=torch.float32),
    }


def correct_msa_restypes(protein: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map ``msa`` from the HHblits alphabet to ours, and permute ``*profile`` columns."""
    protein["msa"] = _HHBLITS_TO_OURS[protein["msa"]]
    for key in [k for k in protein if "profile" in k]:
        width = protein[key].shape[-1]
        if width not in (20, 21, 22):
            raise ValueError(f"raw {key!r} has {width} columns; expected 20, 21 or 22")
        perm = torch.zeros(22, 22)
        perm[torch.arange(22), _HHBLITS_TO_OURS] = 1.0
        protein[key] = protein[key] @ perm[:width, :width]
    return protein


def make_seq_mask(protein: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``seq_mask [N_res]``: ones (padding adds zeros later)."""
    protein["seq_mask"] = torch.ones(protein["aatype"].shape, dtype=torch.float32)
    return protein


def make_msa_mask(protein: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``msa_mask [N_seq, N_res]`` and ``msa_row_mask [N_seq]``: ones."""
    protein["msa_mask"] = torch.ones(protein["msa"].shape, dtype=torch.float32)
    protein["msa_row_mask"] = torch.ones(protein["msa"].shape[:1], dtype=torch.float32)
    return protein


def make_hhblits_profile(protein: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``hhblits_profile [N_res, 22]``: frequency of each MSA class per column (our
    alphabet), over all rows. Kept when the raw features already have one."""
    if "hhblits_profile" in protein:
        return protein
    msa = protein["msa"]
    num_seq, num_res = msa.shape
    flat = (torch.arange(num_res) * 22 + msa).flatten()
    counts = torch.bincount(flat, minlength=num_res * 22).reshape(num_res, 22)
    protein["hhblits_profile"] = counts.float() / float(num_seq)
    return protein


def fix_templates_aatype(template_aatype: torch.Tensor) -> torch.Tensor:
    """Template residue types: one-hot ``[N_templ, N_res, 22]`` (or ids ``[N_templ,
    N_res]``) in the HHblits alphabet -> ids in our order (gap -> 21)."""
    if template_aatype.dim() == 3:
        template_aatype = template_aatype.argmax(dim=-1)
    template_aatype = _as_int("template_aatype", template_aatype)
    if template_aatype.numel() and (
        int(template_aatype.min()) < 0 or int(template_aatype.max()) > 21
    ):
        raise ValueError("raw 'template_aatype' ids must be HHblits ids 0..21")
    return _HHBLITS_TO_OURS[template_aatype]


def make_template_mask(protein: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``template_mask [N_templ]``: ones for the templates present."""
    protein["template_mask"] = torch.ones(protein["template_aatype"].shape[:1])
    return protein


def pseudo_beta_fn(
    aatype: torch.Tensor, all_atom_positions: torch.Tensor, all_atom_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pseudo-beta atom: CB, or CA for glycine (distogram targets, template pair features).

    Args:
        aatype: ``[*, N_res]`` ids in our order.
        all_atom_positions: ``[*, N_res, 37, 3]``.
        all_atom_mask: ``[*, N_res, 37]``.
    Returns:
        ``pseudo_beta [*, N_res, 3]`` and ``pseudo_beta_mask [*, N_res]`` (float32).
    """
    is_gly = aatype == _GLY
    pos = torch.where(is_gly[..., None], all_atom_positions[..., _CA, :],
                      all_atom_positions[..., _CB, :])
    mask = torch.where(is_gly, all_atom_mask[..., _CA], all_atom_mask[..., _CB])
    return pos.float(), mask.float()


def make_template_features(protein: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Template ids in our order, ``template_mask``, pseudo-beta and torsion angles.

    Adds ``template_pseudo_beta [N_templ, N_res, 3]``, ``template_pseudo_beta_mask``,
    ``template_torsion_angles_sin_cos [N_templ, N_res, 7, 2]``, its ``alt_`` version and
    ``template_torsion_angles_mask [N_templ, N_res, 7]`` (the template angle features of
    Suppl. Table 1). With no template features at all, empty ``N_templ = 0`` ones are
    made.
    """
    if "template_aatype" not in protein:
        n = protein["aatype"].shape[0]
        protein["template_aatype"] = torch.zeros(0, n, 22)
        protein["template_all_atom_positions"] = torch.zeros(0, n, 37, 3)
        protein["template_all_atom_masks"] = torch.zeros(0, n, 37)
        protein["template_sum_probs"] = torch.zeros(0, 1)
    protein["template_aatype"] = fix_templates_aatype(protein["template_aatype"])
    make_template_mask(protein)
    aatype = protein["template_aatype"]
    pos = protein["template_all_atom_positions"]
    masks = protein["template_all_atom_masks"]
    protein["template_pseudo_beta"], protein["template_pseudo_beta_mask"] = pseudo_beta_fn(
        aatype, pos, masks
    )
    torsions = all_atom.atom37_to_torsion_angles(aatype, pos, masks)
    protein["template_torsion_angles_sin_cos"] = torsions["torsion_angles_sin_cos"]
    protein["template_alt_torsion_angles_sin_cos"] = torsions["alt_torsion_angles_sin_cos"]
    protein["template_torsion_angles_mask"] = torsions["torsion_angles_mask"]
    return protein


def make_atom14_masks(protein: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``atom14_atom_exists``, ``residx_atom14_to_atom37``, ``residx_atom37_to_atom14``,
    ``atom37_atom_exists`` of ``aatype`` (:func:`uni_fold.geometry.all_atom.make_atom14_masks`)."""
    protein.update(all_atom.make_atom14_masks(protein["aatype"]))
    return protein


def make_target_feat(
    aatype: torch.Tensor, between_segment_residues: torch.Tensor
) -> torch.Tensor:
    """``target_feat [N_res, 22]``: domain-break flag (clipped to [0, 1]) then one-hot
    ``aatype`` over 21 classes (Suppl. Table 1)."""
    has_break = between_segment_residues.float().clamp(0.0, 1.0)
    one_hot = torch.nn.functional.one_hot(aatype, rc.restype_num + 1).float()
    return torch.cat([has_break[..., None], one_hot], dim=-1)
