"""The Python API: ``uni_fold.load_model`` / ``uni_fold.predict`` / ``Prediction``.

End to end with tiny random networks (Uni-Fold checkpoints, see ``inference_helpers``) on
a real protein with its real MSA (2Q2K chain A) and on real short sequences: nothing is
written, every field of the result is checked, ``save`` writes what ``predict-structure``
writes. Target parsing and model selection are checked on their own. (The same API with
AF2-format parameters is compared with the AF2 reference in ``test_predict.py``.)
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from inference_helpers import (
    MSAS,
    SHORT_CASES,
    per_residue_bfactors,
    query_of,
    read_json,
    sequence_of,
    tiny_checkpoint,
    write_fasta,
)
from shared import SHARED_DATA

import uni_fold
from data_pipeline import protein
from uni_fold import api
from uni_fold.inference import outputs
from uni_fold.inference.results import ModelPrediction

TINY = ("tiny_1_ptm", "tiny_2_ptm")
SEQ_2Q2K = query_of(MSAS / "2q2k_A" / "bfd_uniclust_hits.a3m")


@pytest.fixture(scope="module")
def params(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("api_params")
    for seed, name in enumerate(TINY):
        tiny_checkpoint(directory, name, seed + 10)
    return directory


@pytest.fixture(scope="module")
def models(params: Path) -> api.ModelRunner:
    return uni_fold.load_model(list(TINY), params, num_recycle=0, device="cpu")


def _snapshot(*folders: Path) -> dict[str, tuple[int, int]]:
    return {os.path.join(root, name): (os.stat(os.path.join(root, name)).st_size,
                                       os.stat(os.path.join(root, name)).st_mtime_ns)
            for folder in folders for root, _, names in os.walk(folder) for name in names}


# ------------------------------------------------------------------------ predict


@pytest.fixture(scope="module")
def prediction(models: api.ModelRunner, tmp_path_factory: pytest.TempPathFactory
               ) -> tuple[api.Prediction, bool]:
    """``predict`` on 2Q2K chain A with its alignments folder; whether it wrote nothing."""
    cwd = tmp_path_factory.mktemp("cwd")
    before = _snapshot(cwd, MSAS / "2q2k_A")
    old = os.getcwd()
    os.chdir(cwd)
    try:
        pred = uni_fold.predict(f">2q2k_A ParR\n{SEQ_2Q2K}\n", model=models,
                                msa=MSAS / "2q2k_A", seed=3)
    finally:
        os.chdir(old)
    return pred, before == _snapshot(cwd, MSAS / "2q2k_A") and not os.listdir(cwd)


def test_predict_writes_nothing_and_fills_every_field(
        prediction: tuple[api.Prediction, bool]) -> None:
    pred, wrote_nothing = prediction
    assert wrote_nothing
    n = len(SEQ_2Q2K)
    assert (pred.name, pred.description, pred.sequence) == ("2q2k_A", "2q2k_A ParR", SEQ_2Q2K)
    assert pred.rank_by == "ptm" and len(pred.models) == 2
    assert sorted(m.name for m in pred.models) == sorted(TINY)
    for m in pred.models:
        assert m.atom_positions.shape == (n, 37, 3) and m.atom_mask.shape == (n, 37)
        assert m.plddt.shape == (n,) and m.pae.shape == (n, n)
        assert np.isfinite(m.atom_positions).all() and np.ptp(m.plddt) > 0
        assert 0 < m.ptm < 1 and m.max_pae == pytest.approx(31.75)
        assert m.num_recycles == 0 and m.chunk_size is None
        assert set(m.timings) == {"process_features", "predict"}
    assert pred.models[0].ptm >= pred.models[1].ptm
    assert pred.ranking == {
        "ptm": {m.name: m.ptm for m in pred.models},
        "plddts": {m.name: m.mean_plddt for m in pred.models},
        "order": [m.name for m in pred.models],
    }
    assert pred.plddt is pred.best.plddt and pred.pae is pred.best.pae
    assert pred.ptm == pred.best.ptm
    assert pred.features["msa"].shape[0] == 20  # UniRef90 + BFD + MGnify rows, de-duplicated
    assert pred.msa_dir == str(MSAS / "2q2k_A")
    assert {"features", "total"} <= set(pred.timings)


def test_structures_from_the_api(prediction: tuple[api.Prediction, bool]) -> None:
    pred, _ = prediction
    best = pred.best
    prot = pred.protein
    assert sequence_of(prot) == SEQ_2Q2K
    np.testing.assert_array_equal(prot.atom_positions, best.atom_positions)
    np.testing.assert_array_equal(per_residue_bfactors(prot), best.plddt)
    for parsed in (protein.from_pdb_string(pred.to_pdb()),
                   protein.from_mmcif_string(pred.to_mmcif())):
        assert sequence_of(parsed) == SEQ_2Q2K
        diff = np.abs(parsed.atom_positions - best.atom_positions)[parsed.atom_mask > 0]
        assert diff.max() <= 5e-4 + 1e-6
        np.testing.assert_allclose(per_residue_bfactors(parsed), best.plddt, atol=5e-3 + 1e-6)
    second = pred.models[1]
    other = protein.from_pdb_string(pred.to_pdb(1))
    np.testing.assert_allclose(per_residue_bfactors(other), second.plddt, atol=5e-3 + 1e-6)
    assert pred.to_pdb(second.name) == pred.to_pdb(1)
    cif = pred.to_mmcif()
    assert "Uni-Fold" in cif and "_ma_qa_metric_local" in cif


def test_save_writes_what_the_cli_writes(prediction: tuple[api.Prediction, bool],
                                         tmp_path: Path) -> None:
    pred, _ = prediction
    folder = Path(pred.save(tmp_path / "2q2k_A"))
    assert outputs.is_finished(folder)
    assert read_json(folder / "ranking_debug.json") == pred.ranking
    assert sorted(os.listdir(folder / "msas")) == ["bfd_uniclust_hits.a3m", "mgnify_hits.sto",
                                                   "uniref90_hits.sto"]
    for rank, m in enumerate(pred.models):
        assert (folder / f"ranked_{rank}.pdb").read_text() == pred.to_pdb(rank)
        conf = read_json(folder / f"confidence_{m.name}.json")
        np.testing.assert_allclose(conf["pae"], m.pae, atol=5e-3 + 1e-6)
    with pytest.raises(FileExistsError):
        pred.save(folder)


def test_same_seed_same_result_other_seed_other_msa_sample(
        models: api.ModelRunner, prediction: tuple[api.Prediction, bool]) -> None:
    pred, _ = prediction
    again = api.predict(SEQ_2Q2K, models, MSAS / "2q2k_A", name="2q2k_A", seed=3,
                        features=pred.features)
    for a, b in zip(pred.models, again.models, strict=True):
        np.testing.assert_array_equal(a.atom_positions, b.atom_positions)
        assert a.seed == b.seed
    other = api.predict(SEQ_2Q2K, models, name="2q2k_A", seed=4, features=pred.features)
    assert [m.seed for m in other.models] != [m.seed for m in pred.models]
    assert not np.array_equal(other.model(TINY[0]).plddt, pred.model(TINY[0]).plddt)


def test_msa_modes_and_inputs(params: Path, tmp_path: Path) -> None:
    one = api.load_model(TINY[0], params / TINY[0], num_recycle=0)
    seq = query_of(SHORT_CASES["6A5J"])
    single = api.predict(seq, one, name="6A5J")
    assert single.features["msa"].shape[0] == 1 and single.msa_dir is None
    assert single.rank_by == "ptm" and single.name == "6A5J"
    from_a3m = api.predict(write_fasta(tmp_path / "q.fasta", {"6A5J": seq}), one,
                           msa=SHORT_CASES["6A5J"])
    assert from_a3m.features["msa"].shape[0] == 1 and from_a3m.name == "6A5J"
    by_plddt = api.predict(seq, one, rank_by="plddt", features=single.features)
    assert list(by_plddt.ranking) == ["plddts", "order"]
    with pytest.raises(ValueError, match="more than the maximum length 12"):
        api.predict(seq, one, max_length=12)
    with pytest.raises(ValueError, match="msa_mode must be one of"):
        api.predict(seq, one, msa_mode="colabfold")
    with pytest.raises(ValueError, match="needs msa="):
        api.predict(seq, one, msa_mode="precomputed")
    with pytest.raises(ValueError, match="msa_mode='search' needs at least one MSA database"):
        api.predict(seq, one, msa_mode="search")
    with pytest.raises(ValueError, match="features= are for a sequence of 13"):
        api.predict(SEQ_2Q2K, one, features=single.features)
    assert os.listdir(tmp_path) == ["q.fasta"]


# ------------------------------------------------------------------------ targets, models


def test_parse_target(tmp_path: Path) -> None:
    assert api.parse_target("mkt ay\nIAK") == api.Target("query", "MKTAYIAK", "query")
    assert api.parse_target("MKTAYIAK", name="my protein").name == "my_protein"
    fasta = write_fasta(tmp_path / "x.fasta", {"sp|P69905|HBA_HUMAN": "MVLSPADKTN"})
    assert api.parse_target(fasta) == api.parse_target(str(fasta))
    assert api.parse_target(fasta).name == "sp_P69905_HBA_HUMAN"
    with pytest.raises(ValueError, match=r"<sequence>:2:5: invalid residue letter '\*'"):
        api.parse_target("MKTA*")
    assert api.parse_target(">../../etc/passwd x\nMKV").name == "etc_passwd"
    with pytest.raises(ValueError, match="holds 2 records"):
        api.parse_target(">a\nMKT\n>b\nMKV\n")
    with pytest.raises(ValueError, match="empty"):
        api.parse_target("  \n ")
    with pytest.raises(ValueError, match="has no sequence"):
        api.parse_target(">")


def test_read_targets(tmp_path: Path) -> None:
    write_fasta(tmp_path / "a.fasta", {"one": "MKTAYIAK", "two": "GSHM"})
    write_fasta(tmp_path / "b.fa", {"three": "ACDEFGHIK"})
    (tmp_path / "jobs.csv").write_text("id,sequence\nfour,MKV\n\nfive,mkl\n")
    (tmp_path / "jobs.tsv").write_text("six\tMMM\n")
    fasta_dir = tmp_path / "dir"
    fasta_dir.mkdir()
    write_fasta(fasta_dir / "c.fasta", {"seven": "WWW"})
    targets = api.read_targets([tmp_path / "a.fasta", tmp_path / "b.fa", tmp_path / "jobs.csv",
                                tmp_path / "jobs.tsv", fasta_dir])
    assert [(t.name, t.sequence) for t in targets] == [
        ("one", "MKTAYIAK"), ("two", "GSHM"), ("three", "ACDEFGHIK"), ("four", "MKV"),
        ("five", "MKL"), ("six", "MMM"), ("seven", "WWW")]
    assert uni_fold.read_targets(tmp_path / "jobs.csv")[0].name == "four"
    (tmp_path / "bad.csv").write_text("id,sequence\nonly_an_id\n")
    with pytest.raises(ValueError, match="row 1 is not 'id,sequence'"):
        api.read_targets(tmp_path / "bad.csv")
    with pytest.raises(ValueError, match="two targets are named 'one'"):
        api.read_targets([tmp_path / "a.fasta", tmp_path / "a.fasta"])
    with pytest.raises(FileNotFoundError):
        api.read_targets(tmp_path / "missing.fasta")


def test_model_selection_and_missing_params(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    assert api.model_names("monomer") == [f"model_{i}" for i in range(1, 6)]
    assert api.model_names("monomer_ptm", ["1", 3]) == ["model_1_ptm", "model_3_ptm"]
    assert api.model_names("model_2_ptm") == ["model_2_ptm"]
    with pytest.raises(ValueError, match="model number 6"):
        api.model_names("monomer", ["6"])
    monkeypatch.setenv("UNI_FOLD_PARAMS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="params_model_1_ptm.npz not found") as err:
        uni_fold.load_model("model_1_ptm")
    assert "download-params" in str(err.value)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        uni_fold.load_model("model_1_ptm", tmp_path / "nowhere")
    (tmp_path / "params_model_1_ptm.npz").write_bytes(b"")
    with pytest.raises(ValueError, match="one model's weights"):
        uni_fold.load_model("monomer_ptm", tmp_path / "params_model_1_ptm.npz")
    with pytest.raises(ValueError, match="chunk_size"):
        api.ModelRunner({"m": None}, chunk_size=0)  # type: ignore[dict-item]


# ------------------------------------------------------------------------ relaxation


def test_relax_prediction_with_amber(tmp_path: Path) -> None:
    pytest.importorskip("openmm", reason="the relax extra (OpenMM, pdbfixer) is not installed")
    pytest.importorskip("pdbfixer", reason="the relax extra (OpenMM, pdbfixer) is not installed")
    villin = protein.from_pdb(SHARED_DATA / "structures" / "pdb" / "1vii.pdb")
    seq = sequence_of(villin)
    plddt = np.linspace(40, 95, villin.num_res, dtype=np.float32)
    models = [ModelPrediction(name, name, 0, villin.atom_positions + shift, villin.atom_mask,
                              plddt + shift, ptm=0.5 + shift / 10)
              for name, shift in (("a", 0.0), ("b", 1.0))]
    pred = api.Prediction("1vii", "1vii", seq, models, rank_by="ptm")
    timings = api.relax_prediction(pred, "best")
    assert list(timings) == ["b"] and list(pred.relaxed) == ["b"]
    relaxed = protein.from_pdb_string(pred.relaxed["b"])
    assert sequence_of(relaxed) == seq
    np.testing.assert_allclose(per_residue_bfactors(relaxed), plddt + 1.0, atol=5e-3)
    heavy = (villin.atom_mask > 0) & (relaxed.atom_mask > 0)
    rmsd = np.sqrt(((relaxed.atom_positions - (villin.atom_positions + 1.0))[heavy] ** 2)
                   .sum(-1).mean())
    assert rmsd < 1.0, rmsd
    folder = Path(pred.save(tmp_path / "1vii", plots=False))
    assert (folder / "relaxed_b.pdb").read_text() == pred.relaxed["b"]
    assert (folder / "ranked_0.pdb").read_text() == protein.to_pdb(relaxed)
    assert (folder / "ranked_1.pdb").read_text() == pred.to_pdb("a")
    with pytest.raises(ValueError, match="'best' or 'all'"):
        api.relax_prediction(pred, "top")


def test_amber_without_the_relax_extra_is_refused(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from uni_fold import cli

    monkeypatch.setitem(sys.modules, "uni_fold.relax.relax", None)  # import fails
    pred = api.Prediction("x", "x", "G", [ModelPrediction(
        "m", "m", 0, np.zeros((1, 37, 3), np.float32), np.ones((1, 37), np.float32),
        np.ones(1, np.float32))])
    with pytest.raises(RuntimeError, match="pip install 'uni-fold\\[relax\\]'"):
        api.relax_prediction(pred)
    with pytest.raises(cli.UsageError, match="--amber"):
        cli.check_relax_available()
    fasta = write_fasta(tmp_path / "q.fasta", {"6A5J": query_of(SHORT_CASES["6A5J"])})
    assert cli.main([str(fasta), "-o", str(tmp_path / "out"), "--msa-mode", "single_sequence",
                     "--amber", "--params-dir", str(tmp_path), "--model-preset", "x"]) == 2
    assert "--amber: Amber relaxation needs OpenMM" in caplog.text
    assert not (tmp_path / "out").exists()
