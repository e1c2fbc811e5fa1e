"""Template featurisation against AF2's ``HhsearchHitFeaturizer`` / ``HmmsearchHitFeaturizer``.

The reference runs live on the same hits and mmCIF files. It is the ColabFold fork, which
skips official AF2's align-ratio / duplicate / length prefilter and crashes on hits whose
mmCIF is absent, so it gets the hits our featurizer did not drop for those reasons (each
drop is checked on its own), and the remaining features must be equal: integers and
floats exactly, same keys, dtypes and shapes.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil

import gemmi
import numpy as np
import pytest
from alphafold.data import parsers as ref_parsers
from alphafold.data import templates as ref_templates
from shared import SHARED_DATA

from data_pipeline import features, parsers, template_hits, tools
from data_pipeline.templates import (
    HhsearchHitFeaturizer,
    HmmsearchHitFeaturizer,
    read_obsolete_pdbs,
    read_release_dates,
)

MMCIF_DIR = str(SHARED_DATA / "structures/mmcif")
OPENFOLD = SHARED_DATA / "msas/openfold_test_query"
PDB_MINI = str(SHARED_DATA / "templates/hhsuite_db/pdb_mini")
PDB_SEQRES = str(SHARED_DATA / "templates/pdb_seqres.txt")
KALIGN = shutil.which("kalign")
NO_DATE_LIMIT = "2100-01-01"


def _query(case: str) -> str:
    return parsers.read_fasta(SHARED_DATA / "msas" / case / "query.fasta")[0][0]


def _reference(kind: str, max_hits: int = 20):
    cls = ref_templates.HhsearchHitFeaturizer if kind == "hhr" else \
        ref_templates.HmmsearchHitFeaturizer
    return cls(mmcif_dir=MMCIF_DIR, max_template_date=NO_DATE_LIMIT, max_hits=max_hits,
               kalign_binary_path=KALIGN, release_dates_path=None, obsolete_pdbs_path=None)


def _assert_same_features(ours: dict, ref: dict) -> None:
    assert set(ours) == set(ref) == set(features.TEMPLATE_FEATURES)
    for name, ref_value in ref.items():
        value = ours[name]
        assert value.dtype == ref_value.dtype, name
        assert value.shape == ref_value.shape, name
        np.testing.assert_array_equal(value, ref_value, err_msg=name)


def _kept_by_reference_rules(result) -> set[int]:
    """Hit numbers the reference must skip: official-AF2 prefilter drops and absent mmCIFs."""
    return {d.index for d in result.dropped
            if d.kind == "prefilter" or d.reason.startswith("no mmCIF file")}


@pytest.fixture(scope="module")
def openfold_hhr() -> str:
    return (OPENFOLD / "pdb70_hits.hhr").read_text()


@pytest.fixture(scope="module")
def openfold_result(openfold_hhr):
    featurizer = HhsearchHitFeaturizer(MMCIF_DIR, NO_DATE_LIMIT, max_hits=20)
    return featurizer.get_templates(_query("openfold_test_query"), parsers.parse_hhr(openfold_hhr))


# ------------------------------------------------------------------------- hhsearch


def test_openfold_hhr_matches_reference(openfold_hhr, openfold_result):
    dropped = {d.name: d for d in openfold_result.dropped}
    assert set(dropped) == {"1HF9_B", "5KC1_F", "5KC1_J"}
    assert dropped["1HF9_B"].reason.startswith("no mmCIF file")  # not in the shared set
    assert "no atoms observed" in dropped["5KC1_F"].reason  # hit lies on unobserved residues
    ref_hits = [h for h in ref_parsers.parse_hhr(openfold_hhr) if not h.name.startswith("1HF9")]
    ref = _reference("hhr").get_templates(_query("openfold_test_query"), ref_hits)
    _assert_same_features(openfold_result.features, ref.features)
    names = openfold_result.features["template_domain_names"].tolist()
    assert names == [b"3u8v_A", b"2crb_A", b"4zey_A", b"1psm_A", b"3zee_A", b"4i6p_A", b"2q2k_A"]
    assert openfold_result.features["template_aatype"].shape == (7, 73, 22)


def test_102m_hhsearch_on_pdb_mini(caplog):
    """A real hhsearch of 102m's MSA against the shared PDB70-style database."""
    a3m = (SHARED_DATA / "msas/102m_A/non_pairing.a3m").read_text()
    hhr = tools.HHSearch(databases=[PDB_MINI], n_cpu=1).query(a3m)
    query = _query("102m_A")
    featurizer = HhsearchHitFeaturizer(MMCIF_DIR, NO_DATE_LIMIT, max_hits=20)
    with caplog.at_level(logging.INFO, logger="data_pipeline.templates"):
        result = featurizer.get_templates(query, parsers.parse_hhr(hhr))
    dropped = {d.name: d for d in result.dropped}
    # The query's own entry and its identical twin are dropped as duplicates, by design.
    for name in ("102m_A", "8f9h_A"):
        assert dropped[name].kind == "prefilter" and "duplicate" in dropped[name].reason
        assert f"Dropped template hit {name}" in caplog.text
    assert dropped["7pzb_A"].reason.startswith("no mmCIF file")  # PDB-format entry only
    assert len(result.features["template_domain_names"]) >= 1
    skip = _kept_by_reference_rules(result)
    ref_hits = [h for h in ref_parsers.parse_hhr(hhr) if h.index not in skip]
    ref = _reference("hhr").get_templates(query, ref_hits)
    _assert_same_features(result.features, ref.features)


def test_realignment_with_kalign_matches_reference(openfold_hhr, caplog):
    """A hit whose database sequence differs from the mmCIF's (one residue changed, as an
    older PDB70 would have it) is re-aligned with kalign, like AF2."""
    query = _query("openfold_test_query")
    ours_hit = next(h for h in parsers.parse_hhr(openfold_hhr) if h.name.startswith("3U8V_A"))
    ref_hit = next(h for h in ref_parsers.parse_hhr(openfold_hhr) if h.name.startswith("3U8V_A"))
    position = ours_hit.hit_sequence.index("L")
    changed = ours_hit.hit_sequence[:position] + "W" + ours_hit.hit_sequence[position + 1:]
    featurizer = HhsearchHitFeaturizer(MMCIF_DIR, NO_DATE_LIMIT, kalign_binary_path=KALIGN)
    with caplog.at_level(logging.WARNING, logger="data_pipeline.templates"):
        result = featurizer.get_templates(
            query, [dataclasses.replace(ours_hit, hit_sequence=changed)])
    assert "re-aligning" in caplog.text
    ref = _reference("hhr").get_templates(
        query, [dataclasses.replace(ref_hit, hit_sequence=changed)])
    _assert_same_features(result.features, ref.features)
    assert b"W" not in result.features["template_sequence"][0]  # letters come from the mmCIF

    # Too different from the mmCIF (< 90 % identical): dropped as an error, as AF2.
    residues = [i for i, c in enumerate(ours_hit.hit_sequence) if c != "-"][::4]
    far = "".join("W" if i in residues else c for i, c in enumerate(ours_hit.hit_sequence))
    result = featurizer.get_templates(query, [dataclasses.replace(ours_hit, hit_sequence=far)])
    assert result.features["template_aatype"].shape == (0, 73, 22)
    assert result.errors and "identical" in result.dropped[0].reason
    ref = _reference("hhr").get_templates(query, [dataclasses.replace(ref_hit, hit_sequence=far)])
    assert ref.errors and ref.features["template_aatype"].size == 0


def test_mse_selenium_is_stored_as_sd():
    """4ZEY has selenomethionines: SEQRES letter M and the SE atom in the SD column."""
    mmcif = parsers.parse_mmcif_file(SHARED_DATA / "structures/mmcif/4zey.cif")
    positions, mask = template_hits.template_atom_positions(mmcif, "A")
    structure = gemmi.read_structure(str(SHARED_DATA / "structures/mmcif/4zey.cif"))
    selenium = [(res, res.find_atom("SE", "*")) for res in structure[0]["A"]
                if res.name == "MSE" and res.find_atom("SE", "*") is not None]
    assert selenium
    sd = template_hits.residue_constants.atom_order["SD"]
    for res, atom in selenium:
        index = res.label_seq - 1
        assert mmcif.chain_to_seqres["A"][index] == "M"
        assert mask[index, sd] == 1.0
        np.testing.assert_allclose(positions[index, sd], atom.pos.tolist(), atol=1e-3)


def test_date_cutoff_obsolete_and_max_hits(openfold_hhr, tmp_path):
    query = _query("openfold_test_query")
    hits = parsers.parse_hhr(openfold_hhr)
    early = HhsearchHitFeaturizer(MMCIF_DIR, "1990-01-01").get_templates(query, hits)
    assert early.features["template_domain_names"].shape == (0,)
    dated = [d for d in early.dropped if d.kind == "prefilter"]
    assert len(dated) == 9 and all("after the max template date" in d.reason for d in dated)

    dates = tmp_path / "release_dates.txt"
    dates.write_text("3u8v: 2011-11-09\n4i6p: 2013-07-17\n")  # the entries' own dates
    assert read_release_dates(dates)["4i6p"].isoformat() == "2013-07-17"
    obsolete = tmp_path / "obsolete.dat"
    obsolete.write_text(" LIST OF OBSOLETE COORDINATE ENTRIES AND SUCCESSORS\n"
                        "OBSLTE    31-JUL-94 2CRB\nOBSLTE    26-SEP-06 1PSM     4ZEY\n")
    assert read_obsolete_pdbs(obsolete) == {"2crb": None, "1psm": "4zey"}
    featurizer = HhsearchHitFeaturizer(MMCIF_DIR, "2010-01-01", max_hits=2,
                                       release_dates_path=dates, obsolete_pdbs_path=obsolete)
    result = featurizer.get_templates(query, hits)
    reasons = {d.name: d.reason for d in result.dropped}
    assert "released 2011-11-09" in reasons["3U8V_A"]  # from the dates file, no mmCIF read
    assert "obsolete" in reasons["2CRB_A"]
    assert "released 2015-05-06" in reasons["1PSM_A"]  # looked up as its successor 4ZEY
    assert result.features["template_domain_names"].tolist() == [b"2q2k_A"]

    two = HhsearchHitFeaturizer(MMCIF_DIR, NO_DATE_LIMIT, max_hits=2).get_templates(query, hits)
    assert two.features["template_domain_names"].tolist() == [b"3u8v_A", b"2crb_A"]


# ------------------------------------------------------------------------ hmmsearch


def test_hmmsearch_hits_match_reference():
    """hmmsearch of the OpenFold query's UniRef90 MSA over pdb_seqres.txt (AF2-Multimer's
    template search), featurised by both; chains with an identical template sequence
    count once."""
    query = _query("openfold_test_query")
    sto = (OPENFOLD / "uniref90_hits.sto").read_text()
    sto = parsers.remove_empty_columns_from_stockholm_msa(parsers.deduplicate_stockholm_msa(sto))
    searcher = tools.Hmmsearch(database_path=PDB_SEQRES, n_cpu=1)
    output = searcher.query(sto)
    hits = searcher.get_template_hits(output, query)
    result = HmmsearchHitFeaturizer(MMCIF_DIR, NO_DATE_LIMIT).get_templates(query, hits)
    assert any(d.kind == "duplicate" and d.name == "3u8v_B" for d in result.dropped)
    skip = _kept_by_reference_rules(result)
    ref_hits = [h for h in ref_parsers.parse_hmmsearch_a3m(
        query, ref_parsers.convert_stockholm_to_a3m(output, remove_first_row_gaps=False),
        skip_first=False) if h.index not in skip]
    ref = _reference("sto").get_templates(query, ref_hits)
    _assert_same_features(result.features, ref.features)
    assert len(result.features["template_sequence"]) >= 4

    # No hit: one all-zero template, as AF2 - whose dummy alone has template_sum_probs of
    # shape [1] instead of [N_t, 1]; ours keeps [N_t, 1] like every other template result.
    empty = dict(HmmsearchHitFeaturizer(MMCIF_DIR, NO_DATE_LIMIT).get_templates(query, []).features)
    assert empty["template_sum_probs"].shape == (1, 1)
    empty["template_sum_probs"] = empty["template_sum_probs"].reshape(1)
    _assert_same_features(empty, _reference("sto").get_templates(query, []).features)


# ------------------------------------------------------------------------ bad input


def test_bad_inputs_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="template mmCIF directory"):
        HhsearchHitFeaturizer(tmp_path / "missing", NO_DATE_LIMIT)
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        HhsearchHitFeaturizer(MMCIF_DIR, "31/12/2020")
    # UniProt-named hits (the hh-suite example searched UniProt, not the PDB).
    hits = parsers.parse_hhr((SHARED_DATA / "msas/fam69b_hhsuite/query.hhr").read_text())
    featurizer = HhsearchHitFeaturizer(MMCIF_DIR, NO_DATE_LIMIT)
    with pytest.raises(ValueError, match="does not start with '<pdbid>_<chain>'"):
        featurizer.get_templates(_query("fam69b_hhsuite"), hits)
    # A hit list made for another query.
    hhr = (OPENFOLD / "pdb70_hits.hhr").read_text()
    result = featurizer.get_templates("MKV" * 30, parsers.parse_hhr(hhr)[1:2])
    assert "do not occur in the query" in result.dropped[0].reason
