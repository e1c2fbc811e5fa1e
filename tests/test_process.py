"""process_features end to end: parity with the AF2 reference's feature processing
(``alphafold.model.features.np_example_to_features``, run live) on real raw features,
statistics of the random parts, determinism, the schema, and training crops.

Parity: the reference's random draws are recorded and replayed into our pipeline, after
which every processed feature must equal the reference's (integers exactly, reals to
1e-6). Without replay, the deterministic features must still be equal exactly.
"""
from __future__ import annotations

import dataclasses

import data_reference as dr
import numpy as np
import pytest
import torch
from alphafold.common import residue_constants as af2_rc

from uni_fold.config import model_config
from uni_fold.data import FEATURES, check_batch, feature_names, process_features
from uni_fold.data.sampling import TorchSampler

TOL = 1e-6
#: The reference's seed for its crop/template op; meaningless outside TF, not produced.
REFERENCE_ONLY = {"random_crop_to_size_seed"}


def _config(preset: str, **data):
    cfg = model_config(preset)
    for key, value in data.items():
        if key == "num_recycle":
            cfg.model.num_recycle = value
        else:
            setattr(cfg.data, key, value)
    return cfg


PARITY_CASES = {
    # model_1: templates on, clusters reduced by max_templates, 3 recycling slices.
    "templates": (dict(max_rows=300, max_templates=4),
                  ("model_1_ptm", dict(max_msa_clusters=36, max_extra_msa=100, num_recycle=2))),
    # model_3: no templates; the MSA is smaller than max_msa_clusters (no extra rows).
    "small_msa": (dict(max_rows=40, max_templates=4),
                  ("model_3", dict(max_msa_clusters=64, max_extra_msa=32, num_recycle=1))),
    # Two ensemble members without resampling; templates cut from 4 to 2 and padded to 3.
    "ensemble": (dict(max_rows=120, max_templates=4),
                 ("model_2", dict(max_msa_clusters=20, max_extra_msa=200, max_templates=2,
                                  resample_msa_in_recycling=False, num_ensemble=2,
                                  num_recycle=1))),
}


def _compare(ours: dict[str, torch.Tensor], ref: dict[str, np.ndarray]) -> dict[str, float]:
    missing = set(ref) - set(ours) - REFERENCE_ONLY
    assert not missing, f"features the reference has and we lack: {sorted(missing)}"
    errors = {}
    for name in sorted(set(ref) - REFERENCE_ONLY):
        a, b = ours[name].numpy(), np.asarray(ref[name])
        assert a.shape == b.shape, f"{name}: shape {a.shape} != reference {b.shape}"
        if b.dtype.kind in "iu":
            np.testing.assert_array_equal(a, b, err_msg=name)
            errors[name] = 0.0
        else:
            errors[name] = float(np.abs(a - b).max()) if a.size else 0.0
            assert errors[name] <= TOL, f"{name}: max error {errors[name]:.3g}"
    return errors


@pytest.mark.parametrize("case", sorted(PARITY_CASES))
def test_batch_equals_reference_with_replayed_draws(case):
    raw_args, (preset, data) = PARITY_CASES[case]
    raw = dr.raw_features(**raw_args)
    cfg = _config(preset, **data)
    ref, draws = dr.reference_process(raw, cfg, seed=11)
    sampler = dr.ReplaySampler(draws)
    ours = process_features(raw, cfg, "predict", sampler=sampler)
    assert sampler.exhausted(), "our pipeline made fewer random draws than the reference"
    errors = _compare(ours, ref)
    assert max(errors.values()) <= TOL
    if case == "ensemble":
        assert ours["aatype"].shape[0] == 2 and ours["template_mask"][0].tolist() == [1, 1]
    if case == "templates":
        assert ours["msa_feat"].shape[:2] == (3, 32)  # 36 - 4 templates
        assert float(ours["extra_msa_row_mask"].sum()) == 3 * 100


def test_deterministic_features_equal_reference_without_replay():
    raw = dr.raw_features(max_rows=300, max_templates=4)
    cfg = _config("model_1_ptm", max_msa_clusters=36, max_extra_msa=100, num_recycle=1)
    ref, _ = dr.reference_process(raw, cfg, seed=5)
    ours = process_features(raw, cfg, "predict", seed=5)
    deterministic = [
        "aatype", "target_feat", "residue_index", "seq_length", "seq_mask", "is_distillation",
        "msa_mask", "msa_row_mask", "extra_msa_mask", "extra_msa_row_mask",
        "atom14_atom_exists", "residx_atom14_to_atom37", "residx_atom37_to_atom14",
        "atom37_atom_exists",
    ] + [k for k in ref if k.startswith("template_")]
    for name in deterministic:
        np.testing.assert_array_equal(ours[name].numpy(), ref[name], err_msg=name)
    # The query row of the cluster centres is always the query.
    np.testing.assert_array_equal(ours["true_msa"][:, 0].numpy(), ref["true_msa"][:, 0])


def test_same_seed_same_batch_other_seed_other_msa_sample():
    raw = dr.raw_features(max_rows=300, max_templates=4)
    cfg = _config("model_1_ptm", max_msa_clusters=36, max_extra_msa=100, num_recycle=1)
    a = process_features(raw, cfg, seed=1)
    b = process_features(raw, cfg, seed=1)
    c = process_features(raw, cfg, seed=2)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert not torch.equal(a["true_msa"][:, 1:], c["true_msa"][:, 1:])
    assert not torch.equal(a["bert_mask"], c["bert_mask"])
    # resample_msa_in_recycling: each recycling slice has its own sample.
    assert not torch.equal(a["true_msa"][0, 1:], a["true_msa"][1, 1:])


def test_batch_matches_the_schema_table():
    raw = dr.raw_features(max_rows=300, max_templates=4)
    cfg = _config("model_1_ptm", max_msa_clusters=36, max_extra_msa=100, num_recycle=2)
    batch = process_features(raw, cfg, seed=0)
    assert list(batch) == feature_names(["core", "template"])
    sizes = check_batch(batch)
    assert sizes == {"N_res": 73, "N_clust": 32, "N_extra": 100, "N_templ": 4,
                     "num_slices": 3}
    bad = dict(batch, msa_mask=batch["msa_mask"][:, :5])
    with pytest.raises(ValueError, match="msa_mask"):
        check_batch(bad)
    with pytest.raises(ValueError, match="dtype"):
        check_batch(dict(batch, aatype=batch["aatype"].int()))
    for name, value in batch.items():
        assert torch.isfinite(value.float()).all(), f"{name} has NaN or inf"
    no_templates = process_features(raw, _config("model_3", max_msa_clusters=36), seed=0)
    assert not any(k.startswith("template_") for k in no_templates)
    # Templates on but no hits: empty templates, padded and masked out.
    no_hits = dr.raw_features(hhr=None, max_rows=50)
    empty = process_features(no_hits, _config("model_1", max_msa_clusters=36), seed=0)
    assert check_batch(empty)["N_templ"] == 4 and not empty["template_mask"].any()


# ----------------------------------------------------------------------------------------
# Statistics of the masked MSA (Suppl. Section 1.9.9)


def _masked_msa_statistics(batch, profile: np.ndarray) -> dict[str, tuple[float, float]]:
    """(observed, expected) per statistic, with 5-sigma tolerances checked by caller."""
    bert = batch["bert_mask"].numpy() > 0
    row_mask = batch["msa_mask"].numpy() > 0
    true_msa = batch["true_msa"].numpy()
    corrupted = batch["msa_feat"].numpy()[..., :23].argmax(-1)
    n = int(row_mask.sum())
    frac = bert[row_mask].mean()
    stats = {"mask_fraction": (frac, 0.15, 5 * np.sqrt(0.15 * 0.85 / n))}
    # Per masked entry, the replacement's distribution over the 23 classes.
    cols = np.nonzero(bert)[-1]
    probs = 0.1 * np.array([0.05] * 20 + [0.0, 0.0]) + 0.1 * profile[cols]
    probs = probs + 0.1 * np.eye(22)[true_msa[bert]]
    probs = np.concatenate([probs, np.full((len(probs), 1), 0.7)], axis=-1)
    observed = np.bincount(corrupted[bert], minlength=23)
    expected = probs.sum(0)
    sigma = np.sqrt((probs * (1 - probs)).sum(0))
    for c in (0, 5, 7, 10, 20, 21, 22):  # A, Q, G, L, X, gap, mask token
        stats[f"class_{c}"] = (observed[c], expected[c], 5 * sigma[c] + 1)
    same = probs[np.arange(len(probs)), true_msa[bert]]
    stats["unchanged"] = ((corrupted[bert] == true_msa[bert]).sum(), same.sum(),
                          5 * np.sqrt((same * (1 - same)).sum()))
    return stats


def test_masked_msa_statistics_match_af2():
    raw = dr.raw_features(hhr=None, max_rows=1024)
    cfg = _config("model_3", max_msa_clusters=512, max_extra_msa=128, num_recycle=3)
    hh_to_ours = np.array(af2_rc.MAP_HHBLITS_AATYPE_TO_OUR_AATYPE)
    profile = np.eye(22)[hh_to_ours[raw["msa"]]].mean(0)  # [N_res, 22] over all rows
    ours = process_features(raw, cfg, seed=0)
    ref, _ = dr.reference_process(raw, cfg, seed=0)
    ref = {k: torch.from_numpy(np.asarray(v)) for k, v in ref.items() if k != "sequence"}
    for name, batch in (("ours", ours), ("reference", ref)):
        for stat, (obs, exp, tol) in _masked_msa_statistics(batch, profile).items():
            assert abs(obs - exp) <= tol, f"{name} {stat}: observed {obs}, expected {exp}"


# ----------------------------------------------------------------------------------------
# Training mode: crops, padding, ground truth


@pytest.fixture(scope="module")
def structure_raw():
    """102m chain A: real MSA and coordinates; its own structure as a synthetic template."""
    raw = dr.structure_raw_features(max_rows=64)
    hh_ids = np.array([af2_rc.HHBLITS_AA_TO_ID[c] for c in raw["sequence"][0].decode()])
    raw["template_aatype"] = np.eye(22, dtype=np.float32)[hh_ids][None]
    raw["template_all_atom_positions"] = raw["all_atom_positions"][None]
    raw["template_all_atom_masks"] = raw["all_atom_mask"][None]
    raw["template_sum_probs"] = np.ones((1, 1), np.float32)
    raw["template_domain_names"] = np.array([b"102m_A"], dtype=object)
    return raw


@pytest.fixture(scope="module")
def train_cfg():
    return _config("model_1_ptm", max_msa_clusters=20, max_extra_msa=40, max_templates=2,
                   num_recycle=2)


def test_train_crop_keeps_every_feature_aligned(structure_raw, train_cfg):
    full = process_features(structure_raw, train_cfg, "eval", seed=3)
    crop = process_features(structure_raw, train_cfg, "train", seed=3, crop_size=48)
    assert set(feature_names(["core", "template", "ground_truth", "train"])) == set(crop)
    sizes = check_batch(crop)
    assert sizes["N_res"] == 48 and sizes["num_slices"] == 3
    start = int(crop["residue_index"][0, 0] - full["residue_index"][0, 0])
    assert 0 <= start <= 154 - 48
    # Resampled per slice with other draws in the two runs: checked through the query row.
    resampled = {"msa_feat", "msa_mask", "bert_mask", "true_msa", "extra_msa",
                 "extra_msa_mask", "extra_has_deletion", "extra_deletion_value"}
    for name, spec in FEATURES.items():
        if name not in full or "N_res" not in spec.shape or name in resampled:
            continue
        axis = 1 + spec.shape.index("N_res")
        expected = full[name].narrow(axis, start, 48)
        assert torch.equal(crop[name], expected), name
    assert crop["seq_length"].tolist() == [48] * 3
    # MSA features are cropped on the same columns: row 0 is the query.
    assert torch.equal(crop["true_msa"][:, 0], crop["aatype"])
    # Every family lines up: the template is the structure itself.
    assert torch.equal(crop["template_pseudo_beta"][:, 0], crop["pseudo_beta"])
    assert torch.equal(crop["template_all_atom_positions"][:, 0], crop["all_atom_positions"])
    recycles = crop["num_iter_recycling"]
    assert (recycles == recycles[0]).all() and 0 <= int(recycles[0]) <= 2
    assert set(crop["use_clamped_fape"].tolist()) <= {0.0, 1.0}
    assert crop["template_mask"][0].tolist() == [1.0, 0.0]


def test_train_pads_short_chains_to_the_crop_size(structure_raw, train_cfg):
    batch = process_features(structure_raw, train_cfg, "train", seed=0, crop_size=200)
    check_batch(batch)
    assert batch["aatype"].shape == (3, 200)
    assert batch["seq_mask"].sum(-1).tolist() == [154.0] * 3
    assert batch["seq_length"].tolist() == [154] * 3
    for name in ("msa_feat", "msa_mask", "atom14_gt_exists", "backbone_affine_mask"):
        spec = FEATURES[name]
        tail = batch[name].narrow(1 + spec.shape.index("N_res"), 154, 46)
        assert not tail.any(), f"{name} is not zero-padded"
    assert float(batch["backbone_affine_mask"].sum()) == 3 * 154


def test_train_crops_differ_by_seed_and_are_reproducible(structure_raw, train_cfg):
    starts = set()
    for seed in range(6):
        batch = process_features(structure_raw, train_cfg, "train", seed=seed, crop_size=32)
        starts.add(int(batch["residue_index"][0, 0]))
    assert len(starts) > 1
    a = process_features(structure_raw, train_cfg, "train", seed=4, crop_size=32)
    b = process_features(structure_raw, train_cfg, "train", seed=4, crop_size=32)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_predict_drops_ground_truth_and_subsampling_keeps_real_templates(structure_raw):
    cfg = _config("model_1_ptm", max_msa_clusters=20, max_extra_msa=40, num_recycle=0)
    batch = process_features(structure_raw, cfg, "predict", seed=0)
    assert not set(feature_names(["ground_truth", "train"])) & set(batch)
    sub = dataclasses.replace(cfg.data, subsample_templates=True)
    kept = {
        int(process_features(structure_raw, sub, "eval", num_recycle=0, seed=s)[
            "template_mask"].sum())
        for s in range(8)
    }
    assert kept == {0, 1}


# ----------------------------------------------------------------------------------------
# Bad input


def test_bad_mode_config_and_missing_structure(structure_raw):
    raw = dr.raw_features(hhr=None, max_rows=20)
    cfg = _config("model_3", max_msa_clusters=8, max_extra_msa=8, num_recycle=0)
    with pytest.raises(ValueError, match="mode"):
        process_features(raw, cfg, "training")
    with pytest.raises(ValueError, match="all_atom_positions"):
        process_features(raw, cfg, "train")
    with pytest.raises(ValueError, match="num_recycle"):
        process_features(raw, cfg.data)
    with pytest.raises(TypeError, match="model_config"):
        process_features(raw, {"max_msa_clusters": 8})
    with pytest.raises(ValueError, match="max_msa_clusters"):
        process_features(raw, _config("model_1", max_msa_clusters=4, max_templates=4))
    with pytest.raises(ValueError, match="crop_size"):
        process_features(structure_raw, cfg, "train", crop_size=0)
    with pytest.raises(ValueError, match="seed"):
        TorchSampler("7")
