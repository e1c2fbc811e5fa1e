"""DataPipeline (three MSA modes), raw features, the feature cache and precompute.

Parity: the reference's ``alphafold.data.pipeline.DataPipeline`` runs live on the same
alignment files (and, in search mode, on the same small databases). The reference is the
ColabFold fork, which keeps repeated MSA rows; official AF2 drops them, so its features
are compared after de-duplicating them with official AF2's rule (first occurrence of each
aligned sequence, UniRef90 then BFD then MGnify), computed from the reference's own parse
of the files. Searches run the real programs on ../shared/data, one CPU each.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from alphafold.data import parsers as ref_parsers
from alphafold.data import pipeline as ref_pipeline
from alphafold.data import templates as ref_templates
from alphafold.data.tools import hhsearch as ref_hhsearch
from shared import SHARED_DATA

from data_pipeline import features, parsers, tools
from data_pipeline.pipeline import DatabaseConfig, DataPipeline
from data_pipeline.precompute import main as precompute_main
from data_pipeline.precompute import precompute_alignments
from data_pipeline.templates import HhsearchHitFeaturizer

MSAS = SHARED_DATA / "msas"
MMCIF_DIR = str(SHARED_DATA / "structures/mmcif")
MINI_UNIREF = str(SHARED_DATA / "seqdb/mini_uniref.fasta")
GLOBINS45 = str(SHARED_DATA / "seqdb/hmmer_tutorial/globins45.fa")
PDB_MINI = str(SHARED_DATA / "templates/hhsuite_db/pdb_mini")
PDB_SEQRES = str(SHARED_DATA / "templates/pdb_seqres.txt")
NO_DATE_LIMIT = "2100-01-01"
MSA_KEYS = ("msa", "deletion_matrix_int", "num_alignments", "msa_species_identifiers")
SEQUENCE_KEYS = ("aatype", "between_segment_residues", "domain_name", "residue_index",
                 "seq_length", "sequence")
#: AF2 file name -> the name in OpenFold's test folders.
OPENFOLD_NAMES = {"uniref90_hits.sto": "uniref90_hits.sto", "mgnify_hits.sto": "mgnify_hits.sto",
                  "bfd_uniref_hits.a3m": "bfd_uniclust_hits.a3m"}


class _HitsFromText:
    """Stands in for the reference's template searcher: returns a fixed hhr text."""

    input_format, output_format = "a3m", "hhr"

    def __init__(self, hhr: str, skip: set[int] = frozenset()) -> None:
        self.hhr, self.skip = hhr, skip

    def query(self, a3m: str) -> str:
        return self.hhr

    def get_template_hits(self, output_string: str, input_sequence: str):
        return [h for h in ref_parsers.parse_hhr(output_string) if h.index not in self.skip]


def _ref_featurizer(max_hits: int = 20):
    return ref_templates.HhsearchHitFeaturizer(
        mmcif_dir=MMCIF_DIR, max_template_date=NO_DATE_LIMIT, max_hits=max_hits,
        kalign_binary_path=shutil.which("kalign"), release_dates_path=None,
        obsolete_pdbs_path=None)


def _reference_pipeline(template_searcher, use_precomputed_msas: bool, mgnify: str = MINI_UNIREF):
    """The reference pipeline on the small databases; its hhblits searches the one shared
    HH-suite database (it insists on two: BFD and UniRef30)."""
    pipeline = ref_pipeline.DataPipeline(
        jackhmmer_binary_path=shutil.which("jackhmmer"),
        hhblits_binary_path=shutil.which("hhblits"),
        uniref90_database_path=MINI_UNIREF, mgnify_database_path=mgnify,
        bfd_database_path=PDB_MINI, uniref30_database_path=PDB_MINI,
        small_bfd_database_path=None, template_searcher=template_searcher,
        template_featurizer=_ref_featurizer(), use_small_bfd=False,
        use_precomputed_msas=use_precomputed_msas)
    pipeline.hhblits_bfd_uniref_runner.databases = [PDB_MINI]
    return pipeline


def _deduplicated(ref_features: dict, ref_msas) -> dict:
    """The reference's MSA features with official AF2's row de-duplication applied."""
    sequences = [s for msa in ref_msas for s in msa.sequences]
    assert len(sequences) == len(ref_features["msa"])  # the fork keeps every row
    seen: set[str] = set()
    keep = [not (s in seen or seen.add(s)) for s in sequences]
    out = {k: ref_features[k][keep] for k in ("msa", "deletion_matrix_int",
                                             "msa_species_identifiers")}
    out["num_alignments"] = np.full_like(ref_features["num_alignments"], sum(keep))
    return out


def _ref_msas(directory, names) -> list:
    """The reference parsers on the files, with AF2's row limits."""
    limits = {"uniref90_hits.sto": 10_000, "mgnify_hits.sto": 501}
    msas = []
    for name in names:
        path = str(directory / name)
        if name.endswith(".sto"):
            text = ref_parsers.truncate_stockholm_msa(path, limits[name]) if name in limits \
                else open(path).read()
            msas.append(ref_parsers.parse_stockholm(text))
        else:
            msas.append(ref_parsers.parse_a3m(open(path).read()))
    return msas


def _assert_equal(ours: dict, ref: dict, keys) -> None:
    for key in keys:
        assert ours[key].dtype == ref[key].dtype, key
        assert ours[key].shape == ref[key].shape, key
        np.testing.assert_array_equal(ours[key], ref[key], err_msg=key)


def _query(case: str) -> tuple[str, str]:
    sequences, descriptions = parsers.read_fasta(MSAS / case / "query.fasta")
    return sequences[0], descriptions[0]


# --------------------------------------------------------------- precomputed mode


@pytest.mark.parametrize("case", ["openfold_test_query", "2q2k_A"])
def test_precomputed_matches_reference_pipeline(case, tmp_path):
    """OpenFold's alignment folders, read as is, against the reference pipeline given the
    same files under AF2's names (``bfd_uniclust_hits.a3m`` -> ``bfd_uniref_hits.a3m``)."""
    for af2_name, name in OPENFOLD_NAMES.items():
        shutil.copy(MSAS / case / name, tmp_path / af2_name)
    hhr_path = MSAS / case / "pdb70_hits.hhr"
    with_templates = hhr_path.exists()
    hhr = hhr_path.read_text() if with_templates else ""
    # 1HF9 (top hit of the OpenFold query) has no mmCIF here: the reference would crash.
    skip = {h.index for h in parsers.parse_hhr(hhr) if h.name.startswith("1HF9")}
    ref = _reference_pipeline(_HitsFromText(hhr, skip), use_precomputed_msas=True).process(
        str(MSAS / case / "query.fasta"), str(tmp_path))
    config = DatabaseConfig(template_mmcif_dir=MMCIF_DIR, max_template_date=NO_DATE_LIMIT)
    ours = DataPipeline(config, msa_mode="precomputed").process(
        MSAS / case / "query.fasta", MSAS / case)
    _assert_equal(ours, ref, SEQUENCE_KEYS)
    ref_msas = _ref_msas(tmp_path, ["uniref90_hits.sto", "bfd_uniref_hits.a3m", "mgnify_hits.sto"])
    _assert_equal(ours, _deduplicated(ref, ref_msas), MSA_KEYS)
    assert ours["num_alignments"][0] < len(ref["msa"])  # repeated rows were dropped
    if with_templates:
        _assert_equal(ours, ref, features.TEMPLATE_FEATURES)
        assert len(ours["template_domain_names"]) == 7
    else:
        assert ours["template_all_atom_positions"].shape == (0, len(ours["aatype"]), 37, 3)
    assert set(ours) == set(ref)


def test_openfold_names_without_uniref90_and_colabfold_a3m(tmp_path):
    """6KWC (OpenFold example: no uniref90 file) and 102m (ColabFold-style a3m files, also
    given as one file with ColabFold's '#' header line): reference parsers +
    make_msa_features + official de-duplication."""
    ours = DataPipeline().process(MSAS / "6kwc_1/query.fasta", MSAS / "6kwc_1")
    ref_msas = _ref_msas(MSAS / "6kwc_1", ["bfd_uniref_hits.a3m", "mgnify_hits.sto"])
    ref = ref_pipeline.make_msa_features(ref_msas)
    _assert_equal(ours, _deduplicated(ref, ref_msas), MSA_KEYS)
    sequence, description = _query("6kwc_1")
    _assert_equal(ours, ref_pipeline.make_sequence_features(sequence, description,
                                                            len(sequence)), SEQUENCE_KEYS)

    ours = DataPipeline().process(MSAS / "102m_A/query.fasta", MSAS / "102m_A")
    ref_msas = _ref_msas(MSAS / "102m_A", ["non_pairing.a3m", "pairing.a3m"])
    _assert_equal(ours, _deduplicated(ref_pipeline.make_msa_features(ref_msas), ref_msas),
                  MSA_KEYS)

    a3m = tmp_path / "102m.a3m"
    a3m.write_text("#154\t1\n" + (MSAS / "102m_A/non_pairing.a3m").read_text())
    single = DataPipeline().process(MSAS / "102m_A/query.fasta", a3m)
    ref_msas = _ref_msas(MSAS / "102m_A", ["non_pairing.a3m"])
    _assert_equal(single, _deduplicated(ref_pipeline.make_msa_features(ref_msas), ref_msas),
                  MSA_KEYS)


def test_single_sequence_mode_and_keep_all_rows():
    sequence, _ = _query("2q2k_A")
    single = DataPipeline(msa_mode="single_sequence").process(MSAS / "2q2k_A/query.fasta")
    assert single["msa"].shape == (1, len(sequence))
    assert single["num_alignments"].tolist() == [1] * len(sequence)
    assert (single["deletion_matrix_int"] == 0).all()
    assert single["template_aatype"].shape == (0, len(sequence), 22)
    every_row = DataPipeline(deduplicate_msa=False).process(
        MSAS / "2q2k_A/query.fasta", MSAS / "2q2k_A")
    deduplicated = DataPipeline().process(MSAS / "2q2k_A/query.fasta", MSAS / "2q2k_A")
    assert every_row["num_alignments"][0] == 16 + 4 + 7  # uniref90 + bfd + mgnify rows
    assert deduplicated["num_alignments"][0] == len(
        {bytes(row) for row in every_row["msa"].astype(np.int8)})


# ------------------------------------------------------------------- search mode


def test_search_mode_matches_reference_and_is_reused(tmp_path):
    """Real jackhmmer (mini_uniref as "UniRef90", the globins as "MGnify"), hhblits and
    hhsearch (the shared PDB70-style database) for 102m, against the reference pipeline
    searching the same databases; a second run reuses the files."""
    fasta = MSAS / "102m_A/query.fasta"
    config = DatabaseConfig(
        uniref90_database_path=MINI_UNIREF, mgnify_database_path=GLOBINS45,
        bfd_database_path=PDB_MINI, pdb70_database_path=PDB_MINI,
        template_mmcif_dir=MMCIF_DIR, max_template_date=NO_DATE_LIMIT, n_cpu=1)
    pipeline = DataPipeline(config)
    assert pipeline.msa_mode == "search"
    ours = pipeline.process(fasta, tmp_path / "ours")
    written = sorted(os.listdir(tmp_path / "ours"))
    assert written == ["bfd_uniref_hits.a3m", "mgnify_hits.sto", "pdb_hits.hhr",
                       "uniref90_hits.sto"]
    assert {"uniref90", "mgnify", "bfd"} <= set(pipeline.timings)

    sequence, _ = _query("102m_A")
    hhr = (tmp_path / "ours/pdb_hits.hhr").read_text()
    result = HhsearchHitFeaturizer(MMCIF_DIR, NO_DATE_LIMIT).get_templates(
        sequence, parsers.parse_hhr(hhr))
    skip = {d.index for d in result.dropped
            if d.kind == "prefilter" or d.reason.startswith("no mmCIF file")}
    (tmp_path / "ref").mkdir()
    searcher = ref_hhsearch.HHSearch(binary_path=shutil.which("hhsearch"), databases=[PDB_MINI])
    searcher.get_template_hits = lambda output_string, input_sequence: [
        h for h in ref_parsers.parse_hhr(output_string) if h.index not in skip]
    ref = _reference_pipeline(searcher, use_precomputed_msas=False, mgnify=GLOBINS45).process(
        str(fasta), str(tmp_path / "ref"))
    for name in ("uniref90_hits.sto", "mgnify_hits.sto", "bfd_uniref_hits.a3m"):
        assert (tmp_path / "ours" / name).read_text() == (tmp_path / "ref" / name).read_text()
    ref_msas = _ref_msas(tmp_path / "ref",
                         ["uniref90_hits.sto", "bfd_uniref_hits.a3m", "mgnify_hits.sto"])
    _assert_equal(ours, _deduplicated(ref, ref_msas), MSA_KEYS)
    _assert_equal(ours, ref, (*SEQUENCE_KEYS, *features.TEMPLATE_FEATURES))
    assert len(ours["template_domain_names"]) >= 1

    mtimes = {n: os.stat(tmp_path / "ours" / n).st_mtime_ns for n in written}
    again = pipeline.process(fasta, tmp_path / "ours")
    assert {n: os.stat(tmp_path / "ours" / n).st_mtime_ns for n in written} == mtimes
    assert not {"uniref90", "mgnify", "bfd"} & set(pipeline.timings)  # nothing searched
    _assert_equal(again, ours, ours)


def test_search_mode_hmmsearch_templates(tmp_path):
    config = DatabaseConfig(uniref90_database_path=MINI_UNIREF,
                            pdb_seqres_database_path=PDB_SEQRES, template_mmcif_dir=MMCIF_DIR,
                            max_template_date=NO_DATE_LIMIT, n_cpu=1)
    out = DataPipeline(config).process(MSAS / "openfold_test_query/query.fasta", tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["pdb_hits.sto", "uniref90_hits.sto"]
    assert len(out["template_domain_names"]) >= 1
    assert out["template_all_atom_masks"].sum() > 0


# ----------------------------------------------------------------- feature cache


def test_feature_cache_round_trip(tmp_path, monkeypatch):
    alignments = tmp_path / "alignments"
    shutil.copytree(MSAS / "2q2k_A", alignments)
    pipeline = DataPipeline(feature_cache_dir=tmp_path / "cache")
    first = pipeline.process(MSAS / "2q2k_A/query.fasta", alignments)
    cached = tmp_path / "cache/2q2k_A.npz"
    assert cached.exists()
    with np.load(cached, allow_pickle=False) as data:  # no pickle inside
        assert all(data[k].dtype != object for k in data.files)
    loaded = features.load_features(cached)
    assert set(loaded) == set(first)
    _assert_equal(loaded, first, first)

    def no_featurising(*args):
        raise AssertionError("features recomputed although cached")
    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "_featurize", no_featurising)
        _assert_equal(pipeline.process(MSAS / "2q2k_A/query.fasta", alignments), first, first)
    (alignments / "mgnify_hits.sto").unlink()  # the alignments changed: recomputed
    smaller = pipeline.process(MSAS / "2q2k_A/query.fasta", alignments)
    assert smaller["num_alignments"][0] < first["num_alignments"][0]


# -------------------------------------------------------------------- bad input


def test_bad_inputs_give_clear_errors(tmp_path):
    two = tmp_path / "two.fasta"
    two.write_text(">a\nMKVLA\n>b\nMKVLG\n")
    with pytest.raises(ValueError, match="expected one sequence, found 2 records"):
        DataPipeline().process(two, MSAS / "2q2k_A")
    with pytest.raises(ValueError, match=r"uniref90_hits\.sto.*first row is not the query"):
        DataPipeline().process(MSAS / "102m_A/query.fasta", MSAS / "2q2k_A")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        DataPipeline().process(MSAS / "2q2k_A/query.fasta", tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no MSA in"):
        DataPipeline().process(MSAS / "2q2k_A/query.fasta", tmp_path)
    with pytest.raises(ValueError, match="msa_mode must be one of"):
        DataPipeline(msa_mode="colabfold")
    with pytest.raises(tools.DatabaseNotFoundError, match="missing.fasta"):
        DataPipeline(DatabaseConfig(uniref90_database_path=str(tmp_path / "missing.fasta")))
    with pytest.raises(tools.ToolNotFoundError, match="apt-get install hmmer"):
        DataPipeline(DatabaseConfig(uniref90_database_path=MINI_UNIREF,
                                    jackhmmer_binary_path=str(tmp_path / "jackhmmer")))
    # A search that fails leaves nothing half-written in the alignments directory.
    slow = DataPipeline(DatabaseConfig(uniref90_database_path=MINI_UNIREF, n_cpu=1,
                                       timeout_s=0.001))
    with pytest.raises(tools.ToolTimeoutError):
        slow.process(MSAS / "2q2k_A/query.fasta", tmp_path / "timeout")
    assert os.listdir(tmp_path / "timeout") == []


# -------------------------------------------------------------------- precompute


def test_precompute_is_resumable(tmp_path, caplog):
    fasta = tmp_path / "queries.fasta"
    records = [_query("openfold_test_query")[0], _query("2q2k_A")[0]]
    fasta.write_text(f">query_1 OpenFold test query\n{records[0]}\n>2q2k|A\n{records[1]}\n"
                     f">same_as_2q2k\n{records[1]}\n")
    out = tmp_path / "alignments"
    config = DatabaseConfig(uniref90_database_path=MINI_UNIREF, n_cpu=1)
    first = precompute_alignments(fasta, out, config)
    assert first.searched == ["query_1", "2q2k_A"] and first.copied == ["same_as_2q2k"]
    assert sorted(os.listdir(out)) == ["2q2k_A", "query_1", "same_as_2q2k"]
    for record in os.listdir(out):
        assert os.listdir(out / record) == ["uniref90_hits.sto"]
    mtime = os.stat(out / "query_1/uniref90_hits.sto").st_mtime_ns
    second = precompute_alignments(fasta, out, config)
    assert second.skipped == ["query_1", "2q2k_A", "same_as_2q2k"] and not second.searched
    assert os.stat(out / "query_1/uniref90_hits.sto").st_mtime_ns == mtime

    (out / "2q2k_A/uniref90_hits.sto").unlink()  # as if interrupted before this chain
    assert precompute_main([str(fasta), "-o", str(out), "--uniref90_database_path",
                            MINI_UNIREF, "--n_cpu", "1", "--no_progress"]) == 0
    assert os.listdir(out / "2q2k_A") == ["uniref90_hits.sto"]
    assert os.stat(out / "query_1/uniref90_hits.sto").st_mtime_ns == mtime
    feats = DataPipeline().process_sequence(records[1], "2q2k_A", out / "2q2k_A")
    assert feats["msa"].shape[1] == len(records[1]) and feats["msa"].shape[0] > 1
