"""Tests for data_pipeline.protein on the real PDB / mmCIF entries in ../shared/data.

Oracles, all independent of our reader: INDEX.tsv (per-chain observed protein residue
counts, made with Biopython by whoever assembled the data), the raw mmCIF tables read as
plain CIF (`_pdbx_poly_seq_scheme`, `_atom_site`), and AlphaFold 2's own reader
(`alphafold.common.protein`, Biopython based) run live on the same files.
"""
from __future__ import annotations

import csv
import dataclasses
import functools
import gzip
import io
import warnings
from pathlib import Path

import gemmi
import numpy as np
import pytest
from alphafold.common import protein as af_protein
from alphafold.common import residue_constants as af_rc
from Bio.PDB import MMCIFParser, PDBParser
from shared import MMCIF_FILES, PDB_FILES, SHARED_DATA, STRUCTURE_FILES

from data_pipeline import protein
from data_pipeline import residue_constants as rc

MET, UNK = rc.restype_order["M"], rc.unk_restype_index
SD = rc.atom_order["SD"]
BY_ID = {p.stem: p for p in STRUCTURE_FILES}


@functools.cache
def read(stem: str) -> protein.Protein:
    return protein.from_file(BY_ID[stem])


@functools.cache
def index_protein_chains() -> dict[str, list[tuple[str, int]]]:
    """INDEX.tsv: entry -> [(chain id, observed residues)] of its protein chains ('P')."""
    out = {}
    with open(SHARED_DATA / "INDEX.tsv", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            if row["kind"] != "structure":
                continue
            chains = [c.split(":") for c in row["chains(observed: type+residues)"].split()]
            out[Path(row["path"]).stem] = [(c, int(t[1:])) for c, t in chains if t[0] == "P"]
    return out


def cif_table(path: Path, category: str, *tags: str) -> list[list[str]]:
    block = gemmi.cif.read(str(path))[0]
    table = block.find(category, list(tags))
    return [[gemmi.cif.as_string(row[i]) for i in range(len(tags))] for row in table]


def keys(prot: protein.Protein) -> list[tuple[str, int, str]]:
    return [(prot.chain_ids[c], int(r), i) for c, r, i in
            zip(prot.chain_index, prot.residue_index, prot.insertion_code, strict=True)]


# ----------------------------------------------------------------------------- every file


def test_data_present():
    assert len(MMCIF_FILES) >= 20 and len(PDB_FILES) >= 10


@pytest.mark.parametrize("path", STRUCTURE_FILES, ids=lambda p: p.name)
def test_chains_and_counts_match_index(path):
    prot = read(path.stem)
    assert prot.atom_positions.shape == (prot.num_res, 37, 3)
    assert prot.atom_positions.dtype == np.float32 and prot.aatype.dtype == np.int32
    got = [(c, int(np.sum(prot.chain_index == i))) for i, c in enumerate(prot.chain_ids)]
    assert got == index_protein_chains()[path.stem]
    assert np.all(prot.atom_mask.sum(-1) > 0)


@pytest.mark.parametrize("path", MMCIF_FILES, ids=lambda p: p.name)
def test_mmcif_sequence_and_numbering_match_poly_seq_scheme(path):
    """Observed residues listed in _pdbx_poly_seq_scheme of protein entities, in order."""
    protein_entities = {e for e, t in cif_table(path, "_entity_poly.", "entity_id", "type")
                        if t == "polypeptide(L)"}
    expected: dict[str, list] = {}
    for ent, mon, num, icode, strand, pdb_mon in cif_table(
        path, "_pdbx_poly_seq_scheme.", "entity_id", "mon_id", "pdb_seq_num",
        "pdb_ins_code", "pdb_strand_id", "pdb_mon_id",
    ):
        if ent in protein_entities and pdb_mon:  # as_string gives "" for ? and .
            letter = "M" if mon == "MSE" else af_rc.restype_3to1.get(mon, "X")
            code = icode
            expected.setdefault(strand, []).append((int(num), code, letter))
    prot = read(path.stem)
    assert list(prot.chain_ids) == list(expected)
    for cid, residues in expected.items():
        rows = prot.chain_index == prot.chain_ids.index(cid)
        assert list(zip(prot.residue_index[rows].tolist(), prot.insertion_code[rows].tolist(),
                        prot.sequence(cid), strict=True)) == residues


def _first_model_mmcif_text(path: Path) -> str:
    """The mmCIF text without the _atom_site rows of models after the first (saves parsing
    time). wwPDB files write one row per line with pdbx_PDB_model_num as the last column."""
    lines = path.read_text().splitlines()
    tags = [i for i, ln in enumerate(lines) if ln.startswith("_atom_site.")]
    if not tags or not lines[tags[-1]].strip().endswith("pdbx_PDB_model_num"):
        return "\n".join(lines)
    end = tags[-1] + 1
    while end < len(lines) and not lines[end].startswith(("#", "loop_", "_")):
        end += 1
    rows = lines[tags[-1] + 1:end]
    first = rows[0].split()[-1]
    return "\n".join(lines[:tags[-1] + 1] + [r for r in rows if r.split()[-1] == first]
                     + lines[end:])


def _af2_first_model(path: Path):
    """Biopython structure holding only the first model (what AF2's reader accepts)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if path.suffix == ".pdb":
            structure = PDBParser(QUIET=True).get_structure("x", str(path))
        else:
            text = io.StringIO(_first_model_mmcif_text(path))
            structure = MMCIFParser(QUIET=True).get_structure("x", text)
    for model in list(structure)[1:]:
        structure.detach_child(model.id)
    return structure


@pytest.mark.parametrize("path", STRUCTURE_FILES, ids=lambda p: p.name)
def test_matches_alphafold_reader(path):
    """Positions, masks, aatype and B-factors equal AF2's reader, chain by chain.

    AF2 refuses insertion codes, so those residues are taken out of its input and checked
    against Biopython's residue ids; AF2 reads MSE as X with no SD, we read MET with SE as SD.
    """
    ours = read(path.stem)
    structure = _af2_first_model(path)
    for c, cid in enumerate(ours.chain_ids):
        rows = np.flatnonzero(ours.chain_index == c)
        bio_chain = structure[0][cid]
        icode_residues = [r for r in bio_chain if r.id[2] != " "]
        for r in icode_residues:
            bio_chain.detach_child(r.id)
        af = af_protein._from_bio_structure(structure, chain_id=cid)
        bio_by_num = {}
        for res in bio_chain:
            if res.id[0] != "W":
                bio_by_num.setdefault(res.id[1], res)
        af_rows = {}
        for k, resnum in enumerate(af.residue_index.tolist()):
            af_rows.setdefault(resnum, k)  # waters/ligands may reuse numbers after the chain
        ours_plain = [r for r in rows if ours.insertion_code[r] == ""]
        assert sorted((r.id[1], r.id[2]) for r in icode_residues if r.id[0] != "W") == sorted(
            (int(ours.residue_index[r]), ours.insertion_code[r])
            for r in rows if ours.insertion_code[r])
        # every standard amino acid AF2 finds in this chain is ours too
        af_standard = {int(af.residue_index[k]) for k in range(len(af.aatype))
                       if af.aatype[k] < 20}
        assert af_standard <= {int(ours.residue_index[r]) for r in ours_plain}
        for r in ours_plain:
            k = af_rows[int(ours.residue_index[r])]
            mask, pos, bfac = af.atom_mask[k].copy(), af.atom_positions[k], af.b_factors[k]
            bio_res = bio_by_num[int(ours.residue_index[r])]
            if bio_res.resname == "MSE":
                assert af.aatype[k] == UNK and ours.aatype[r] == MET
                se = bio_res["SE"]
                np.testing.assert_allclose(ours.atom_positions[r, SD], se.coord, atol=1e-4)
                assert ours.b_factors[r, SD] == pytest.approx(se.bfactor, abs=1e-4)
                mask[SD] = 1.0
            else:
                assert ours.aatype[r] == af.aatype[k]
            np.testing.assert_array_equal(ours.atom_mask[r], mask)
            present = af.atom_mask[k] > 0
            np.testing.assert_allclose(ours.atom_positions[r][present], pos[present], atol=1e-4)
            np.testing.assert_allclose(ours.b_factors[r][present], bfac[present], atol=1e-4)


# ----------------------------------------------------------------------------- specific facts


@pytest.mark.parametrize("stem", ["4zey", "1qys", "2rbg"])
def test_selenomethionine_becomes_met(stem):
    prot = read(stem)
    st = gemmi.read_structure(str(BY_ID[stem]))
    mse = [(ch.name, r.seqid.num, r) for ch in st[0] for r in ch if r.name == "MSE"]
    assert mse, f"{stem} should contain MSE"
    index = {k: i for i, k in enumerate(keys(prot))}
    for cid, num, res in mse:
        i = index[(cid, num, "")]
        assert prot.aatype[i] == MET and prot.atom_mask[i, SD] == 1.0
        se = max((a for a in res if a.name == "SE"), key=lambda a: a.occ)
        np.testing.assert_allclose(prot.atom_positions[i, SD], se.pos.tolist(), atol=1e-4)
    assert "X" not in "".join(prot.sequences().values())


@pytest.mark.parametrize("stem", ["1k1a", "4i39"])
def test_altlocs_keep_highest_occupancy_first_on_ties(stem):
    """Recomputed from the raw _atom_site rows (first model; no Biopython, no gemmi model)."""
    rows = cif_table(BY_ID[stem] , "_atom_site.", "auth_asym_id", "auth_seq_id", "label_atom_id",
                     "label_alt_id", "occupancy", "Cartn_x", "Cartn_y", "Cartn_z")
    best: dict[tuple, tuple[float, list[float]]] = {}
    n_alt = 0
    for chain, num, atom, alt, occ, *xyz in rows:
        n_alt += alt != ""
        key = (chain, int(num), atom)
        if key not in best or float(occ) > best[key][0]:
            best[key] = (float(occ), [float(v) for v in xyz])
    assert n_alt > 0
    prot = read(stem)
    checked = 0
    for i, (cid, num, _) in enumerate(keys(prot)):
        for slot in np.flatnonzero(prot.atom_mask[i]):
            _, xyz = best[(cid, num, rc.atom_types[slot])]
            np.testing.assert_allclose(prot.atom_positions[i, slot], xyz, atol=1e-4)
            checked += 1
    assert checked == int(prot.atom_mask.sum())


@pytest.mark.parametrize("stem", ["5kc1", "3htn"])
def test_multichain_selection(stem):
    prot = read(stem)
    assert prot.num_chains == len(index_protein_chains()[stem]) > 1
    pick = [prot.chain_ids[-1], prot.chain_ids[0]]
    sub = protein.from_file(BY_ID[stem], chain_id=pick)
    assert sub.chain_ids == tuple(pick)
    assert_same(sub, prot.select_chains(pick), atol=0, b_atol=0)
    assert list(sub.sequences()) == pick
    one = protein.from_file(BY_ID[stem], chain_id=prot.chain_ids[1])
    assert one.chain_ids == (prot.chain_ids[1],)
    assert one.sequence() == prot.sequence(prot.chain_ids[1])


@pytest.mark.parametrize("stem", ["7pzb", "4yow", "2q2k"])
def test_nucleic_acid_chains_are_skipped(stem):
    st = gemmi.read_structure(str(BY_ID[stem]))
    st.setup_entities()
    dna = [ch.name for ch in st[0] if ch.get_polymer().check_polymer_type()
           in (gemmi.PolymerType.Dna, gemmi.PolymerType.Rna, gemmi.PolymerType.DnaRnaHybrid)]
    assert dna
    prot = read(stem)
    assert not set(dna) & set(prot.chain_ids)
    with pytest.raises(ValueError, match=rf"{stem}.*chain '{dna[0]}' is not a protein chain"):
        protein.from_file(BY_ID[stem], chain_id=dna[0])


def test_nmr_reads_first_model_only():
    path = BY_ID["1l2y"]
    rows = cif_table(path, "_atom_site.", "pdbx_PDB_model_num", "auth_seq_id", "label_atom_id",
                     "Cartn_x", "Cartn_y", "Cartn_z")
    models = sorted({int(r[0]) for r in rows})
    assert len(models) == 38
    prot = read("1l2y")
    assert prot.num_res == 20
    ca = {int(num): [float(v) for v in xyz] for m, num, atom, *xyz in rows
          if atom == "CA" and int(m) == models[0]}
    ca2 = {int(num): [float(v) for v in xyz] for m, num, atom, *xyz in rows
           if atom == "CA" and int(m) == models[1]}
    ours = prot.atom_positions[:, rc.atom_order["CA"]]
    np.testing.assert_allclose(ours, [ca[n] for n in prot.residue_index], atol=1e-4)
    assert np.abs(ours - np.array([ca2[n] for n in prot.residue_index])).max() > 0.1


def test_unknown_residues_become_x():
    # Real non-standard residues inside protein chains: BP5 in 5eil, CAS in 1bhl.
    for stem, name in [("5eil", "BP5"), ("1bhl", "CAS")]:
        st = gemmi.read_structure(str(BY_ID[stem]))
        nums = {(ch.name, r.seqid.num) for ch in st[0] for r in ch.get_polymer() if r.name == name}
        prot = read(stem)
        got = {(cid, num) for (cid, num, _), aa in zip(keys(prot), prot.aatype, strict=True)
               if aa == UNK}
        assert nums and got == nums
    # A made-up residue name in an otherwise standard file.
    text = BY_ID["1gcn"].read_text()
    edited = "\n".join(
        line[:17] + "XYZ" + line[20:] if line.startswith("ATOM") and line[22:26] == "  10"
        else line for line in text.splitlines()
    )
    prot, ref = protein.from_pdb_string(edited), read("1gcn")
    i = int(np.flatnonzero(ref.residue_index == 10)[0])
    assert prot.aatype[i] == UNK and ref.aatype[i] != UNK
    seq, ref_seq = prot.sequence(), ref.sequence()
    assert seq[:i] + seq[i + 1:] == ref_seq[:i] + ref_seq[i + 1:]
    np.testing.assert_array_equal(prot.atom_mask[i], ref.atom_mask[i])  # atom37 names kept


def test_altloc_tie_and_microheterogeneity_rules():
    """Hand-made altlocs on real 1gcn lines: residue 2 has SER (occ .40) / THR (occ .60)."""
    lines = [ln for ln in BY_ID["1gcn"].read_text().splitlines() if ln.startswith("ATOM")]
    res1 = [ln for ln in lines if ln[22:26] == "   1"]
    res2 = [ln for ln in lines if ln[22:26] == "   2"]
    ca1 = next(ln for ln in res1 if ln[12:16] == " CA ")
    tie_a = ca1[:16] + "A" + ca1[17:54] + "  0.50" + ca1[60:]
    tie_b = ca1[:16] + "B" + ca1[17:30] + "   1.000   2.000   3.000  0.50" + ca1[60:]
    res1 = [tie_a if ln is ca1 else ln for ln in res1]
    res1.insert(res1.index(tie_a) + 1, tie_b)
    ser = [ln[:16] + "A" + ln[17:54] + "  0.40" + ln[60:] for ln in res2]
    thr = [ln[:16] + "B" + "THR" + ln[20:30] + f"{float(ln[30:38]) + 5:8.3f}" + ln[38:54]
           + "  0.60" + ln[60:] for ln in res2 if ln[12:16] in (" N  ", " CA ", " C  ", " O  ")]
    prot = protein.from_pdb_string("\n".join(res1 + ser + thr + ["END"]))
    assert prot.num_res == 2
    np.testing.assert_allclose(prot.atom_positions[0, 1],
                               [float(ca1[30:38]), float(ca1[38:46]), float(ca1[46:54])])
    assert prot.aatype[1] == rc.restype_order["T"]
    assert prot.atom_mask[1].sum() == 4
    np.testing.assert_allclose(prot.atom_positions[1, 0, 0], float(res2[0][30:38]) + 5, atol=1e-3)


# ----------------------------------------------------------------------------- round trips


def assert_same(a: protein.Protein, b: protein.Protein, atol: float = 1.01e-3,
                b_atol: float = 1.01e-3):
    assert a.chain_ids == b.chain_ids
    np.testing.assert_array_equal(a.aatype, b.aatype)
    np.testing.assert_array_equal(a.chain_index, b.chain_index)
    np.testing.assert_array_equal(a.residue_index, b.residue_index)
    np.testing.assert_array_equal(a.insertion_code, b.insertion_code)
    np.testing.assert_array_equal(a.atom_mask, b.atom_mask)
    present = a.atom_mask > 0
    np.testing.assert_allclose(a.atom_positions[present], b.atom_positions[present], atol=atol)
    np.testing.assert_allclose(a.b_factors[present], b.b_factors[present], atol=b_atol)


@pytest.mark.parametrize("path", STRUCTURE_FILES, ids=lambda p: p.name)
def test_round_trip_pdb_and_mmcif(path):
    prot = read(path.stem)
    pdb_text = protein.to_pdb(prot)
    assert all(len(ln) == 80 for ln in pdb_text.splitlines())
    assert pdb_text.count("\nTER ") == prot.num_chains and pdb_text.rstrip().endswith("END")
    assert_same(prot, protein.from_pdb_string(pdb_text))

    plddt = np.round(np.linspace(20.0, 95.0, prot.num_res), 2)
    cif_text = protein.to_mmcif(prot, plddt=plddt, entry_id=path.stem, model_name="test model")
    assert_same(prot, protein.from_mmcif_string(cif_text))
    local = cif_table_from_text(cif_text, "_ma_qa_metric_local.", "label_asym_id",
                                "label_seq_id", "metric_value")
    assert len(local) == prot.num_res
    np.testing.assert_allclose([float(v) for *_, v in local], plddt, atol=1e-6)
    glob = cif_table_from_text(cif_text, "_ma_qa_metric_global.", "metric_value")
    assert float(glob[0][0]) == pytest.approx(plddt.mean(), abs=0.006)


def cif_table_from_text(text: str, category: str, *tags: str) -> list[list[str]]:
    block = gemmi.cif.read_string(text)[0]
    return [[gemmi.cif.as_string(row[i]) for i in range(len(tags))]
            for row in block.find(category, list(tags))]


def test_modelcif_names_software_and_model_and_gemmi_reads_it(tmp_path):
    prot = read("2rbg")
    plddt = np.full(prot.num_res, 80.0)
    path = protein.to_file(prot, tmp_path / "out" / "model.cif", plddt=plddt,
                           model_name="ranked_0", software_name="Uni-Fold",
                           software_version="9.9")
    block = gemmi.cif.read(str(path))[0]
    assert block.find_value("_software.name") == "Uni-Fold"
    assert block.find_value("_software.version") == "9.9"
    assert gemmi.cif.as_string(block.find_value("_ma_model_list.model_name")) == "ranked_0"
    metrics = cif_table_from_text(path.read_text(), "_ma_qa_metric.", "type", "mode")
    assert sorted(metrics) == [["pLDDT", "global"], ["pLDDT", "local"]]
    types = [gemmi.cif.as_string(v) for v in block.find_values("_entity_poly.type")]
    assert types == ["polypeptide(L)"]  # the homodimer shares one entity
    st = gemmi.read_structure(str(path))
    assert [ch.name for ch in st[0]] == list(prot.chain_ids)
    assert st[0].count_atom_sites() == int(prot.atom_mask.sum())
    assert list(tmp_path.glob("out/.*")) == []  # no temporary left behind


def test_from_prediction_and_pdb_bfactor_column(tmp_path):
    ref = read("3htn")
    onehot = np.eye(21)[ref.aatype]
    plddt = np.linspace(10, 90, ref.num_res).astype(np.float32)
    pred = protein.from_prediction(ref.atom_positions, ref.atom_mask, onehot, plddt=plddt,
                                   chain_index=ref.chain_index)
    assert pred.chain_ids == ("A", "B", "C")
    np.testing.assert_array_equal(pred.aatype, ref.aatype)
    np.testing.assert_array_equal(pred.b_factors, np.repeat(plddt[:, None], 37, axis=1))
    for c in range(3):
        np.testing.assert_array_equal(pred.residue_index[pred.chain_index == c],
                                      np.arange(1, np.sum(ref.chain_index == c) + 1))
    path = protein.to_file(pred, tmp_path / "pred.pdb")
    bcol = [float(ln[60:66]) for ln in path.read_text().splitlines() if ln.startswith("ATOM")]
    np.testing.assert_allclose(bcol, np.repeat(plddt, ref.atom_mask.sum(-1).astype(int)),
                               atol=5e-3)
    assert_same(pred, protein.from_pdb(path), b_atol=5.01e-3)  # B column has 2 decimals
    no_b = dataclass_replace(pred, b_factors=np.zeros_like(pred.b_factors))
    again = protein.from_pdb(protein.to_file(no_b, tmp_path / "pred2.pdb", plddt=plddt))
    assert_same(pred, again, b_atol=5.01e-3)


def test_chain_ids_longer_than_one_character():
    prot = read("2rbg")
    renamed = dataclass_replace(prot, chain_ids=("AA", "B1"))
    with pytest.raises(ValueError, match="one-character chain ids.*to_mmcif"):
        protein.to_pdb(renamed)
    back = protein.from_pdb_string(protein.to_pdb(renamed, remap_chain_ids=True))
    assert back.chain_ids == ("A", "B")
    assert_same(renamed, protein.from_mmcif_string(protein.to_mmcif(renamed)))


def dataclass_replace(prot: protein.Protein, **changes) -> protein.Protein:
    return dataclasses.replace(prot, **changes)


# ----------------------------------------------------------------------------- bad input


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pdb"):
        protein.from_pdb(tmp_path / "nope.pdb")
    for name, reader in [("e.pdb", protein.from_pdb), ("e.cif", protein.from_mmcif)]:
        (tmp_path / name).write_text("\n  \n")
        with pytest.raises(ValueError, match=rf"{name}.*empty"):
            reader(tmp_path / name)


def test_truncated_files(tmp_path):
    text = BY_ID["2rbg"].read_text()
    cut = text.index("\nATOM ", len(text) // 2) + 40  # inside an ATOM line
    (tmp_path / "t.pdb").write_text(text[:cut])
    with pytest.raises(ValueError, match=r"t\.pdb.*truncated"):
        protein.from_pdb(tmp_path / "t.pdb")
    cut_line = text.index("\nATOM ", len(text) // 2) + 1  # clean cut at a line: no END
    (tmp_path / "t2.pdb").write_text(text[:cut_line])
    with pytest.raises(ValueError, match=r"t2\.pdb.*no END record.*truncated"):
        protein.from_pdb(tmp_path / "t2.pdb")
    cif = BY_ID["1l2y"].read_text()
    (tmp_path / "t.cif").write_text(cif[: len(cif) // 2 + 17])
    with pytest.raises(ValueError, match=r"t\.cif.*(truncated|not a valid)"):
        protein.from_mmcif(tmp_path / "t.cif")


def test_wrong_format_is_named(tmp_path):
    (tmp_path / "x.pdb").write_text(BY_ID["1l2y"].read_text())
    with pytest.raises(ValueError, match=r"x\.pdb.*mmCIF.*from_mmcif"):
        protein.from_pdb(tmp_path / "x.pdb")
    (tmp_path / "x.cif").write_text(BY_ID["1gcn"].read_text())
    with pytest.raises(ValueError, match=r"x\.cif.*not a valid mmCIF"):
        protein.from_mmcif(tmp_path / "x.cif")
    with pytest.raises(ValueError, match=r"x\.txt.*suffix"):
        protein.from_file(tmp_path / "x.txt")


def test_file_without_protein(tmp_path):
    """Only the DNA chains, cAMP and waters of 7pzb (protein chains A and B removed)."""
    lines = [ln for ln in BY_ID["7pzb"].read_text().splitlines()
             if not (ln.startswith(("ATOM", "HETATM", "ANISOU", "TER")) and ln[21] in "AB"
                     and ln[17:20].strip() not in ("HOH", "PCG"))]
    assert any(ln.startswith("HETATM") for ln in lines)
    (tmp_path / "dna.pdb").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"dna\.pdb.*no protein"):
        protein.from_pdb(tmp_path / "dna.pdb")


def test_missing_chain_is_named():
    with pytest.raises(ValueError, match=r"2xhe\.cif.*chain 'Z' does not exist.*\['A', 'B'\]"):
        protein.from_mmcif(BY_ID["2xhe"], chain_id="Z")
    with pytest.raises(ValueError, match="cannot select chains"):
        read("2xhe").select_chains(["A", "Q"])


def test_protein_validates_its_arrays():
    prot = read("1gcn")
    n = prot.num_res
    with pytest.raises(ValueError, match=r"atom_mask must have shape \[29, 37\]"):
        dataclass_replace(prot, atom_mask=np.ones((n, 14)))
    with pytest.raises(ValueError, match="aatype must lie in 0..20"):
        dataclass_replace(prot, aatype=np.full(n, 21))
    with pytest.raises(ValueError, match="unique"):
        dataclass_replace(prot, residue_index=np.zeros(n))
    with pytest.raises(ValueError, match="contiguous"):
        dataclass_replace(prot, chain_index=np.arange(n) % 2, chain_ids=("A", "B"))
    with pytest.raises(ValueError, match="chain_ids must be unique"):
        dataclass_replace(prot, chain_ids=("A", "A"))
    bad = prot.atom_positions.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        dataclass_replace(prot, atom_positions=bad)
    with pytest.raises(ValueError, match="plddt must have shape"):
        protein.to_mmcif(prot, plddt=np.zeros(n + 1))


def test_af2_pdb_reader_reads_our_pdb():
    """AF2's own parser reads our PDB output to the same arrays."""
    prot = read("5l33")
    af = af_protein.from_pdb_string(protein.to_pdb(prot))
    np.testing.assert_array_equal(af.aatype, prot.aatype)
    np.testing.assert_array_equal(af.atom_mask, prot.atom_mask)
    np.testing.assert_allclose(af.atom_positions, prot.atom_positions, atol=1.01e-3)
    np.testing.assert_allclose(af.b_factors, prot.b_factors, atol=1.01e-3)


def test_blank_chain_id_and_gzip(tmp_path):
    """Old PDB files may leave column 22 blank; such a chain gets the first unused letter."""
    text = BY_ID["1gcn"].read_text()
    blank = "\n".join(ln[:21] + " " + ln[22:] if ln.startswith(("ATOM", "HETATM", "TER"))
                      else ln for ln in text.splitlines())
    with gzip.open(tmp_path / "blank.pdb.gz", "wt") as fh:
        fh.write(blank)
    prot = protein.from_file(tmp_path / "blank.pdb.gz")
    assert prot.chain_ids == ("A",)
    assert_same(read("1gcn"), prot, atol=0, b_atol=0)


def test_reads_colabfold_prediction_in_both_formats():
    """ColabFold wrote one prediction as PDB (no END record) and as AF2-style mmCIF."""
    folder = SHARED_DATA / "reference_outputs" / "colabfold_ERR550519"
    from_pdb = protein.from_file(folder / "ERR550519_2213899_unrelaxed_model_1.pdb")
    from_cif = protein.from_file(folder / "ERR550519_2213899_unrelaxed_model_1.cif")
    assert from_pdb.num_res == 130 and from_pdb.chain_ids == ("A",)
    assert_same(from_pdb, from_cif)
    assert 50 < float(from_pdb.b_factors[:, 1].mean()) <= 100  # pLDDT in the B column
