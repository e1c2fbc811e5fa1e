"""``predict-structure`` end to end, and the runner's memory handling.

1. AF2-format parameters (random, with the reference's own shapes: ``model_3_ptm``, 2
   Evoformer and 1 extra-MSA blocks, no recycling - recycling parity is
   ``test_alphafold.py``'s) and a real protein with its real MSA (2Q2K chain A: UniRef90,
   MGnify and BFD hits): every output file is checked, and the coordinates, pLDDT, PAE and
   pTM equal the AF2 reference (``alphafold-colabfold``, JAX) run live on the same
   processed features, through the CLI and through the Python API.
2. Command-line flows with tiny random networks (Uni-Fold checkpoints) on real sequences:
   batches that go on past a failed target, skipping finished targets, the bad inputs
   that must exit with status 2, CSV input, seeds, templates, search mode with jackhmmer
   on a real sequence database, server mode against a stand-in, the bundled example.
3. The chunk-size choice and the retry after running out of memory.
"""
from __future__ import annotations

import http.server
import io
import json
import logging
import os
import tarfile
import threading
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
import torch
from inference_helpers import (
    MSAS,
    SHORT_CASES,
    assert_png,
    per_residue_bfactors,
    query_of,
    read_json,
    sequence_of,
    short_alignments,
    tiny_checkpoint,
    write_fasta,
)
from shared import REPO_ROOT, SHARED_DATA

from data_pipeline import features as feature_io
from data_pipeline import protein
from uni_fold import api, cli
from uni_fold.config import model_config
from uni_fold.data import process_features
from uni_fold.inference import runner as runner_mod

TINY = ("tiny_1_ptm", "tiny_2_ptm")
PAE_HEAD_SCALE = 0.05  # keeps the random PAE logits off a single bin (a flat PAE)


def _run(*argv: object) -> int:
    return cli.main([str(a) for a in argv] + ["--no-progress"])


# -------------------------------------------------------------------- AF2 parameters


@pytest.fixture(scope="module")
def af2(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Random AF2 parameters, one ``predict-structure`` run, the AF2 reference's outputs."""
    import af2_parity

    tmp = tmp_path_factory.mktemp("af2")
    sequence = query_of(MSAS / "2q2k_A" / "bfd_uniclust_hits.a3m")
    fasta = write_fasta(tmp / "query.fasta", {"2q2k_A": sequence})
    setup = af2_parity.ParitySetup(preset="model_3_ptm", evoformer_num_block=2,
                                   extra_msa_stack_num_block=1, num_recycle=0)
    cfg = af2_parity.reference_config(setup)
    target = api.read_targets(fasta)[0]
    raw, _, _ = api.make_features(target, MSAS / "2q2k_A")
    params = af2_parity.random_params(cfg, seed=3)
    for key in params:
        if key.startswith("alphafold/alphafold_iteration/predicted_aligned_error_head/"):
            params[key] = params[key] * np.float32(PAE_HEAD_SCALE)
    params_dir = tmp / "params"
    params_dir.mkdir()
    af2_parity.save_npz(params, params_dir / "params_model_3_ptm.npz")

    out = tmp / "out"
    code = _run(fasta, "--output-dir", out, "--params-dir", params_dir, "--model-preset",
                "monomer_ptm", "--models", "3", "--num-recycle", 0, "--alignments-dir", MSAS,
                "--max-msa", "16:32", "--seed", 7)
    # The reference on the features the run saved, processed as the run processed them.
    config = model_config("model_3_ptm")
    runner_mod.configure(config, num_recycle=0, max_msa=(16, 32))
    seed = runner_mod.model_seed(0, 1, 7)
    saved = feature_io.load_features(out / "2q2k_A" / "features.npz")
    batch = process_features(saved, config, "predict", seed=seed)
    reference = af2_parity.reference_forward(
        cfg, params, {k: v.numpy() for k, v in batch.items()})
    return {"code": code, "dir": out / "2q2k_A", "fasta": fasta, "params_dir": params_dir,
            "ref": reference, "raw": raw}


def test_af2_params_every_output(af2: dict) -> None:
    assert af2["code"] == 0
    d: Path = af2["dir"]
    n = len(query_of(MSAS / "2q2k_A" / "bfd_uniclust_hits.a3m"))
    assert sorted(os.listdir(d)) == sorted([
        "confidence_model_3_ptm.json", "features.npz", "msa_coverage.png", "msas", "pae.png",
        "plddt.png", "ranked_0.cif", "ranked_0.pdb", "ranking_debug.json", "timings.json",
        "unrelaxed_model_3_ptm.pdb"])
    assert sorted(os.listdir(d / "msas")) == ["bfd_uniclust_hits.a3m", "mgnify_hits.sto",
                                              "uniref90_hits.sto"]
    conf = read_json(d / "confidence_model_3_ptm.json")
    assert conf["model_name"] == "model_3_ptm" and conf["seed"] == 7
    assert conf["num_recycles"] == 0
    plddt, pae = np.array(conf["plddt"]), np.array(conf["pae"])
    assert plddt.shape == (n,) and pae.shape == (n, n)
    assert np.all((plddt >= 0) & (plddt <= 100)) and np.all(pae >= 0)
    assert pae.max() <= conf["max_pae"] and 0 < conf["ptm"] < 1
    ranking = read_json(d / "ranking_debug.json")
    assert list(ranking) == ["ptm", "plddts", "order"]
    assert ranking["order"] == ["model_3_ptm"] and ranking["ptm"]["model_3_ptm"] == conf["ptm"]
    assert ranking["plddts"]["model_3_ptm"] == pytest.approx(plddt.mean(), abs=5e-3)
    timings = read_json(d / "timings.json")
    assert set(timings) == {"features", "process_features_model_3_ptm",
                            "predict_and_compile_model_3_ptm", "total"}
    pdb = protein.from_pdb(d / "ranked_0.pdb")
    cif = protein.from_mmcif(d / "ranked_0.cif")
    unrelaxed = protein.from_pdb(d / "unrelaxed_model_3_ptm.pdb")
    for prot in (pdb, cif, unrelaxed):
        assert prot.num_res == n
        assert sequence_of(prot) == query_of(MSAS / "2q2k_A" / "bfd_uniclust_hits.a3m")
    np.testing.assert_array_equal(per_residue_bfactors(pdb), plddt.astype(np.float32))
    np.testing.assert_allclose(per_residue_bfactors(cif), plddt, atol=5e-3 + 1e-4)
    np.testing.assert_array_equal(unrelaxed.atom_positions, pdb.atom_positions)
    saved = feature_io.load_features(d / "features.npz")
    assert set(saved) == set(af2["raw"])
    for key in ("aatype", "msa", "deletion_matrix_int", "template_all_atom_positions"):
        np.testing.assert_array_equal(saved[key], af2["raw"][key])
    for png in ("plddt.png", "pae.png", "msa_coverage.png"):
        assert_png(d / png)


def _assert_equals_reference(positions: np.ndarray, mask: np.ndarray, plddt: np.ndarray,
                             pae: np.ndarray, ptm: float, ref: dict, rounding: float) -> None:
    """Within the model issue's tolerances (plus the rounding of the files)."""
    np.testing.assert_array_equal(mask, ref["final_atom_mask"])
    diff = np.linalg.norm(positions - ref["final_atom_positions"], axis=-1)[mask > 0]
    assert diff.max() <= 1e-3 + rounding * np.sqrt(3), diff.max()
    assert np.abs(plddt - ref["plddt"]).max() <= 1e-3 + 10 * rounding
    assert np.abs(pae - ref["predicted_aligned_error"]).max() <= 1e-3 + 10 * rounding
    assert abs(ptm - float(ref["ptm"])) <= 1e-5


def test_af2_params_cli_equals_reference(af2: dict) -> None:
    ref, d = af2["ref"], af2["dir"]
    assert np.ptp(ref["predicted_aligned_error"]) > 1e-3 and np.ptp(ref["plddt"]) > 1e-2
    pdb = protein.from_pdb(d / "ranked_0.pdb")
    conf = read_json(d / "confidence_model_3_ptm.json")
    _assert_equals_reference(pdb.atom_positions, pdb.atom_mask, np.array(conf["plddt"]),
                             np.array(conf["pae"]), conf["ptm"], ref, rounding=5e-4)
    assert conf["max_pae"] == pytest.approx(float(ref["max_predicted_aligned_error"]))


def test_af2_params_api_equals_reference(af2: dict, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    model = api.load_model("model_3_ptm", af2["params_dir"], num_recycle=0, max_msa=(16, 32))
    pred = api.predict(af2["fasta"], model, MSAS / "2q2k_A", seed=7)
    assert os.listdir(tmp_path) == []
    m = pred.best
    _assert_equals_reference(m.atom_positions, m.atom_mask, m.plddt, m.pae, m.ptm, af2["ref"],
                             rounding=0.0)
    assert pred.ranking["order"] == ["model_3_ptm"]


# -------------------------------------------------------------------- CLI flows (tiny)


@pytest.fixture(scope="module")
def tiny_params(tmp_path_factory: pytest.TempPathFactory) -> Path:
    params = tmp_path_factory.mktemp("tiny_params")
    for seed, name in enumerate(TINY):
        tiny_checkpoint(params, name, seed)
    return params


@pytest.fixture()
def short_inputs(tmp_path: Path) -> tuple[Path, Path]:
    records = {name: query_of(a3m) for name, a3m in SHORT_CASES.items()}
    records["no_msa"] = records["6A5J"][::-1]  # a target whose alignments are missing
    return write_fasta(tmp_path / "batch.fasta", records), short_alignments(tmp_path / "aln")


def _tiny_args(params: Path, out: Path, *extra: object) -> list[object]:
    return ["--output-dir", out, "--params-dir", params, "--models", ",".join(TINY),
            "--num-recycle", 0, *extra]


def _check_ranked(d: Path) -> None:
    ranking = read_json(d / "ranking_debug.json")
    scores = {name: read_json(d / f"confidence_{name}.json")["ptm"] for name in TINY}
    assert ranking["ptm"] == scores
    assert ranking["order"] == sorted(scores, key=scores.get, reverse=True)
    for rank, name in enumerate(ranking["order"]):
        assert (d / f"ranked_{rank}.pdb").read_text() == (d / f"unrelaxed_{name}.pdb").read_text()


def test_batch_goes_on_past_a_failed_target_and_skips_finished(
        tiny_params: Path, short_inputs: tuple[Path, Path], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    fasta, aln = short_inputs
    out = tmp_path / "out"
    args = [fasta, *_tiny_args(tiny_params, out, "--alignments-dir", aln)]
    assert _run(*args) == 2
    assert sorted(os.listdir(out)) == ["5AWL_1", "6A5J"]  # nothing of the failed target
    assert "FAILED no_msa" in caplog.text and "no alignments for target 'no_msa'" in caplog.text
    for name in ("5AWL_1", "6A5J"):
        _check_ranked(out / name)
    stamp = (out / "6A5J" / "ranking_debug.json").stat().st_mtime_ns
    caplog.clear()
    assert _run(*args) == 2  # finished targets skipped, the failed one fails again
    assert "6A5J: finished earlier" in caplog.text
    assert (out / "6A5J" / "ranking_debug.json").stat().st_mtime_ns == stamp
    (aln / "no_msa.a3m").write_text(f">no_msa\n{query_of(SHORT_CASES['6A5J'])[::-1]}\n")
    assert _run(*args) == 0  # only the missing target runs now
    assert sorted(os.listdir(out)) == ["5AWL_1", "6A5J", "no_msa"]
    assert (out / "6A5J" / "ranking_debug.json").stat().st_mtime_ns == stamp
    one = write_fasta(tmp_path / "one.fasta", {"6A5J": query_of(SHORT_CASES["6A5J"])})
    assert _run(one, *_tiny_args(tiny_params, out, "--alignments-dir", aln), "--overwrite",
                "--models", TINY[0]) == 0
    assert (out / "6A5J" / "ranking_debug.json").stat().st_mtime_ns != stamp
    assert read_json(out / "6A5J" / "ranking_debug.json")["order"] == [TINY[0]]
    assert sorted(os.listdir(out)) == ["5AWL_1", "6A5J", "no_msa"]


def _bad_cases(tmp: Path, params: Path, aln: Path) -> dict[str, tuple[list, str]]:
    good = write_fasta(tmp / "good.fasta", {"6A5J": query_of(SHORT_CASES["6A5J"])})
    empty = tmp / "empty.fasta"
    empty.write_text("\n")
    letters = write_fasta(tmp / "letters.fasta", {"bad": "MKTA1IAK"})
    out = tmp / "out"
    (tmp / "db").mkdir()
    busy = tmp / "busy"
    (busy / "6A5J").mkdir(parents=True)
    (busy / "6A5J" / "notes.txt").write_text("not a prediction")
    common = ["--params-dir", params, "--models", TINY[0]]
    return {
        "no records": ([empty, "-o", out, *common, "--alignments-dir", aln], "no FASTA records"),
        "invalid letter": ([letters, "-o", out, *common, "--alignments-dir", aln],
                           "invalid residue letter '1'"),
        "missing params": ([good, "-o", out, "--params-dir", tmp / "db", "--alignments-dir",
                            aln], "download-params"),
        "unknown model number": ([good, "-o", out, "--models", "7", "--alignments-dir", aln],
                                 "model number 7"),
        "search without databases": ([good, "-o", out, *common, "--msa-mode", "search"],
                                     "needs the sequence databases"),
        "databases missing": ([good, "-o", out, *common, "--db-dir", tmp / "db"],
                              "lacks the full_dbs database(s): uniref90"),
        "no msa source": ([good, "-o", out, *common], "say where the MSA comes from"),
        "precomputed without dir": ([good, "-o", out, *common, "--msa-mode", "precomputed"],
                                    "needs --alignments-dir"),
        "templates without mmcif": ([good, "-o", out, *common, "--alignments-dir", aln,
                                     "--templates"], "template mmCIF folder"),
        "existing directory": ([good, "-o", busy, *common, "--alignments-dir", aln],
                               "exists but is not a finished prediction"),
        **({} if torch.cuda.is_available() else {
            "no GPU": ([good, "-o", out, *common, "--alignments-dir", aln, "--device", "cuda"],
                       "PyTorch sees no CUDA GPU")}),
    }


def test_bad_input_exits_2_and_writes_nothing(tiny_params: Path, tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    aln = short_alignments(tmp_path / "aln")
    for case, (argv, message) in _bad_cases(tmp_path, tiny_params, aln).items():
        caplog.clear()
        assert _run(*argv) == 2, case
        assert message in caplog.text, (case, caplog.text[-500:])
        assert not (tmp_path / "out").exists(), case
    assert os.listdir(tmp_path / "busy" / "6A5J") == ["notes.txt"]
    with pytest.raises(SystemExit) as exit_info:  # argparse: bad option values
        cli.main(["x.fasta", "-o", str(tmp_path), "--chunk-size", "-3"])
    assert exit_info.value.code == 2


def test_too_long_target_fails_alone(tiny_params: Path, short_inputs: tuple[Path, Path],
                                     tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    fasta, aln = short_inputs
    fasta = write_fasta(tmp_path / "two.fasta",
                        {n: query_of(a) for n, a in SHORT_CASES.items()})
    out = tmp_path / "out"
    assert _run(fasta, *_tiny_args(tiny_params, out, "--alignments-dir", aln,
                                   "--max-length", 12), "--models", TINY[0]) == 2
    assert os.listdir(out) == ["5AWL_1"]  # 10 residues; 6A5J has 13
    assert "6A5J: 13 residues, more than --max-length 12" in caplog.text


def test_csv_input_single_sequence_and_seeds(tiny_params: Path, tmp_path: Path) -> None:
    table = tmp_path / "jobs.csv"
    table.write_text(f"id,sequence\n6A5J,{query_of(SHORT_CASES['6A5J'])}\n")
    out = tmp_path / "out"
    assert _run(table, *_tiny_args(tiny_params, out, "--msa-mode", "single_sequence",
                                   "--num-seeds", 2, "--seed", 5, "--chunk-size", 4)) == 0
    d = out / "6A5J"
    names = [f"{m}_pred_{k}" for m in TINY for k in range(2)]
    ranking = read_json(d / "ranking_debug.json")
    assert sorted(ranking["order"]) == sorted(names)
    seeds = [read_json(d / f"confidence_{n}.json")["seed"] for n in names]
    assert seeds == [runner_mod.model_seed(i, 4, 5) for i in range(4)]
    assert len(set(seeds)) == 4
    assert feature_io.load_features(d / "features.npz")["msa"].shape[0] == 1
    assert not (d / "msas").exists() and not (out / "alignments").exists()


def test_search_mode_writes_reusable_alignments(tiny_params: Path, tmp_path: Path) -> None:
    db = tmp_path / "db"
    seqdb = SHARED_DATA / "seqdb"
    for link, source in (("uniref90/uniref90.fasta", seqdb / "mini_uniref.fasta"),
                         ("mgnify/mgy_clusters_2022_05.fa",
                          seqdb / "hmmer_tutorial" / "globins45.fa"),
                         ("small_bfd/bfd-first_non_consensus_sequences.fasta",
                          seqdb / "mini_uniref.fasta")):
        (db / link).parent.mkdir(parents=True, exist_ok=True)
        (db / link).symlink_to(source)
    fasta = REPO_ROOT / "examples" / "myoglobin" / "102m_A.fasta"
    out = tmp_path / "out"
    argv = [fasta, "--output-dir", out, "--params-dir", tiny_params, "--models", TINY[0],
            "--num-recycle", 0]
    assert _run(*argv, "--db-dir", db, "--db-preset", "reduced_dbs") == 0
    written = sorted(os.listdir(out / "alignments" / "102m_A"))
    assert written == ["mgnify_hits.sto", "small_bfd_hits.sto", "uniref90_hits.sto"]
    assert sorted(os.listdir(out / "102m_A" / "msas")) == written
    msa = feature_io.load_features(out / "102m_A" / "features.npz")["msa"]
    assert msa.shape[0] > 40  # the globin family found by jackhmmer
    first = read_json(out / "102m_A" / "confidence_tiny_1_ptm.json")
    again = tmp_path / "again"
    assert _run(*argv[:2], again, *argv[3:], "--alignments-dir", out / "alignments") == 0
    assert read_json(again / "102m_A" / "confidence_tiny_1_ptm.json") == first


def test_templates_from_precomputed_hits(tmp_path: Path) -> None:
    """``--templates``: the hhsearch hits in the alignments folder are featurised from the
    template mmCIF folder and fed to a network with template stacks."""
    params = tmp_path / "params"
    tiny_checkpoint(params, "tiny_templates_ptm", seed=5, no_templates=False)
    case = MSAS / "openfold_test_query"
    sequence = query_of(case / "bfd_uniclust_hits.a3m")
    fasta = write_fasta(tmp_path / "q.fasta", {"openfold_test_query": sequence})
    out = tmp_path / "out"
    assert _run(fasta, "--output-dir", out, "--params-dir", params, "--model-preset",
                "tiny_templates_ptm", "--num-recycle", 0, "--alignments-dir", MSAS,
                "--templates", "--template-mmcif-dir", SHARED_DATA / "structures" / "mmcif",
                "--max-template-date", "2100-01-01", "--max-msa", "8:16") == 0
    d = out / "openfold_test_query"
    feats = feature_io.load_features(d / "features.npz")
    names = [n.decode() for n in feats["template_domain_names"]]
    assert len(names) >= 2 and "1hf9_B" not in [n.lower() for n in names]  # no mmCIF for 1HF9
    assert feats["template_all_atom_positions"].shape == (len(names), len(sequence), 37, 3)
    assert "pdb70_hits.hhr" in os.listdir(d / "msas")
    assert read_json(d / "ranking_debug.json")["order"] == ["tiny_templates_ptm"]


def test_bundled_example_runs(tiny_params: Path, tmp_path: Path) -> None:
    example = REPO_ROOT / "examples" / "myoglobin"
    out = tmp_path / "predictions"
    assert _run(example / "102m_A.fasta", "--output-dir", out, "--alignments-dir",
                example / "alignments", "--params-dir", tiny_params, "--model-preset", TINY[0],
                "--num-recycle", 0) == 0
    assert read_json(out / "102m_A" / "ranking_debug.json")["order"] == [TINY[0]]
    assert protein.from_pdb(out / "102m_A" / "ranked_0.pdb").num_res == 154


# -------------------------------------------------------------------- memory


def test_chunk_size_choice() -> None:
    config = model_config("model_1_ptm")
    gib = 1 << 30
    assert runner_mod.choose_chunk_size(config, 100, 64 * gib) is None
    sizes = [runner_mod.choose_chunk_size(config, n, 16 * gib) for n in (200, 800, 1600, 3000)]
    as_rows = [n if s is None else s for s, n in zip(sizes, (200, 800, 1600, 3000), strict=True)]
    assert as_rows == sorted(as_rows, reverse=True) and sizes[-1] is not None
    less = [runner_mod.choose_chunk_size(config, 1600, m * gib) or 1600 for m in (80, 16, 4)]
    assert less == sorted(less, reverse=True)
    for n, mem in ((800, 16 * gib), (1600, 40 * gib)):
        chunk = runner_mod.choose_chunk_size(config, n, mem)
        assert runner_mod.estimate_memory(config, n, chunk) <= 0.8 * mem
        bigger = runner_mod.CHUNK_SIZES[runner_mod.CHUNK_SIZES.index(chunk) - 1]
        assert runner_mod.estimate_memory(config, n, bigger) > 0.8 * mem
    assert runner_mod.choose_chunk_size(config, 5000, 1 * gib) == runner_mod.MIN_CHUNK_SIZE
    assert [runner_mod.smaller_chunk_size(c, 300) for c in (None, 256, 8, 4)] == [256, 128, 4, None]
    assert runner_mod.smaller_chunk_size(None, 20) == 16


def test_out_of_memory_is_retried_with_smaller_chunks(
        tiny_params: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    net = runner_mod.load_network(TINY[0], tiny_params / TINY[0]).eval()
    raw = api.make_features(api.parse_target(query_of(SHORT_CASES["6A5J"]), "6A5J"),
                            SHORT_CASES["6A5J"])[0]
    batch = process_features(raw, net.config, "predict", seed=0)
    runtime = runner_mod.RuntimeConfig()
    expected, _ = runner_mod.run_with_oom_retry(net, batch, runtime, 13)
    calls = []
    block = net.evoformer.evoformer_iteration
    original = block.forward

    def limited(*args, **kwargs):
        chunk = block.runtime.chunk_size
        calls.append(chunk)
        if chunk is None or chunk > 4:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return original(*args, **kwargs)

    monkeypatch.setattr(block, "forward", limited)
    caplog.set_level(logging.WARNING)
    out, chunk = runner_mod.run_with_oom_retry(net, batch, runtime, 13)
    assert calls == [None, 8, 4] and chunk == 4
    assert caplog.text.count("retrying with chunk size") == 2
    for key in ("final_atom_positions", "plddt", "predicted_aligned_error"):
        torch.testing.assert_close(out[key], expected[key], atol=1e-4, rtol=1e-4)

    def always(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried 99 GB")

    monkeypatch.setattr(block, "forward", always)
    with pytest.raises(runner_mod.PredictionOutOfMemoryError, match="even at chunk size 4"):
        runner_mod.run_with_oom_retry(net, batch, runtime, 13)

    def other(*args, **kwargs):
        raise ValueError("not a memory problem")

    monkeypatch.setattr(block, "forward", other)
    with pytest.raises(ValueError, match="not a memory problem"):
        runner_mod.run_with_oom_retry(net, batch, runtime.replace(chunk_size=64), 13)
    assert not runner_mod.is_out_of_memory(ValueError("out of memory"))
    assert runner_mod.is_out_of_memory(MemoryError())


# -------------------------------------------------------------------- server mode


class _StandIn(http.server.BaseHTTPRequestHandler):
    """A ColabFold MMseqs2 server that finishes every job at once; its result is the real
    server answer for myoglobin (the bundled example's a3m), query renamed ``101``."""

    answer = b""
    requests: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        length = int(self.headers["Content-Length"])
        form = urllib.parse.parse_qs(self.rfile.read(length).decode())
        self.requests.append(f"POST {self.path} {form['mode'][0]}")
        self._send(json.dumps({"id": "job1", "status": "COMPLETE"}).encode(), "application/json")

    def do_GET(self) -> None:  # noqa: N802
        self.requests.append(f"GET {self.path}")
        if self.path == "/result/download/job1":
            self._send(self.answer, "application/octet-stream")
        else:
            self._send(json.dumps({"id": "job1", "status": "COMPLETE"}).encode(),
                       "application/json")

    def _send(self, body: bytes, kind: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return None


def _server_answer(a3m: str) -> bytes:
    lines = a3m.splitlines()
    assert lines[0].startswith(">")
    text = "\n".join([">101"] + lines[1:]) + "\n\x00"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        data = text.encode()
        info = tarfile.TarInfo("uniref.a3m")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_server_mode_against_a_stand_in(tiny_params: Path, tmp_path: Path) -> None:
    example = REPO_ROOT / "examples" / "myoglobin"
    _StandIn.answer = _server_answer(
        (example / "alignments" / "102m_A" / "non_pairing.a3m").read_text())
    _StandIn.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        out = tmp_path / "out"
        argv = [example / "102m_A.fasta", "--output-dir", out, "--params-dir", tiny_params,
                "--model-preset", TINY[0], "--num-recycle", 0, "--msa-mode", "server",
                "--host-url", f"http://127.0.0.1:{server.server_address[1]}"]
        assert _run(*argv) == 0
        assert _run(*argv, "--overwrite") == 0  # the fetched MSA is reused
    finally:
        server.shutdown()
        server.server_close()
    assert _StandIn.requests == ["POST /ticket/msa env", "GET /result/download/job1"]
    assert sorted(os.listdir(out / "alignments" / "102m_A")) == ["colabfold.a3m"]
    assert sorted(os.listdir(out / "102m_A" / "msas")) == ["colabfold.a3m"]
    msa = feature_io.load_features(out / "102m_A" / "features.npz")["msa"]
    assert msa.shape == (98, 154)  # the server's 98 rows
