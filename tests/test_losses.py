"""Structure-module losses (uni_fold.loss.fape, .violations, .chi, structure_module_loss)
against the AF2 reference run live on the same numpy inputs.

Ground truth comes from real structures in ../shared/data through the reference's own
feature code; predictions are the true structure perturbed (noisy frames, some residues
moved beyond the FAPE clamp, noisy torsions, side chains rebuilt by the reference's
Alg. 24). Tolerance: 1e-5 relative (1e-6 absolute for tiny values), fp32 on both sides.
Also: the renaming picks the better naming, violation counts on a real structure with an
introduced clash and a stretched peptide bond, gradients, batch dims, bf16 autocast, errors.
"""
from __future__ import annotations

import jax
import numpy as np
import pytest
import torch
from alphafold.model import all_atom as af_all_atom
from alphafold.model import folding, quat_affine, r3

from tests import loss_reference as lr
from uni_fold.config import model_config
from uni_fold.geometry import Rigid
from uni_fold.loss import (
    backbone_loss,
    compute_renamed_ground_truth,
    find_optimal_renaming,
    find_structural_violations,
    frame_aligned_point_error,
    structural_violation_loss,
    structure_module_loss,
    supervised_chi_loss,
)

RTOL, ATOL = 1e-5, 1e-6
SM_CFG = model_config("model_1_ptm").model.heads.structure_module
REF_CFG = lr.reference_config()
REF_SM_CFG = REF_CFG.model.heads.structure_module


def close(ours, ref, name: str, rtol: float = RTOL, atol: float = ATOL) -> None:
    ours = ours.detach().numpy() if isinstance(ours, torch.Tensor) else np.asarray(ours)
    np.testing.assert_allclose(ours, np.asarray(ref), rtol=rtol, atol=atol, err_msg=name)


def make_example(name: str, drop_residues=(), seed: int = 0, hide_atoms: float = 0.05):
    """Reference ground truth of a real chain (a few side-chain atoms hidden from the mask,
    as unresolved atoms are) and a perturbed prediction."""
    chain = lr.load_chain(name, drop_residues=drop_residues)
    rng = np.random.default_rng(seed)
    mask = chain["all_atom_mask"].copy()
    side_chain = np.zeros_like(mask, dtype=bool)
    side_chain[:, 5:] = True  # atom37 slots after N, CA, C, CB, O
    mask[side_chain & (rng.random(mask.shape) < hide_atoms)] = 0.0
    gt = lr.reference_ground_truth(chain["aatype"], chain["all_atom_positions"], mask)
    gt["residue_index"] = chain["residue_index"]
    pred = lr.perturbed_prediction(gt, rng)
    return gt, pred


@pytest.fixture(scope="module")
def villin():
    """Villin headpiece (1vii, NMR) with residue 17 cut out: 35 residues and a chain break."""
    return make_example("1vii", drop_residues=(17,))


@pytest.fixture(scope="module")
def trp_cage():
    """Trp-cage (1l2y, NMR, 20 residues)."""
    return make_example("1l2y", seed=1)


# ----------------------------------------------------------------------------------------
# Config: the loss settings are AF2's


@pytest.mark.parametrize("preset", ["model_1", "model_3_ptm"])
def test_loss_settings_equal_af2_config(preset):
    ours = model_config(preset).model.heads
    ref = lr.reference_config(preset).model.heads
    for head in ("distogram", "masked_msa", "predicted_lddt", "experimentally_resolved",
                 "structure_module"):
        assert getattr(ours, head).weight == ref[head].weight, head
    assert ours.predicted_aligned_error.weight == ref.get("predicted_aligned_error", {}).get(
        "weight", 0.0)
    sm, ref_sm = ours.structure_module, ref.structure_module
    for key in ("angle_norm_weight", "chi_weight", "clash_overlap_tolerance",
                "violation_tolerance_factor", "structural_violation_loss_weight"):
        assert getattr(sm, key) == ref_sm[key], key
    for key in ("clamp_distance", "loss_unit_distance"):
        assert getattr(sm.fape, key) == ref_sm.fape[key], key
    for key in ("atom_clamp_distance", "length_scale", "weight_frac"):
        assert getattr(sm.sidechain, key) == ref_sm.sidechain[key], key
    for key in ("first_break", "last_break", "num_bins"):
        assert getattr(ours.distogram, key) == ref.distogram[key], key
    for head in ("predicted_lddt", "experimentally_resolved"):
        for key in ("filter_by_resolution", "min_resolution", "max_resolution"):
            assert getattr(getattr(ours, head), key) == ref[head][key], (head, key)


# ----------------------------------------------------------------------------------------
# FAPE


def _random_rigids(rng, n):
    pts = rng.normal(size=(3, n, 3)).astype(np.float32) * 4.0
    ref = r3.rigids_from_3_points(*(r3.vecs_from_tensor(p) for p in pts))
    flat = np.asarray(r3.rigids_to_tensor_flat12(ref))
    return ref, Rigid.from_tensor_4x4(torch.from_numpy(lr.flat12_to_4x4(flat)))


@pytest.mark.parametrize("clamp", [None, 10.0])
def test_frame_aligned_point_error_matches_reference(clamp):
    rng = np.random.default_rng(3)
    num_frames, num_points = 7, 11
    ref_pred_frames, pred_frames = _random_rigids(rng, num_frames)
    ref_true_frames, true_frames = _random_rigids(rng, num_frames)
    pred_pos = (rng.normal(size=(num_points, 3)) * 8).astype(np.float32)
    true_pos = (pred_pos + rng.normal(size=(num_points, 3)) * 6).astype(np.float32)
    frames_mask = (rng.random(num_frames) < 0.8).astype(np.float32)
    pos_mask = (rng.random(num_points) < 0.8).astype(np.float32)
    ref = af_all_atom.frame_aligned_point_error(
        ref_pred_frames, ref_true_frames, frames_mask, r3.vecs_from_tensor(pred_pos),
        r3.vecs_from_tensor(true_pos), pos_mask, length_scale=10.0, l1_clamp_distance=clamp)
    ours = frame_aligned_point_error(
        pred_frames, true_frames, torch.from_numpy(frames_mask), torch.from_numpy(pred_pos),
        torch.from_numpy(true_pos), torch.from_numpy(pos_mask), length_scale=10.0,
        l1_clamp_distance=clamp)
    assert ours.shape == ()
    close(ours, ref, f"fape clamp={clamp}")


@jax.jit
def _ref_backbone_loss(batch, traj):
    ret = {"loss": 0.0}
    folding.backbone_loss(ret, batch, {"traj": traj}, REF_SM_CFG)
    return ret


@pytest.mark.parametrize("use_clamped", [None, 0.0, 1.0, 0.9])
def test_backbone_fape_matches_reference_with_clamped_mix(villin, use_clamped):
    gt, pred = villin
    batch = {k: gt[k] for k in ("backbone_affine_tensor", "backbone_affine_mask")}
    if use_clamped is not None:
        batch["use_clamped_fape"] = np.float32(use_clamped)
    ret = _ref_backbone_loss(batch, pred["traj"])
    ours = backbone_loss(
        torch.from_numpy(pred["traj"]), torch.from_numpy(gt["backbone_affine_tensor"]),
        torch.from_numpy(gt["backbone_affine_mask"]), SM_CFG.fape.clamp_distance,
        SM_CFG.fape.loss_unit_distance,
        None if use_clamped is None else torch.tensor(use_clamped))
    assert ours.shape == (pred["traj"].shape[0],)
    close(ours[-1], ret["fape"], "fape (last layer)")
    close(ours.mean(), ret["loss"], "backbone loss (mean over layers)")


def test_unclamped_fape_is_larger_when_residues_are_far(villin):
    gt, pred = villin
    args = [torch.from_numpy(a) for a in (pred["traj"], gt["backbone_affine_tensor"],
                                          gt["backbone_affine_mask"])]
    clamped = backbone_loss(*args, use_clamped_fape=1.0)
    unclamped = backbone_loss(*args, use_clamped_fape=0.0)
    mixed = backbone_loss(*args, use_clamped_fape=0.9)
    assert torch.all(unclamped > clamped * 1.05)
    torch.testing.assert_close(mixed, 0.9 * clamped + 0.1 * unclamped)
    torch.testing.assert_close(backbone_loss(*args), clamped)
    # The true frames score 0 (up to the sqrt(eps) floor: 1e-2 / 10).
    perfect = backbone_loss(args[1][None], args[1], args[2])
    assert abs(float(perfect) - 1e-3) < 1e-4


# ----------------------------------------------------------------------------------------
# The whole structure-module loss


@pytest.mark.parametrize("example", ["villin", "trp_cage"])
def test_structure_module_loss_matches_reference(example, request):
    gt, pred = request.getfixturevalue(example)
    ref = lr.reference_structure_module_loss(pred, gt)
    ours = structure_module_loss(lr.our_outputs(pred, gt["aatype"]), lr.to_torch(gt), SM_CFG,
                                 violation_metrics=True)
    for key in ("loss", "fape", "sidechain_fape", "chi_loss", "angle_norm_loss"):
        close(ours[key], ref[key], key)
    for key, value in ref["metrics"].items():
        close(ours[key], value, key)
    assert float(ours["violation_loss"]) > 0.0
    assert 0.05 < float(ours["sidechain_fape"]) < 1.0


def test_supervised_chi_loss_treats_pi_periodic_chis_as_equal(villin):
    gt, pred = villin
    aatype = torch.from_numpy(gt["aatype"]).long()
    chi = torch.from_numpy(gt["chi_angles"])
    chi_mask = torch.from_numpy(gt["chi_mask"])
    periodic = torch.tensor([[0, 1, 0, 0] if a in (3, 13, 18) else [0, 0, 0, 0]
                             for a in gt["aatype"]], dtype=torch.float32)  # ASP, PHE, TYR
    assert periodic.sum() > 0
    shifted = chi + torch.pi * periodic
    angles = torch.zeros(1, len(aatype), 7, 2)
    angles[..., 0, 1] = angles[..., 1, 1] = angles[..., 2, 1] = 1.0
    angles[0, :, 3:] = torch.stack([torch.sin(shifted), torch.cos(shifted)], -1)
    ret = supervised_chi_loss(angles, angles, aatype, torch.ones(len(aatype)), chi_mask, chi)
    assert float(ret["chi_loss"]) < 1e-10
    assert float(ret["angle_norm_loss"]) < 1e-6
    # The same shift on a 2pi-periodic chi is an error of 4 ((sin, cos) flipped).
    angles[0, :, 3, :] = -angles[0, :, 3, :]
    ret = supervised_chi_loss(angles, angles, aatype, torch.ones(len(aatype)), chi_mask, chi)
    expected = 4.0 * chi_mask[:, 0].sum() / chi_mask.sum()
    torch.testing.assert_close(ret["chi_loss"], expected, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------------
# Renaming of symmetric side chains (Alg. 26)


def test_renaming_picks_the_better_naming(villin):
    gt, _ = villin
    t = lr.to_torch(gt)
    ambiguous = (t["atom14_atom_is_ambiguous"] * t["atom14_gt_exists"]).amax(-1) > 0
    candidates = torch.nonzero(ambiguous).flatten()
    assert len(candidates) >= 3, "the test structure needs resolved ASP/GLU/PHE/TYR"
    swapped = torch.zeros(len(gt["aatype"]))
    swapped[candidates[::2]] = 1.0
    # Predict the truth, but with the other naming for the swapped residues (plus noise).
    pred = torch.where(swapped[:, None, None] > 0, t["atom14_alt_gt_positions"],
                       t["atom14_gt_positions"])
    pred = pred + 0.05 * torch.randn(pred.shape, generator=torch.Generator().manual_seed(0))
    args = (t["atom14_gt_positions"], t["atom14_alt_gt_positions"],
            t["atom14_atom_is_ambiguous"], t["atom14_gt_exists"])
    ours = find_optimal_renaming(*args, pred)
    torch.testing.assert_close(ours, swapped)
    ref = af_all_atom.find_optimal_renaming(
        gt["atom14_gt_positions"], gt["atom14_alt_gt_positions"],
        gt["atom14_atom_is_ambiguous"], gt["atom14_gt_exists"], pred.numpy(),
        gt["atom14_atom_exists"])
    np.testing.assert_array_equal(ours.numpy(), np.asarray(ref))
    renamed = compute_renamed_ground_truth(*args, t["atom14_alt_gt_exists"], pred)
    err = (renamed["renamed_atom14_gt_positions"] - pred).norm(dim=-1)
    assert float(err[renamed["renamed_atom14_gt_exists"] > 0].max()) < 0.5


def test_renaming_matches_reference_on_noisy_predictions(villin):
    gt, pred = villin
    t = lr.to_torch(gt)
    for layer in range(pred["atom_pos"].shape[0]):
        atoms = pred["atom_pos"][layer]
        ours = find_optimal_renaming(t["atom14_gt_positions"], t["atom14_alt_gt_positions"],
                                     t["atom14_atom_is_ambiguous"], t["atom14_gt_exists"],
                                     torch.from_numpy(atoms))
        ref = af_all_atom.find_optimal_renaming(
            gt["atom14_gt_positions"], gt["atom14_alt_gt_positions"],
            gt["atom14_atom_is_ambiguous"], gt["atom14_gt_exists"], atoms,
            gt["atom14_atom_exists"])
        np.testing.assert_array_equal(ours.numpy(), np.asarray(ref))


# ----------------------------------------------------------------------------------------
# Structural violations

_ref_violations = jax.jit(lambda batch, atoms: folding.find_structural_violations(
    batch, atoms, REF_SM_CFG))
_VIOLATION_KEYS = {
    "bonds_c_n_loss_mean": ("between_residues", "bonds_c_n_loss_mean"),
    "angles_ca_c_n_loss_mean": ("between_residues", "angles_ca_c_n_loss_mean"),
    "angles_c_n_ca_loss_mean": ("between_residues", "angles_c_n_ca_loss_mean"),
    "connections_per_residue_loss_sum": ("between_residues", "connections_per_residue_loss_sum"),
    "connections_per_residue_violation_mask": (
        "between_residues", "connections_per_residue_violation_mask"),
    "clashes_mean_loss": ("between_residues", "clashes_mean_loss"),
    "clashes_per_atom_loss_sum": ("between_residues", "clashes_per_atom_loss_sum"),
    "clashes_per_atom_clash_mask": ("between_residues", "clashes_per_atom_clash_mask"),
    "within_residues_per_atom_loss_sum": ("within_residues", "per_atom_loss_sum"),
    "within_residues_per_atom_violations": ("within_residues", "per_atom_violations"),
    "total_per_residue_violations_mask": ("total_per_residue_violations_mask",),
}


def violations_both(gt, atoms: np.ndarray):
    batch = {k: gt[k] for k in ("aatype", "residue_index", "atom14_atom_exists",
                                "residx_atom14_to_atom37")}
    ref = jax.tree_util.tree_map(np.asarray, _ref_violations(batch, atoms))
    t = lr.to_torch(gt)
    ours = find_structural_violations(t["aatype"], t["residue_index"], t["atom14_atom_exists"],
                                      torch.from_numpy(atoms), SM_CFG.violation_tolerance_factor,
                                      SM_CFG.clash_overlap_tolerance)
    for key, path in _VIOLATION_KEYS.items():
        value = ref
        for p in path:
            value = value[p]
        close(ours[key], value, key, rtol=1e-5, atol=1e-5)
    return ours, ref


def test_violations_match_reference_on_a_perturbed_prediction(villin):
    gt, pred = villin
    ours, ref = violations_both(gt, pred["final_atom14_positions"])
    assert float(ours["total_per_residue_violations_mask"].sum()) > 5
    ret = {"loss": 0.0}
    folding.structural_violation_loss(ret, gt, {"violations": ref}, REF_SM_CFG)
    close(structural_violation_loss(ours, lr.to_torch(gt)["atom14_atom_exists"]), ret["loss"],
          "structural violation loss")


def test_violation_counts_on_a_real_structure_with_a_clash_and_a_broken_bond():
    chain = lr.load_chain("1aki")  # lysozyme, X-ray 1.5 Å, 129 residues, 4 disulfides
    gt = lr.reference_ground_truth(chain["aatype"], chain["all_atom_positions"],
                                   chain["all_atom_mask"])
    gt["residue_index"] = chain["residue_index"]
    exists = gt["atom14_atom_exists"] * gt["atom14_gt_exists"]
    gt["atom14_atom_exists"] = exists  # score resolved atoms only
    atoms = gt["atom14_gt_positions"].copy()
    before, _ = violations_both(gt, atoms)
    # A deposited crystal structure: (almost) no violating residues; the SG-SG disulfide
    # bonds (2.0 Å, closer than two sulfur radii minus the tolerance) are no clashes.
    assert float(before["total_per_residue_violations_mask"].sum()) <= 2
    assert float(before["clashes_per_atom_clash_mask"].sum()) == 0

    # Clash: put the last side-chain atom of residue i 1 Å from the CA of residue j.
    i, j = 10, 40
    slot = int(np.flatnonzero(exists[i])[-1])
    assert slot >= 4, "residue i needs a side chain"
    atoms[i, slot] = atoms[j, 1] + np.array([1.0, 0.0, 0.0], np.float32)
    # Broken peptide bond: move residue k+1's N 1 Å along the C-N bond.
    k = 60
    bond = atoms[k + 1, 0] - atoms[k, 2]
    atoms[k + 1, 0] += bond / np.linalg.norm(bond)
    after, _ = violations_both(gt, atoms)
    clash = after["clashes_per_atom_clash_mask"]
    assert clash[i, slot] == 1 and clash[j, 1] == 1
    assert after["connections_per_residue_violation_mask"][[k, k + 1]].tolist() == [1.0, 1.0]
    flagged = set(torch.nonzero(after["total_per_residue_violations_mask"]).flatten().tolist())
    flagged_before = set(torch.nonzero(before["total_per_residue_violations_mask"]).flatten()
                         .tolist())
    assert {i, j, k, k + 1} <= flagged
    assert flagged - flagged_before - {i, j, k, k + 1} <= {k + 2, i - 1, i + 1}
    t_exists = torch.from_numpy(exists)
    assert structural_violation_loss(after, t_exists) > structural_violation_loss(before,
                                                                                  t_exists) + 0.01


# ----------------------------------------------------------------------------------------
# Gradients, batch dims, precision, errors


def _requires_grad_outputs(pred, aatype):
    outputs = lr.our_outputs(pred, aatype)
    leaves = [outputs["sm"][k] for k in ("affine", "angles_sin_cos",
                                         "unnormalized_angles_sin_cos", "frames", "atom_pos")]
    for x in leaves:
        x.requires_grad_(True)
    outputs["final_atom14_positions"] = outputs["sm"]["atom_pos"][-1]
    return outputs, leaves


def test_gradients_are_finite_and_reach_every_prediction(villin):
    gt, pred = villin
    outputs, leaves = _requires_grad_outputs(pred, gt["aatype"])
    batch = lr.to_torch(gt)
    batch["use_clamped_fape"] = torch.tensor(0.9)
    loss = structure_module_loss(outputs, batch, SM_CFG)["loss"]
    loss.backward()
    for name, x in zip(("affine", "angles", "unnormalized", "frames", "atom_pos"), leaves,
                       strict=True):
        assert x.grad is not None and torch.isfinite(x.grad).all(), name
        assert x.grad.abs().sum() > 0, name


def test_frame_aligned_point_error_gradcheck():
    rng = np.random.default_rng(5)
    _, frames = _random_rigids(rng, 3)
    _, true_frames = _random_rigids(rng, 3)
    frames = frames.to(torch.float64)
    true_frames = true_frames.to(torch.float64)
    pos = torch.from_numpy(rng.normal(size=(4, 3)) * 3).requires_grad_(True)
    true = torch.from_numpy(rng.normal(size=(4, 3)) * 3)

    def fape(p):
        return frame_aligned_point_error(frames, true_frames, torch.ones(3, dtype=p.dtype), p,
                                         true, torch.ones(4, dtype=p.dtype), 10.0, 100.0)

    assert torch.autograd.gradcheck(fape, (pos,))


def test_leading_batch_dims_equal_single_examples(villin):
    gt, pred = villin
    rng = np.random.default_rng(11)
    pred2 = lr.perturbed_prediction(gt, rng)
    singles = [structure_module_loss(lr.our_outputs(p, gt["aatype"]), lr.to_torch(gt), SM_CFG)
               for p in (pred, pred2)]
    out1, out2 = lr.our_outputs(pred, gt["aatype"]), lr.our_outputs(pred2, gt["aatype"])
    stacked = {
        "sm": {k: torch.stack([out1["sm"][k], out2["sm"][k]], dim=1) for k in out1["sm"]},
        "final_atom14_positions": torch.stack([out1["final_atom14_positions"],
                                               out2["final_atom14_positions"]]),
    }
    batch = {k: torch.stack([v, v]) for k, v in lr.to_torch(gt).items()}
    batched = structure_module_loss(stacked, batch, SM_CFG)
    for key, value in batched.items():
        assert value.shape == (2,), key
        for b in range(2):
            torch.testing.assert_close(value[b], singles[b][key], rtol=1e-5, atol=1e-6,
                                       msg=key)


def test_bf16_autocast_gives_fp32_losses(trp_cage):
    gt, pred = trp_cage
    outputs, batch = lr.our_outputs(pred, gt["aatype"]), lr.to_torch(gt)
    ref = structure_module_loss(outputs, batch, SM_CFG)
    half = dict(outputs, sm={k: v.bfloat16() if v.is_floating_point() else v
                             for k, v in outputs["sm"].items()})
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = structure_module_loss(half, batch, SM_CFG)
    for key, value in ours.items():
        assert value.dtype == torch.float32, key
        torch.testing.assert_close(value, ref[key], rtol=0.05, atol=0.02, msg=key)


def test_bad_inputs_raise_clear_errors(trp_cage):
    gt, pred = trp_cage
    outputs, batch = lr.our_outputs(pred, gt["aatype"]), lr.to_torch(gt)
    with pytest.raises(ValueError, match="chi_angles"):
        structure_module_loss(outputs, {k: v for k, v in batch.items() if k != "chi_angles"},
                              SM_CFG)
    with pytest.raises(ValueError, match="layer axis"):
        backbone_loss(batch["backbone_affine_tensor"], batch["backbone_affine_tensor"],
                      batch["backbone_affine_mask"])
    with pytest.raises(ValueError, match="l1_clamp_distance"):
        frame_aligned_point_error(Rigid.identity(2), Rigid.identity(2), torch.ones(2),
                                  torch.zeros(3, 3), torch.zeros(3, 3), torch.ones(3), 10.0,
                                  l1_clamp_distance=0.0)
    with pytest.raises(ValueError, match=r"\[\*, 14, 3\]"):
        find_optimal_renaming(*(torch.zeros(5, 37, 3),) * 2, torch.zeros(5, 37),
                              torch.zeros(5, 37), torch.zeros(5, 37, 3))


def test_reference_quaternions_give_our_frames(villin):
    """Guard for the inputs: our Rigid.from_tensor_7 reads AF2's affine layout."""
    gt, _ = villin
    affine = quat_affine.QuatAffine.from_tensor(gt["backbone_affine_tensor"])
    rot = np.stack([np.stack(row, -1) for row in affine.rotation], -2)
    ours = Rigid.from_tensor_7(torch.from_numpy(gt["backbone_affine_tensor"]),
                               normalize_quat=False)
    np.testing.assert_allclose(ours.rot.numpy(), rot, atol=1e-6)
