"""Result types, ranking, the target directory layout and the plots (no network runs here).

Predictions are built from a real structure (myoglobin, PDB 102M chain A) with its
coordinates moved per model, so the files written can be read back and compared atom by
atom; the confidences are arrays chosen to make the ranking unambiguous.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from inference_helpers import MSAS, assert_png, per_residue_bfactors, read_json, sequence_of
from shared import SHARED_DATA

from data_pipeline import features as feature_io
from data_pipeline import protein
from data_pipeline.parsers import parse_a3m
from uni_fold.inference import outputs, plots
from uni_fold.inference.results import (
    ModelPrediction,
    Prediction,
    default_rank_by,
    rank_predictions,
)


@pytest.fixture(scope="module")
def myoglobin() -> protein.Protein:
    return protein.from_mmcif(SHARED_DATA / "structures" / "mmcif" / "102m.cif", "A")


def _prediction_of(prot: protein.Protein, name: str, shift: float, plddt_base: float,
                   ptm: float | None, seed: int = 0) -> ModelPrediction:
    n = prot.num_res
    ca = prot.atom_positions[:, 1]
    dist = np.linalg.norm(ca[:, None] - ca[None], axis=-1).astype(np.float32)
    plddt = np.clip(plddt_base + 20 * np.sin(np.arange(n) / 7.0), 0, 100).astype(np.float32)
    return ModelPrediction(
        name=name, model_name=name, seed=seed,
        atom_positions=prot.atom_positions + np.float32(shift), atom_mask=prot.atom_mask,
        plddt=plddt, pae=None if ptm is None else np.minimum(dist / 2, 31.75),
        max_pae=None if ptm is None else 31.75, ptm=ptm, num_recycles=3,
        timings={"process_features": 0.1, "predict": 1.0},
    )


@pytest.fixture(scope="module")
def raw_features(myoglobin: protein.Protein) -> dict:
    msa = parse_a3m((MSAS / "102m_A" / "non_pairing.a3m").read_text())
    sequence = sequence_of(myoglobin)
    assert msa.sequences[0] == sequence
    return {**feature_io.make_sequence_features(sequence, "102m_A", len(sequence)),
            **feature_io.make_msa_features([msa])}


@pytest.fixture()
def prediction(myoglobin: protein.Protein, raw_features: dict) -> Prediction:
    models = [
        _prediction_of(myoglobin, "model_1_ptm", 0.0, 60.0, ptm=0.55),
        _prediction_of(myoglobin, "model_2_ptm", 1.5, 80.0, ptm=0.45),
        _prediction_of(myoglobin, "model_3_ptm", -2.0, 70.0, ptm=0.65),
    ]
    return Prediction(name="102m_A", description="102m_A myoglobin",
                      sequence=sequence_of(myoglobin), models=models, rank_by="ptm",
                      features=raw_features, timings={"features": 0.5},
                      msa_dir=str(MSAS / "102m_A"))


# ---------------------------------------------------------------------------- ranking


def test_ranking_by_ptm_and_by_plddt(prediction: Prediction) -> None:
    assert [m.name for m in prediction.models] == ["model_3_ptm", "model_1_ptm", "model_2_ptm"]
    ranking = prediction.ranking
    assert list(ranking) == ["ptm", "plddts", "order"]
    assert ranking["order"] == ["model_3_ptm", "model_1_ptm", "model_2_ptm"]
    assert ranking["ptm"] == {"model_1_ptm": 0.55, "model_2_ptm": 0.45, "model_3_ptm": 0.65}
    by_plddt = Prediction(name="x", description="x", sequence=prediction.sequence,
                          models=list(prediction.models), rank_by="plddt")
    assert list(by_plddt.ranking) == ["plddts", "order"]  # AF2's ranking_debug.json keys
    means = by_plddt.ranking["plddts"]
    assert by_plddt.ranking["order"] == sorted(means, key=means.get, reverse=True)
    assert by_plddt.best.name == "model_2_ptm"
    assert by_plddt.plddt is by_plddt.best.plddt and by_plddt.ptm == 0.45


def test_rank_ties_keep_order_and_ptm_needs_pae_head(myoglobin: protein.Protein) -> None:
    a = _prediction_of(myoglobin, "a", 0, 50.0, ptm=0.5)
    b = _prediction_of(myoglobin, "b", 0, 50.0, ptm=0.5)
    assert [m.name for m in rank_predictions([a, b], "ptm")] == ["a", "b"]
    assert [m.name for m in rank_predictions([b, a], "plddt")] == ["b", "a"]
    no_pae = _prediction_of(myoglobin, "model_1", 0, 50.0, ptm=None)
    with pytest.raises(ValueError, match="no pTM"):
        Prediction(name="x", description="x", sequence="A", models=[no_pae], rank_by="ptm")
    with pytest.raises(ValueError, match="rank_by"):
        Prediction(name="x", description="x", sequence="A", models=[no_pae], rank_by="iptm")
    assert default_rank_by(["model_1_ptm", "model_2_ptm"]) == "ptm"
    assert default_rank_by(["model_1_ptm", "model_2"]) == "plddt"


def test_model_lookup(prediction: Prediction) -> None:
    assert prediction.model(0) is prediction.best
    assert prediction.model("model_2_ptm").ptm == 0.45
    with pytest.raises(KeyError, match="model_9"):
        prediction.model("model_9")
    with pytest.raises(IndexError):
        prediction.model(3)


def test_protein_round_trips_through_pdb_and_mmcif(prediction: Prediction,
                                                   myoglobin: protein.Protein) -> None:
    best = prediction.best
    from_pdb = protein.from_pdb_string(prediction.to_pdb())
    from_cif = protein.from_mmcif_string(prediction.to_mmcif())
    for prot in (from_pdb, from_cif):
        assert sequence_of(prot) == prediction.sequence
        np.testing.assert_array_equal(prot.residue_index, np.arange(1, prot.num_res + 1))
        np.testing.assert_array_equal(prot.atom_mask, myoglobin.atom_mask)
        diff = np.abs(prot.atom_positions - best.atom_positions)[prot.atom_mask > 0]
        assert diff.max() <= 5e-4 + 1e-6
        np.testing.assert_allclose(per_residue_bfactors(prot), best.plddt, atol=5e-3 + 1e-6)


# ---------------------------------------------------------------------------- files


def test_write_prediction_layout(prediction: Prediction, tmp_path) -> None:
    target = tmp_path / "out" / "102m_A"
    assert outputs.write_prediction(prediction, target) == str(target)
    assert outputs.is_finished(target)
    names = sorted(os.listdir(target))
    expected = {"ranking_debug.json", "timings.json", "features.npz", "msas", "plddt.png",
                "pae.png", "msa_coverage.png"}
    for m in prediction.models:
        expected |= {f"unrelaxed_{m.name}.pdb", f"confidence_{m.name}.json"}
    expected |= {f"ranked_{i}.{ext}" for i in range(3) for ext in ("pdb", "cif")}
    assert set(names) == expected
    assert os.listdir(tmp_path / "out") == ["102m_A"]  # no temporary leftovers
    # The MSA files the pipeline reads (both a3m files), not the query FASTA beside them.
    assert sorted(os.listdir(target / "msas")) == ["non_pairing.a3m", "pairing.a3m"]
    assert (target / "msas" / "pairing.a3m").read_bytes() == \
        (MSAS / "102m_A" / "pairing.a3m").read_bytes()

    ranking = read_json(target / "ranking_debug.json")
    assert ranking == json.loads(json.dumps(prediction.ranking))
    for rank, name in enumerate(ranking["order"]):
        m = prediction.model(name)
        ranked = protein.from_pdb(target / f"ranked_{rank}.pdb")
        unrelaxed = protein.from_pdb(target / f"unrelaxed_{name}.pdb")
        ranked_cif = protein.from_mmcif(target / f"ranked_{rank}.cif")
        conf = read_json(target / f"confidence_{name}.json")
        assert set(conf) == {"model_name", "seed", "num_recycles", "plddt", "mean_plddt", "ptm",
                             "max_pae", "pae"}
        plddt = np.array(conf["plddt"])
        assert plddt.shape == (len(prediction.sequence),)
        np.testing.assert_allclose(plddt, m.plddt, atol=5e-3 + 1e-6)
        pae = np.array(conf["pae"])
        assert pae.shape == (len(prediction.sequence),) * 2
        np.testing.assert_allclose(pae, m.pae, atol=5e-3 + 1e-6)
        assert conf["ptm"] == pytest.approx(m.ptm) and conf["max_pae"] == 31.75
        for prot in (ranked, unrelaxed):  # PDB B-factors: pLDDT to 2 decimals, as the JSON
            np.testing.assert_array_equal(per_residue_bfactors(prot), plddt.astype(np.float32))
        np.testing.assert_allclose(per_residue_bfactors(ranked_cif), m.plddt, atol=5e-4 + 1e-5)
        for prot in (ranked, unrelaxed, ranked_cif):
            diff = np.abs(prot.atom_positions - m.atom_positions)[prot.atom_mask > 0]
            assert diff.max() <= 5e-4 + 1e-6
    timings = read_json(target / "timings.json")
    assert timings == {"features": 0.5}
    feats = feature_io.load_features(target / "features.npz")
    assert set(feats) == set(prediction.features)
    np.testing.assert_array_equal(feats["msa"], prediction.features["msa"])
    for png in ("plddt.png", "pae.png", "msa_coverage.png"):
        assert_png(target / png)


def test_existing_directory_needs_overwrite(prediction: Prediction, tmp_path) -> None:
    target = tmp_path / "102m_A"
    target.mkdir()
    (target / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="overwrite"):
        outputs.write_prediction(prediction, target)
    assert os.listdir(target) == ["mine.txt"] and not outputs.is_finished(target)
    outputs.write_prediction(prediction, target, overwrite=True, plots=False)
    assert outputs.is_finished(target) and not (target / "mine.txt").exists()
    assert not (target / "plddt.png").exists()
    assert os.listdir(tmp_path) == ["102m_A"]


def test_failure_while_writing_leaves_nothing(prediction: Prediction, tmp_path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(plots, "plot_pae", broken)
    with pytest.raises(OSError, match="disk full"):
        outputs.write_prediction(prediction, tmp_path / "102m_A")
    assert os.listdir(tmp_path) == []
    # An earlier complete result survives a failed overwrite.
    monkeypatch.undo()
    outputs.write_prediction(prediction, tmp_path / "102m_A", plots=False)
    before = sorted(os.listdir(tmp_path / "102m_A"))
    monkeypatch.setattr(plots, "plot_pae", broken)
    with pytest.raises(OSError):
        outputs.write_prediction(prediction, tmp_path / "102m_A", overwrite=True)
    assert sorted(os.listdir(tmp_path / "102m_A")) == before
    assert os.listdir(tmp_path) == ["102m_A"]


def test_relaxed_structures_are_ranked(prediction: Prediction, tmp_path) -> None:
    best = prediction.best
    moved = protein.from_pdb_string(prediction.to_pdb())
    moved = protein.Protein(**{**moved.__dict__, "atom_positions": moved.atom_positions + 3.0})
    prediction.relaxed[best.name] = protein.to_pdb(moved)
    target = tmp_path / "t"
    prediction.save(target, plots=False)
    assert (target / f"relaxed_{best.name}.pdb").is_file()
    ranked = protein.from_pdb(target / "ranked_0.pdb")
    diff = ranked.atom_positions - best.atom_positions
    np.testing.assert_allclose(diff[ranked.atom_mask > 0], 3.0, atol=1e-3)
    ranked_cif = protein.from_mmcif(target / "ranked_0.cif")
    np.testing.assert_allclose(ranked_cif.atom_positions, ranked.atom_positions, atol=1e-3)
    unrelaxed = protein.from_pdb(target / f"unrelaxed_{best.name}.pdb")
    assert np.abs(unrelaxed.atom_positions - best.atom_positions)[unrelaxed.atom_mask > 0].max() \
        < 1e-3


# ---------------------------------------------------------------------------- plots


def test_msa_coverage_of_a_real_msa(raw_features: dict) -> None:
    msa = raw_features["msa"]
    image, coverage = plots.msa_coverage(msa)
    assert image.shape == msa.shape
    np.testing.assert_array_equal(coverage, (msa != plots.GAP_ID).sum(axis=0))
    identity_per_row = np.nanmax(image, axis=1)
    assert identity_per_row[0] == 1.0  # the query
    assert np.all(np.diff(identity_per_row[~np.isnan(identity_per_row)]) <= 0)
    np.testing.assert_array_equal(np.isnan(image).sum(), (msa == plots.GAP_ID).sum())


def test_plots_are_valid_pngs(prediction: Prediction, raw_features: dict, tmp_path) -> None:
    plddts = {m.name: m.plddt for m in prediction.models}
    assert_png(Path(plots.plot_plddt(plddts, tmp_path / "a.png")))
    paes = {m.name: m.pae for m in prediction.models}
    three_wide, _ = assert_png(Path(plots.plot_pae(paes, tmp_path / "b.png", 31.75)))
    one_wide, _ = assert_png(Path(plots.plot_pae({"m": prediction.best.pae}, tmp_path / "c.png")))
    assert three_wide > 2 * one_wide  # one panel per model
    assert_png(Path(plots.plot_msa_coverage(raw_features["msa"], tmp_path / "d.png")))
    assert sorted(os.listdir(tmp_path)) == ["a.png", "b.png", "c.png", "d.png"]


def test_plot_inputs_are_checked(tmp_path) -> None:
    with pytest.raises(ValueError, match="at least one"):
        plots.plot_plddt({}, tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"\[N_res, N_res\]"):
        plots.plot_pae({"m": np.zeros((3, 4))}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="msa must be"):
        plots.msa_coverage(np.zeros(5))
    assert not os.listdir(tmp_path)
