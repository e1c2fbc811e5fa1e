"""Parsers on the real files in ../shared/data, checked against AF2's own parsers.

The reference (``alphafold.data.parsers``, ``mmcif_parsing``, ``msa_identifiers``) is run
live on the same text; where the issue says official AF2 behaves differently from the
ColabFold fork (MSE -> M, ColabFold's ``#`` a3m header, pre-3.1 hhr files, mmCIF files
without ``_pdbx_audit_revision_history``) the expected value comes from an independent
reader of the file instead.
"""

from __future__ import annotations

import decimal
import re

import numpy as np
import pytest
from alphafold.data import mmcif_parsing as ref_mmcif
from alphafold.data import msa_identifiers as ref_identifiers
from alphafold.data import parsers as ref
from Bio.Data.PDBData import protein_letters_3to1_extended
from Bio.PDB.MMCIF2Dict import MMCIF2Dict
from shared import SHARED_DATA

from data_pipeline import msa_identifiers, parsers

MSAS = SHARED_DATA / "msas"
A3M_FILES = sorted(p for p in MSAS.glob("*/*.a3m") if p.stat().st_size > 0)
STO_FILES = sorted(MSAS.glob("*/*.sto"))
HHR_FILES = sorted(MSAS.glob("*/*.hhr"))
# A spread of features: ligands, MSE, altlocs, DNA, NMR models, old mmCIF, many chains.
MMCIF_CASES = ["102m", "4zey", "3u8v", "2q2k", "5eil", "4cup", "1lcd", "4i39", "5kc1"]


def _ids(paths):
    return [f"{p.parent.name}/{p.name}" for p in paths]


def _msa_as_lists(msa):
    return (list(msa.sequences), [list(r) for r in msa.deletion_matrix],
            list(msa.descriptions))


# ------------------------------------------------------------------------------ FASTA


@pytest.mark.parametrize(
    "path", sorted(MSAS.glob("*/query.fasta")) + [SHARED_DATA / "templates/pdb_seqres.txt",
                                                   SHARED_DATA / "seqdb/mini_uniref.fasta"],
    ids=lambda p: f"{p.parent.name}/{p.name}")
def test_fasta_matches_reference(path):
    text = path.read_text()
    database = path.name == "mini_uniref.fasta"  # a database may repeat names
    sequences, descriptions = parsers.parse_fasta(text, str(path), unique_names=not database)
    ref_sequences, ref_descriptions = ref.parse_fasta(text)
    assert sequences == ref_sequences
    assert descriptions == ref_descriptions


@pytest.mark.parametrize("text, pattern", [
    ("", r"f\.fa: no FASTA records"),
    (">a\nMKV\n>b\n\n>c\nMK\n", r"f\.fa:3: record 'b' has no sequence"),
    (">a x\nMKV\n>b\nMK\n>a y\nMKL\n",
     r"f\.fa:5: duplicate record name 'a' \(first used at line 1\)"),
    (">a\nMKV\nMK1L\n", r"f\.fa:3:3: invalid residue letter '1'"),
    (">a\nMK*\n", r"f\.fa:2:3: invalid residue letter '\*'"),
    (">a\nMK-L\n", r"f\.fa:2:3: invalid residue letter '-'"),
    ("MKV\n>a\nMKV\n", r"f\.fa:1: expected a '>' header line"),
    (">\nMKV\n", r"f\.fa:1: record has an empty name"),
])
def test_fasta_errors_name_file_and_line(text, pattern):
    with pytest.raises(ValueError, match=pattern):
        parsers.parse_fasta(text, "f.fa")


def test_fasta_upper_cases_and_joins_lines(tmp_path):
    path = tmp_path / "q.fasta"
    path.write_text("\n>q1 first\nmkv\nLL\n\n>q2\nACD\n")
    assert parsers.read_fasta(path) == (["MKVLL", "ACD"], ["q1 first", "q2"])


# ------------------------------------------------------------------------------ A3M


@pytest.mark.parametrize("path", A3M_FILES, ids=_ids(A3M_FILES))
def test_a3m_matches_reference(path):
    text = path.read_text()
    assert _msa_as_lists(parsers.parse_a3m(text, str(path))) == \
        _msa_as_lists(ref.parse_a3m(text))


def test_a3m_accepts_colabfold_header_line():
    path = MSAS / "102m_A/non_pairing.a3m"
    text = path.read_text()
    query = parsers.read_fasta(MSAS / "102m_A/query.fasta")[0][0]
    msa = parsers.parse_a3m(f"#{len(query)}\t1\n" + text)
    assert _msa_as_lists(msa) == _msa_as_lists(ref.parse_a3m(text))
    msa.check_query(query, str(path))


def test_a3m_mismatched_row_names_its_line():
    lines = (MSAS / "102m_A/non_pairing.a3m").read_text().splitlines()
    header_line = 5  # 1-based line of the third record's header
    assert lines[header_line - 1].startswith(">")
    row = lines[header_line]
    cut = next(i for i, c in enumerate(row) if c.isupper())
    lines[header_line] = row[:cut] + row[cut + 1:]  # one match column fewer
    with pytest.raises(ValueError, match=rf"x\.a3m:{header_line}: A3M row .* has 153 match "
                                         r"columns but the query \(first row\) has 154"):
        parsers.parse_a3m("\n".join(lines), "x.a3m")


@pytest.mark.parametrize("text, pattern", [
    ((MSAS / "edge_cases/empty.a3m").read_text(), r"no A3M records"),
    (">q\nMKV\n>h\nMK1\n", r"x\.a3m:4:3: invalid A3M character '1'"),
    (">q\nMKV\n>h\n\n>g\nMKV\n", r"x\.a3m:3: A3M row 'h' has no sequence"),
    ("MKV\n", r"x\.a3m:1: expected a '>' header"),
])
def test_a3m_errors(text, pattern):
    with pytest.raises(ValueError, match=pattern):
        parsers.parse_a3m(text, "x.a3m")


def test_a3m_insertions_and_dots():
    msa = parsers.parse_a3m(">q\nMKVL\n>h desc\nabM.K-cdLe\n")
    assert list(msa.sequences) == ["MKVL", "MK-L"]
    assert [list(r) for r in msa.deletion_matrix] == [[0, 0, 0, 0], [2, 0, 0, 2]]
    assert list(msa.descriptions) == ["q", "h desc"]


def test_check_query_rejects_other_sequence():
    msa = parsers.read_a3m(MSAS / "102m_A/non_pairing.a3m")
    query = parsers.read_fasta(MSAS / "102m_A/query.fasta")[0][0]
    msa.check_query(query)
    other = "W" if query[63] != "W" else "Y"
    mutated = query[:63] + other + query[64:]
    with pytest.raises(ValueError, match=rf"first row is not the query .*residue 64: "
                                         rf"'{query[63]}' vs '{other}'"):
        msa.check_query(mutated, "102m.a3m")
    with pytest.raises(ValueError, match=r"lengths 154 vs 153"):
        msa.check_query(query[:-1])


# ------------------------------------------------------------------------------ Stockholm


@pytest.mark.parametrize("path", STO_FILES, ids=_ids(STO_FILES))
def test_stockholm_matches_reference(path):
    text = path.read_text()
    ours = parsers.parse_stockholm(text, str(path))
    assert _msa_as_lists(ours) == _msa_as_lists(ref.parse_stockholm(text))
    query = parsers.read_fasta(path.parent / "query.fasta")[0][0]
    ours.check_query(query, str(path))
    n = max(1, len(ours) // 3)
    assert _msa_as_lists(parsers.parse_stockholm(text, max_sequences=n)) == \
        _msa_as_lists(ref.parse_stockholm(ref.truncate_stockholm_msa(str(path), n)))
    for kwargs in ({}, {"max_sequences": n}, {"remove_first_row_gaps": False}):
        assert parsers.convert_stockholm_to_a3m(text, **kwargs) == \
            ref.convert_stockholm_to_a3m(text, **kwargs), kwargs
    assert parsers.truncate_stockholm_msa(path, n) == ref.truncate_stockholm_msa(str(path), n)
    assert parsers.deduplicate_stockholm_msa(text) == ref.deduplicate_stockholm_msa(text)
    assert parsers.remove_empty_columns_from_stockholm_msa(text) == \
        ref.remove_empty_columns_from_stockholm_msa(text)


def test_stockholm_to_a3m_round_trip_keeps_the_msa():
    text = (MSAS / "openfold_test_query/uniref90_hits.sto").read_text()
    via_a3m = parsers.parse_a3m(parsers.convert_stockholm_to_a3m(text))
    direct = parsers.parse_stockholm(text)
    assert list(via_a3m.sequences) == list(direct.sequences)
    assert [list(r) for r in via_a3m.deletion_matrix] == [list(r) for r in direct.deletion_matrix]


def test_stockholm_dedup_and_empty_columns_shrink_real_alignment():
    text = (MSAS / "6kwc_1/mgnify_hits.sto").read_text()
    n_before = len(parsers.parse_stockholm(text))
    dedup = parsers.deduplicate_stockholm_msa(text)
    msa = parsers.parse_stockholm(dedup)
    keys = ["".join(s) for s in msa.sequences]
    assert len(set(keys)) == len(keys) < n_before
    trimmed = parsers.read_stockholm_alignment(
        parsers.remove_empty_columns_from_stockholm_msa(dedup))
    columns = np.array([list(s) for s in trimmed.sequences.values()])
    assert (columns != "-").any(axis=0).all()


@pytest.mark.parametrize("text, pattern", [
    ("# STOCKHOLM 1.0\n\nq MKV\nh MK V\n//\n", r"s\.sto:4: expected 'name aligned-sequence'"),
    ("# STOCKHOLM 1.0\nq MKV\nh MKVL\n//\n", r"s\.sto:3: sequence 'h' has 4 aligned columns"),
    ("# STOCKHOLM 1.0\nq MKV\nh M1V\n//\n", r"s\.sto:3:4: invalid character '1'"),
    ("# STOCKHOLM 1.0\n#=GF ID x\n//\n", r"s\.sto: no sequences"),
    ("# STOCKHOLM 1.0\nq MKV\n//\n# STOCKHOLM 1.0\nq MKV\n//\n", r"s\.sto:5: sequence data after"),
])
def test_stockholm_errors(text, pattern):
    with pytest.raises(ValueError, match=pattern):
        parsers.parse_stockholm(text, "s.sto")


def test_tblout_e_values():
    tbl = ("# target name  accession  query name  accession  E-value  score\n"
           "UniRef90_X/1-50  -  query  -  3.1e-20  70.2  0.1\n")
    assert parsers.parse_e_values_from_tblout(tbl) == ref.parse_e_values_from_tblout(tbl)
    with pytest.raises(ValueError, match="tblout line 1: E-value 'abc'"):
        parsers.parse_e_values_from_tblout("x - q - abc 1\n")


# ------------------------------------------------------------------------------ HHR

_FIELDS = ["index", "name", "aligned_cols", "sum_probs", "query", "hit_sequence",
           "indices_query", "indices_hit"]
_TABLE_ROW = re.compile(
    r"^\s*(\d+) .*?\s(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\d+)\s+(\d+)-(\d+)\s+(\d+)-(\d+)"
    r"\s*\(\d+\)\s*$")


def _hhr_query(path):
    fasta = path.parent / ("query.seq" if (path.parent / "query.seq").exists() else "query.fasta")
    return parsers.read_fasta(fasta)[0][0]


@pytest.mark.parametrize("path", HHR_FILES, ids=_ids(HHR_FILES))
def test_hhr_hits_agree_with_summary_table_and_query(path):
    """Every hit's numbers match the file's own summary table, and every aligned query
    letter is the query residue its index points to."""
    text = path.read_text()
    hits = parsers.parse_hhr(text, str(path))
    table = {}
    for line in text.splitlines():
        match = _TABLE_ROW.match(line)
        if match and not line.startswith("No "):
            table.setdefault(int(match[1]), match.groups())
    query = _hhr_query(path)
    assert len(hits) == len(table) > 0
    for hit in hits:
        row = table[hit.index]
        prob, e_value, _, score, _, cols = row[1:7]
        assert hit.prob == pytest.approx(float(prob), abs=0.051)
        # The table prints fewer digits (as few as one): allow half a unit of its last one.
        last_digit = 10.0 ** decimal.Decimal(e_value).as_tuple().exponent
        assert abs(hit.e_value - float(e_value)) <= 0.55 * last_digit
        assert hit.score == pytest.approx(float(score), abs=0.051)
        assert hit.aligned_cols == int(cols)
        q_idx = [i for i in hit.indices_query if i >= 0]
        t_idx = [i for i in hit.indices_hit if i >= 0]
        assert (q_idx[0] + 1, q_idx[-1] + 1) == (int(row[7]), int(row[8]))
        assert (t_idx[0] + 1, t_idx[-1] + 1) == (int(row[9]), int(row[10]))
        assert len(hit.query) == len(hit.hit_sequence) == len(hit.indices_query)
        for letter, index in zip(hit.query, hit.indices_query, strict=True):
            assert (letter == "-") == (index == -1)
            assert index == -1 or letter == query[index]


@pytest.mark.parametrize("path", [p for p in HHR_FILES if "fam69b" not in str(p)],
                         ids=_ids([p for p in HHR_FILES if "fam69b" not in str(p)]))
def test_hhr_matches_reference(path):
    text = path.read_text()
    ours = parsers.parse_hhr(text, str(path))
    theirs = ref.parse_hhr(text)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        for field in _FIELDS:
            assert getattr(a, field) == getattr(b, field), (a.index, field)


def test_hhr_old_format_without_template_neff():
    """HH-suite < 3.1 writes no Template_Neff: AF2's parser fails, ours reads it."""
    hits = parsers.parse_hhr((MSAS / "fam69b_hhsuite/query.hhr").read_text())
    assert hits[0].sum_probs == pytest.approx(410.0)
    assert hits[0].name.startswith("UP20|TITVEVABA|104|471 Protein FAM69A")


def test_hhr_without_hits_is_empty():
    text = (MSAS / "openfold_test_query/pdb70_hits.hhr").read_text()
    assert parsers.parse_hhr(text[: text.index("\n No Hit")]) == []


def test_hhr_damaged_row_names_its_line():
    lines = (MSAS / "openfold_test_query/pdb70_hits.hhr").read_text().splitlines()
    k = next(i for i, line in enumerate(lines) if line.startswith("Q query "))
    lines[k] = lines[k].replace("(73)", "")
    with pytest.raises(ValueError, match=rf"p\.hhr:{k + 1}: cannot read the alignment row"):
        parsers.parse_hhr("\n".join(lines), "p.hhr")
    k2 = next(i for i, line in enumerate(lines) if line.startswith("Probab="))
    lines[k2] = "Probab=7.51  Score=16.19"
    with pytest.raises(ValueError, match=rf"p\.hhr:{k2 + 1}: .*E-value, Aligned_cols missing"):
        parsers.parse_hhr("\n".join(lines), "p.hhr")


# ------------------------------------------------------------------------------ identifiers


def test_species_identifiers_match_reference():
    descriptions = list(parsers.parse_stockholm(
        (MSAS / "2q2k_A/uniprot_hits.sto").read_text()).descriptions)
    descriptions += parsers.parse_a3m((MSAS / "102m_A/pairing.a3m").read_text()).descriptions[:50]
    descriptions += ["sp|P69905|HBA_HUMAN Hemoglobin", "tr|A0A146SKV9_1|A0A146SKV9_FUNHE_12",
                     "", "   "]
    ours = [msa_identifiers.get_identifiers(d).species_id for d in descriptions]
    theirs = [ref_identifiers.get_identifiers(d).species_id for d in descriptions]
    assert ours == theirs
    assert sum(bool(s) for s in ours) >= 20 and "HUMAN" in ours and "FUNHE" in ours


# ------------------------------------------------------------------------------ mmCIF


@pytest.mark.parametrize("pdb_id", MMCIF_CASES)
def test_mmcif_matches_reference(pdb_id):
    path = SHARED_DATA / "structures/mmcif" / f"{pdb_id}.cif"
    text = path.read_text()
    ours = parsers.parse_mmcif_file(path)
    theirs = ref_mmcif.parse(file_id=pdb_id, mmcif_string=text,
                             catch_all_errors=False).mmcif_object
    assert ours.file_id == pdb_id
    assert ours.header["structure_method"] == theirs.header["structure_method"]
    assert ours.header["resolution"] == theirs.header["resolution"]
    raw = MMCIF2Dict(str(path))
    if "release_date" in theirs.header:
        assert ours.header["release_date"] == theirs.header["release_date"]
    else:  # old file: the first _database_PDB_rev date is the release
        assert ours.header["release_date"] == min(raw["_database_PDB_rev.date"])
    assert set(ours.chain_to_seqres) == set(theirs.chain_to_seqres)
    for chain, seqres in theirs.chain_to_seqres.items():
        names = [theirs.seqres_to_structure[chain][i].name for i in range(len(seqres))]
        # Official AF2 gives modified residues their parent's letter (MSE -> M).
        expected = "".join(c if c != "X" else protein_letters_3to1_extended.get(n, "X")
                           for c, n in zip(seqres, names, strict=True))
        assert ours.chain_to_seqres[chain] == expected
        structure_chain = theirs.structure[chain]
        for index, res_ref in theirs.seqres_to_structure[chain].items():
            res = ours.seqres_to_structure[chain][index]
            assert (res.name, res.is_missing, res.hetflag) == \
                (res_ref.name, res_ref.is_missing, res_ref.hetflag)
            if res_ref.is_missing:
                assert res.position is None and ours.get_atoms(chain, index) == {}
                continue
            pos = res_ref.position
            assert (res.position.chain_id, res.position.residue_number,
                    res.position.insertion_code) == \
                (pos.chain_id, pos.residue_number, pos.insertion_code)
            residue = structure_chain[(res_ref.hetflag, pos.residue_number, pos.insertion_code)]
            ref_atoms = {atom.get_name(): atom.get_coord() for atom in residue.get_atoms()}
            atoms = ours.get_atoms(chain, index)
            assert set(atoms) == set(ref_atoms), (chain, index)
            for name, xyz in ref_atoms.items():
                np.testing.assert_allclose(atoms[name], xyz, atol=1e-3)


def test_mmcif_modified_residue_takes_parent_letter():
    obj = parsers.parse_mmcif_file(SHARED_DATA / "structures/mmcif/4zey.cif")
    names = [obj.seqres_to_structure["A"][i].name for i in range(len(obj.chain_to_seqres["A"]))]
    mse = [i for i, n in enumerate(names) if n == "MSE"]
    assert mse and all(obj.chain_to_seqres["A"][i] == "M" for i in mse)
    assert "SE" in obj.get_atoms("A", mse[0])


def test_mmcif_nucleic_acid_chains_are_not_protein():
    obj = parsers.parse_mmcif_file(SHARED_DATA / "structures/mmcif/2q2k.cif")
    assert sorted(obj.chain_to_seqres) == ["A", "B"]
    missing = [i for i, r in obj.seqres_to_structure["A"].items() if r.is_missing]
    assert len(missing) == 70 - 45  # 70 SEQRES residues, 45 observed
    with pytest.raises(KeyError, match="no protein chain 'F'"):
        obj.get_atoms("F", 0)


def test_mmcif_errors_name_the_file():
    text = (SHARED_DATA / "structures/mmcif/102m.cif").read_text()
    with pytest.raises(ValueError, match=r"102m_bad: not a valid mmCIF file: .*\d"):
        parsers.parse_mmcif_string(text[: len(text) // 2] + "\nloop_\n_a.b\n_a.c\n1\n",
                                   "102m_bad")
    no_atoms = re.sub(r"loop_\n_atom_site\.", "loop_\n_atom_zzz.", text)
    with pytest.raises(parsers.MmcifParseError, match=r"102m: the mmCIF file lacks _atom_site"):
        parsers.parse_mmcif_string(no_atoms, "102m")
