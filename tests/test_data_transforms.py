"""uni_fold.data transforms, one by one, against the AF2 reference's own transforms
(``alphafold.model.tf.data_transforms`` on its NumPy backend, run live) on real raw
features from ../shared/data; ground truth against the reference's JAX ``all_atom``.

Random transforms get the reference's draws replayed (``tests/data_reference.py``), so
every output can be compared exactly (integers) or to 1e-6 (reals).
"""
from __future__ import annotations

import copy

import data_reference as dr
import numpy as np
import pytest
import torch
from alphafold.model import all_atom as af2_all_atom
from alphafold.model import quat_affine
from alphafold.model.tf import data_transforms as af2_dt
from alphafold.model.tf import np_backend

from uni_fold.config import model_config
from uni_fold.data import msa as M
from uni_fold.data import transforms as T
from uni_fold.data.ground_truth import make_ground_truth_features
from uni_fold.data.process import prepare_features
from uni_fold.data.sampling import TorchSampler

TOL = 1e-6


@pytest.fixture(scope="module")
def cfg():
    return model_config("model_1_ptm", max_msa_clusters=36, max_extra_msa=100, max_templates=4)


@pytest.fixture(scope="module")
def raw():
    return dr.raw_features(max_rows=300, max_templates=4)


@pytest.fixture(scope="module")
def ref_state(raw, cfg):
    """The reference's state after its once-per-example transforms."""
    return dr.reference_nonensembled(raw, cfg)


def assert_equal(ours: torch.Tensor, ref, name: str, tol: float = 0.0) -> None:
    ref = np.asarray(ref)
    ours = ours.detach().numpy()
    assert ours.shape == ref.shape, f"{name}: shape {ours.shape} != reference {ref.shape}"
    if tol == 0.0:
        np.testing.assert_array_equal(ours, ref, err_msg=name)
    else:
        np.testing.assert_allclose(ours, ref, atol=tol, rtol=0, err_msg=name)


# ----------------------------------------------------------------------------------------
# Once-per-example transforms


def test_prepare_equals_reference_nonensembled(raw, cfg, ref_state):
    ours = prepare_features(raw, cfg.data, "predict", TorchSampler(0))
    names = [
        "aatype", "residue_index", "seq_length", "between_segment_residues", "msa",
        "deletion_matrix", "msa_mask", "msa_row_mask", "seq_mask", "hhblits_profile",
        "is_distillation", "template_aatype", "template_all_atom_positions",
        "template_all_atom_masks", "template_sum_probs", "template_mask",
        "template_pseudo_beta", "template_pseudo_beta_mask", "atom14_atom_exists",
        "residx_atom14_to_atom37", "residx_atom37_to_atom14", "atom37_atom_exists",
    ]
    for name in names:
        assert_equal(ours[name], ref_state[name], name)
    # The raw templates were real hits, not all empty.
    assert float(ours["template_pseudo_beta_mask"].sum()) > 50


def test_hhblits_mapping_moves_gap_and_x(raw):
    msa = torch.tensor([[21, 20, 0, 1], [2, 3, 4, 21]])  # gap, X, A, C / D, E, F, gap
    mapped = T.correct_msa_restypes({"msa": msa})["msa"]
    # ours: A=0 R=1 N=2 D=3 C=4 Q=5 E=6 G=7 H=8 ... F=13 X=20 gap=21
    assert mapped.tolist() == [[21, 20, 0, 4], [3, 6, 13, 21]]


def test_profile_columns_are_permuted_like_the_reference(ref_state):
    rng = np.random.default_rng(0)
    profile = rng.random((7, 22)).astype(np.float32)
    ref = af2_dt.correct_msa_restypes({"msa": np.zeros((1, 7), np.int32),
                                       "hhblits_profile": profile.copy()})
    ours = T.correct_msa_restypes({"msa": torch.zeros(1, 7, dtype=torch.int64),
                                   "hhblits_profile": torch.from_numpy(profile)})
    assert_equal(ours["hhblits_profile"], ref["hhblits_profile"], "profile", TOL)


def test_target_feat_equals_reference(ref_state):
    ref = af2_dt.make_msa_feat()(copy.copy(ref_state))
    t = dr.to_torch(ref_state)
    ours = T.make_target_feat(t["aatype"], t["between_segment_residues"])
    assert_equal(ours, ref["target_feat"], "target_feat")


def test_template_torsions_equal_reference_all_atom(ref_state):
    t = dr.to_torch(ref_state)
    prot = {"aatype": t["aatype"]}
    prot.update({k: t[k] for k in ("template_all_atom_positions", "template_all_atom_masks",
                                   "template_sum_probs")})
    # make_template_features expects the raw one-hot HHblits encoding; invert our mapping.
    ours_to_hh = torch.argsort(T._HHBLITS_TO_OURS)
    prot["template_aatype"] = torch.nn.functional.one_hot(ours_to_hh[t["template_aatype"]], 22)
    ours = T.make_template_features(prot)
    assert_equal(ours["template_aatype"], ref_state["template_aatype"], "template_aatype")
    ref = af2_all_atom.atom37_to_torsion_angles(
        ref_state["template_aatype"], ref_state["template_all_atom_positions"],
        ref_state["template_all_atom_masks"],
    )
    mask = np.asarray(ref["torsion_angles_mask"])
    assert_equal(ours["template_torsion_angles_mask"], mask, "torsion mask")
    assert mask.sum() > 100
    for name in ("torsion_angles_sin_cos", "alt_torsion_angles_sin_cos"):
        diff = (ours["template_" + name].numpy() - np.asarray(ref[name])) * mask[..., None]
        assert np.abs(diff).max() < 1e-5, name


# ----------------------------------------------------------------------------------------
# Per-recycle MSA transforms, with the reference's draws replayed


@pytest.fixture(scope="module")
def msa_chain(ref_state, cfg):
    """Each MSA transform applied by the reference and by us to the same input."""
    max_seq, max_extra = cfg.data.max_msa_clusters, cfg.data.max_extra_msa
    steps = {}
    np_backend.set_random_seed(7)
    ref = dict(ref_state)
    ours = dr.to_torch(ref_state)

    with dr.record_reference_draws() as draws:
        ref = af2_dt.sample_msa(max_seq, keep_extra=True)(ref)
    M.sample_msa(ours, max_seq, dr.ReplaySampler(draws))
    steps["sample_msa"] = (dict(ours), dict(ref))

    with dr.record_reference_draws() as draws:
        ref = af2_dt.make_masked_msa(dr.reference_config(cfg).data.common.masked_msa, 0.15)(ref)
    M.make_masked_msa(ours, cfg.data.masked_msa, 0.15, dr.ReplaySampler(draws))
    steps["make_masked_msa"] = (dict(ours), dict(ref))

    # From here on, deterministic: both sides start from the reference's state.
    ours = dr.to_torch(ref)
    ref = af2_dt.summarize_clusters()(af2_dt.nearest_neighbor_clusters()(ref))
    M.summarize_clusters(M.nearest_neighbor_clusters(ours, chunk_size=50))
    steps["clusters"] = (dict(ours), dict(ref))

    with dr.record_reference_draws() as draws:
        ref = af2_dt.crop_extra_msa(max_extra)(ref)
    M.crop_extra_msa(ours, max_extra, dr.ReplaySampler(draws))
    steps["crop_extra_msa"] = (dict(ours), dict(ref))

    ours = dr.to_torch(ref)
    ref = af2_dt.make_msa_feat()(ref)
    M.make_msa_feat(ours)
    steps["make_msa_feat"] = (ours, ref)
    return steps


def test_sample_msa_with_replayed_permutation(msa_chain, cfg):
    ours, ref = msa_chain["sample_msa"]
    for name in ("msa", "deletion_matrix", "msa_mask", "msa_row_mask"):
        assert_equal(ours[name], ref[name], name)
        assert_equal(ours["extra_" + name], ref["extra_" + name], "extra_" + name)
    assert ours["msa"].shape[0] == cfg.data.max_msa_clusters
    assert ours["extra_msa"].shape[0] == 300 - cfg.data.max_msa_clusters


def test_masked_msa_with_replayed_draws(msa_chain):
    ours, ref = msa_chain["make_masked_msa"]
    for name in ("msa", "true_msa", "bert_mask"):
        assert_equal(ours[name], ref[name], name)
    assert 0 < float(ours["bert_mask"].sum()) and not torch.equal(ours["msa"], ours["true_msa"])


def test_cluster_assignment_and_profiles_equal_reference(msa_chain):
    ours, ref = msa_chain["clusters"]
    assert_equal(ours["extra_cluster_assignment"], ref["extra_cluster_assignment"], "assignment")
    assert len(set(ours["extra_cluster_assignment"].tolist())) > 5
    assert_equal(ours["cluster_profile"], ref["cluster_profile"], "cluster_profile", TOL)
    assert_equal(ours["cluster_deletion_mean"], ref["cluster_deletion_mean"],
                 "cluster_deletion_mean", TOL)


def test_crop_extra_msa_with_replayed_permutation(msa_chain, cfg):
    ours, ref = msa_chain["crop_extra_msa"]
    for name in ("msa", "deletion_matrix", "msa_mask", "msa_row_mask"):
        assert_equal(ours["extra_" + name], ref["extra_" + name], "extra_" + name)
    assert ours["extra_msa"].shape[0] == cfg.data.max_extra_msa


def test_msa_feat_equals_reference(msa_chain):
    ours, ref = msa_chain["make_msa_feat"]
    assert ours["msa_feat"].shape[-1] == 49
    for name in ("msa_feat", "extra_has_deletion", "extra_deletion_value"):
        assert_equal(ours[name], ref[name], name, TOL)


def test_cluster_ties_go_to_first_centre_and_gaps_do_not_count():
    msa = torch.tensor([[0, 1, 21], [0, 1, 21], [5, 5, 5]])
    extra = torch.tensor([[0, 1, 3], [21, 21, 21], [5, 21, 21], [22, 22, 5]])
    prot = {"msa": msa, "msa_mask": torch.ones(3, 3), "extra_msa": extra,
            "extra_msa_mask": torch.ones(4, 3)}
    ref = af2_dt.nearest_neighbor_clusters()({k: v.numpy() for k, v in prot.items()})
    ours = M.nearest_neighbor_clusters(prot)["extra_cluster_assignment"]
    assert ours.tolist() == [0, 0, 2, 2]
    assert_equal(ours, ref["extra_cluster_assignment"], "assignment")


# ----------------------------------------------------------------------------------------
# Ground truth from a real structure, against the reference's JAX all_atom


@pytest.fixture(scope="module")
def structure():
    raw = dr.structure_raw_features()
    aatype = np.argmax(raw["aatype"], -1).astype(np.int32)
    ours = make_ground_truth_features(
        torch.from_numpy(aatype).long(), torch.from_numpy(raw["all_atom_positions"]),
        torch.from_numpy(raw["all_atom_mask"]),
    )
    return aatype, raw["all_atom_positions"], raw["all_atom_mask"], ours


def test_rigidgroup_frames_equal_reference(structure):
    aatype, pos, mask, ours = structure
    ref = af2_all_atom.atom37_to_frames(aatype, pos, mask)
    for name in ("rigidgroups_gt_exists", "rigidgroups_group_exists",
                 "rigidgroups_group_is_ambiguous"):
        assert_equal(ours[name], ref[name], name)
    exists = np.asarray(ref["rigidgroups_gt_exists"])[..., None]
    assert exists.sum() > 500
    for name in ("rigidgroups_gt_frames", "rigidgroups_alt_gt_frames"):
        diff = (ours[name].numpy() - np.asarray(ref[name])) * exists
        assert np.abs(diff[..., :9]).max() < 1e-5, name  # rotations
        assert np.abs(diff[..., 9:]).max() < 1e-4, name  # translations (Å)


def test_backbone_affine_and_chi_angles_equal_reference(structure):
    aatype, pos, mask, ours = structure
    frames = af2_all_atom.atom37_to_frames(aatype, pos, mask)
    backbone = np.asarray(frames["rigidgroups_gt_frames"])[:, 0]
    affine = quat_affine.QuatAffine.from_tensor(ours["backbone_affine_tensor"].numpy(),
                                                normalize=True)
    rot = np.stack([np.stack(row, -1) for row in affine.rotation], -2)
    bb_mask = np.asarray(frames["rigidgroups_gt_exists"])[:, 0]
    assert_equal(ours["backbone_affine_mask"], bb_mask, "backbone_affine_mask")
    sel = bb_mask > 0
    np.testing.assert_allclose(rot.reshape(-1, 9)[sel], backbone[sel, :9], atol=1e-5)
    np.testing.assert_allclose(np.stack(affine.translation, -1)[sel], backbone[sel, 9:],
                               atol=1e-4)

    tors = af2_all_atom.atom37_to_torsion_angles(aatype[None], pos[None], mask[None])
    chi_mask = np.asarray(tors["torsion_angles_mask"])[0, :, 3:]
    assert_equal(ours["chi_mask"], chi_mask, "chi_mask")
    ref_sin_cos = np.asarray(tors["torsion_angles_sin_cos"])[0, :, 3:]
    chi = ours["chi_angles"].numpy()
    ours_sin_cos = np.stack([np.sin(chi), np.cos(chi)], -1)
    np.testing.assert_allclose(ours_sin_cos * chi_mask[..., None],
                               ref_sin_cos * chi_mask[..., None], atol=1e-5)


def test_atom14_ground_truth_equals_reference(structure):
    aatype, pos, mask, ours = structure
    lookup = af2_dt.make_atom14_masks({"aatype": aatype})
    ref_pos = np.asarray(af2_all_atom.atom37_to_atom14(pos, lookup))
    ref_exists = np.asarray(af2_all_atom.atom37_to_atom14(mask, lookup))
    # AF2's get_alt_atom14 (sum over i of x[n, i] * renaming[n, i, j]) with its own
    # matrices; the function itself does not run on this fork's namedtuple Vecs.
    renaming = af2_all_atom.RENAMING_MATRICES[aatype]
    ref_pos = ref_pos * ref_exists[..., None]
    alt_pos = np.sum(ref_pos[:, :, None, :] * renaming[..., None], axis=1)
    alt_exists = np.sum(ref_exists[:, :, None] * renaming, axis=1)
    assert_equal(ours["atom14_gt_positions"], ref_pos, "atom14 pos")
    assert_equal(ours["atom14_gt_exists"], ref_exists, "atom14 exists")
    assert_equal(ours["atom14_alt_gt_positions"], alt_pos, "alt pos")
    assert_equal(ours["atom14_alt_gt_exists"], alt_exists, "alt exists")
    ambiguous = 1.0 - np.diagonal(renaming, axis1=-2, axis2=-1)
    assert_equal(ours["atom14_atom_is_ambiguous"], ambiguous, "ambiguous")
    assert ambiguous.sum() > 10  # myoglobin has ASP/GLU/PHE/TYR
    assert not torch.equal(ours["atom14_alt_gt_positions"], ours["atom14_gt_positions"])


def test_pseudo_beta_equals_reference(structure):
    aatype, pos, mask, ours = structure
    ref_pos, ref_mask = af2_dt.pseudo_beta_fn(aatype, pos, mask)
    assert_equal(ours["pseudo_beta"], ref_pos, "pseudo_beta")
    assert_equal(ours["pseudo_beta_mask"], ref_mask, "pseudo_beta_mask")


# ----------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda r: r.pop("msa"), "lack 'msa'"),
        (lambda r: r.__setitem__("msa", r["msa"][:, :-1]), "columns"),
        (lambda r: r.__setitem__("deletion_matrix_int", r["deletion_matrix_int"][:-1]),
         "deletion matrix"),
        (lambda r: r.__setitem__("msa", r["msa"] + 30), "HHblits ids"),
        (lambda r: r.__setitem__("seq_length", r["seq_length"] + 1), "seq_length"),
        (lambda r: r.__setitem__("aatype", r["aatype"][:, :20]), "21"),
        (lambda r: r.__setitem__("template_all_atom_positions",
                                 r["template_all_atom_positions"][:, :-1]),
         "template_all_atom_positions"),
    ],
)
def test_bad_raw_features_name_the_problem(raw, edit, message):
    bad = dict(raw)
    edit(bad)
    with pytest.raises(ValueError, match=message):
        T.squeeze_features(bad)


def test_torch_sampler_categorical_follows_the_probabilities():
    probs = torch.tensor([0.1, 0.0, 0.6, 0.3]).expand(20000, 4)
    draws = TorchSampler(3).categorical(probs)
    freq = torch.bincount(draws, minlength=4).float() / 20000
    assert freq[1] == 0
    assert torch.allclose(freq, probs[0], atol=0.015)
