"""Search-program wrappers run for real on the small databases in ../shared/data.

Where AF2 wraps the same program (jackhmmer, hhblits, hhsearch, hmmbuild/hmmsearch,
kalign) the reference wrapper is run on the same input and must give the same output,
which pins our command lines to AF2's defaults. Every run is kept small: one CPU, one
iteration, small databases.
"""

from __future__ import annotations

import collections
import os
import time

import pytest
from alphafold.data.tools import hhblits as ref_hhblits
from alphafold.data.tools import hhsearch as ref_hhsearch
from alphafold.data.tools import hmmbuild as ref_hmmbuild
from alphafold.data.tools import hmmsearch as ref_hmmsearch
from alphafold.data.tools import jackhmmer as ref_jackhmmer
from alphafold.data.tools import kalign as ref_kalign
from shared import SHARED_DATA

from data_pipeline import parsers, tools

MSAS = SHARED_DATA / "msas"
QUERY_102M = str(MSAS / "102m_A/query.fasta")
MINI_UNIREF = str(SHARED_DATA / "seqdb/mini_uniref.fasta")
GLOBINS45 = str(SHARED_DATA / "seqdb/hmmer_tutorial/globins45.fa")
PDB_MINI = str(SHARED_DATA / "templates/hhsuite_db/pdb_mini")
PDB_SEQRES = str(SHARED_DATA / "templates/pdb_seqres.txt")
GLOBIN_FAMILIES = {"102m_A", "1a00_A", "globin"}


def _query_sequence() -> str:
    return parsers.read_fasta(QUERY_102M)[0][0]


def _family(description: str) -> str:
    return next((w[7:] for w in description.split() if w.startswith("family=")), "")


@pytest.fixture(scope="module")
def uniref_sto() -> str:
    """jackhmmer of 102m_A against mini_uniref (AF2's UniRef90 stage in small)."""
    return tools.Jackhmmer(database_path=MINI_UNIREF, n_cpu=1).query(QUERY_102M)[0]["sto"]


@pytest.fixture(scope="module")
def seqres() -> dict:
    sequences, descriptions = parsers.read_fasta(PDB_SEQRES)
    return {d.split()[0]: s for s, d in zip(sequences, descriptions, strict=True)}


# ------------------------------------------------------------------------------ jackhmmer


def test_jackhmmer_finds_the_globins_like_af2(uniref_sto):
    ref = ref_jackhmmer.Jackhmmer(binary_path="/usr/bin/jackhmmer", database_path=MINI_UNIREF,
                                  n_cpu=1).query(QUERY_102M)[0]
    assert uniref_sto == ref["sto"]
    msa = parsers.parse_stockholm(uniref_sto)
    msa.check_query(_query_sequence(), "jackhmmer output")
    families = collections.Counter(
        _family(d) for d in parsers.read_stockholm_alignment(uniref_sto).descriptions.values())
    assert set(families) <= GLOBIN_FAMILIES  # no decoy family is hit
    assert families["102m_A"] >= 300 and families["1a00_A"] >= 100 and families["globin"] >= 30


def test_jackhmmer_max_sequences_and_tblout():
    jackhmmer = tools.Jackhmmer(database_path=GLOBINS45, n_cpu=1, get_tblout=True)
    result = jackhmmer.query(QUERY_102M)[0]
    names = [n.split("/")[0] for n in parsers.parse_stockholm(result["sto"]).descriptions]
    myoglobins = {n for n in names if n.startswith("MYG_")}
    assert len(myoglobins) == 7 and len(names) >= 41  # all 7 myoglobins, most of the 45
    e_values = parsers.parse_e_values_from_tblout(result["tbl"])
    assert myoglobins <= set(e_values) and all(e_values[n] < 1e-4 for n in myoglobins)
    assert result["wall_time_s"] > 0 and result["n_iter"] == 1
    truncated = jackhmmer.query(QUERY_102M, max_sequences=5)[0]["sto"]
    assert [n.split("/")[0] for n in parsers.parse_stockholm(truncated).descriptions] == names[:5]


# ------------------------------------------------------------------------------ HH-suite


def test_hhsearch_ranks_myoglobin_templates_first(seqres):
    a3m = (MSAS / "102m_A/non_pairing.a3m").read_text()
    hhsearch = tools.HHSearch(databases=[PDB_MINI], n_cpu=1)
    hits = hhsearch.get_template_hits(hhsearch.query(a3m), "")
    assert [h.name.split()[0] for h in hits[:2]] == ["102m_A", "8f9h_A"]
    assert hits[0].prob > 99 and hits[1].prob > 99 and hits[2].prob < 50
    ref_hhr = ref_hhsearch.HHSearch(binary_path="/usr/bin/hhsearch",
                                    databases=[PDB_MINI]).query(a3m)
    ref_hits = parsers.parse_hhr(ref_hhr)
    assert [(h.name, h.indices_query, h.indices_hit, h.hit_sequence) for h in hits] == \
        [(h.name, h.indices_query, h.indices_hit, h.hit_sequence) for h in ref_hits]
    for hit in hits[:5]:  # every aligned template letter is the PDB chain's residue there
        chain = seqres[hit.name.split()[0]]
        for letter, index in zip(hit.hit_sequence, hit.indices_hit, strict=True):
            assert index == -1 or chain[index] == letter


def test_hhblits_pulls_the_template_family_msa():
    hhblits = tools.HHBlits(databases=[PDB_MINI], n_cpu=1, n_iter=1)
    result = hhblits.query(QUERY_102M)[0]
    ref = ref_hhblits.HHBlits(binary_path="/usr/bin/hhblits", databases=[PDB_MINI], n_cpu=1,
                              n_iter=1).query(QUERY_102M)[0]
    assert result["a3m"] == ref["a3m"]
    msa = parsers.parse_a3m(result["a3m"], "hhblits output")
    msa.check_query(_query_sequence(), "hhblits output")
    family = {d.split()[0] for d in
              parsers.read_a3m(MSAS / "102m_A/non_pairing.a3m").descriptions}
    found = [d.split()[0] for d in msa.descriptions[1:]]
    assert len(found) >= 50 and sum(n in family for n in found) >= 0.9 * len(found)


# ------------------------------------------------------------------------------ HMMER


def test_hmmsearch_template_search_matches_af2(uniref_sto, seqres):
    """AF2-Multimer's flow: dedup + drop empty columns, hmmbuild --hand, hmmsearch."""
    msa_for_templates = parsers.remove_empty_columns_from_stockholm_msa(
        parsers.deduplicate_stockholm_msa(uniref_sto))
    hmmsearch = tools.Hmmsearch(database_path=PDB_SEQRES, n_cpu=1)
    output = hmmsearch.query(msa_for_templates)
    ref_searcher = ref_hmmsearch.Hmmsearch(binary_path="/usr/bin/hmmsearch",
                                           hmmbuild_binary_path="/usr/bin/hmmbuild",
                                           database_path=PDB_SEQRES)
    assert output == ref_searcher.query(msa_for_templates)
    query = _query_sequence()
    hits = hmmsearch.get_template_hits(output, query)
    ref_hits = ref_searcher.get_template_hits(output, query)
    assert [vars(h) | {"prob": None, "e_value": None, "score": None} for h in hits] == \
        [vars(h) | {"prob": None, "e_value": None, "score": None} for h in ref_hits]
    assert [h.name for h in hits[:2]] == ["102m_A", "8f9h_A"]
    assert hits[0].aligned_cols == len(query)
    assert hits[0].hit_sequence == seqres["102m_A"]
    # Each hit's match-column letters sit at the PDB chain positions its indices name.
    alignment = parsers.read_stockholm_alignment(output)
    names = [n for n in alignment.names if "mol:protein" in alignment.descriptions[n]]
    for hit, name in zip(hits, names, strict=True):
        assert name.startswith(hit.name + "/")
        chain = seqres[hit.name]
        matches = [c for c in alignment.sequences[name] if c.isupper() or c == "-"]
        assert len(matches) == len(hit.indices_hit) == len(query)
        for letter, index in zip(matches, hit.indices_hit, strict=True):
            assert (letter == "-") == (index == -1)
            assert index == -1 or chain[index] == letter


def test_hmmsearch_without_hits_and_hmmbuild_without_reference_line():
    fn3 = (SHARED_DATA / "seqdb/hmmer_tutorial/fn3.sto").read_text()  # no #=GC RF line
    hmmsearch = tools.Hmmsearch(
        database_path=str(SHARED_DATA / "seqdb/hmmer_tutorial/HBB_HUMAN"), n_cpu=1)
    with pytest.raises(tools.ToolError, match=r"(?s)hmmbuild failed.*no reference annotation"):
        hmmsearch.query(fn3)  # --hand needs the reference columns
    output = hmmsearch.query_with_hmm(tools.Hmmbuild().build_profile_from_sto(fn3))
    assert hmmsearch.get_template_hits(output, _query_sequence()) == []


def _without_date(hmm: str) -> str:
    return "\n".join(line for line in hmm.splitlines() if not line.startswith("DATE"))


def test_hmmbuild_from_a3m_and_sto_like_af2():
    hmmbuild = tools.Hmmbuild()
    reference = ref_hmmbuild.Hmmbuild(binary_path="/usr/bin/hmmbuild")
    sto = (SHARED_DATA / "seqdb/hmmer_tutorial/globins4.sto").read_text()
    from_sto = hmmbuild.build_profile_from_sto(sto)
    assert from_sto.startswith("HMMER3") and "\nLENG  149\n" in from_sto
    assert _without_date(from_sto) == _without_date(reference.build_profile_from_sto(sto))
    a3m = (MSAS / "2q2k_A/bfd_uniclust_hits.a3m").read_text()
    assert _without_date(hmmbuild.build_profile_from_a3m(a3m)) == \
        _without_date(reference.build_profile_from_a3m(a3m))
    with pytest.raises(ValueError, match="model_construction must be 'hand' or 'fast'"):
        hmmbuild.build_profile_from_sto("x", model_construction="slow")


# ------------------------------------------------------------------------------ Kalign


def test_kalign_realigns_template_to_query_like_af2():
    query = _query_sequence()
    template = parsers.read_fasta(MSAS / "1a00_A/query.fasta")[0][0]  # human Hb alpha
    a3m = tools.Kalign().align([query, template])
    ref = ref_kalign.Kalign(binary_path="/usr/bin/kalign").align([query, template])
    assert a3m == ref
    sequences, descriptions = parsers.parse_fasta(a3m, alphabet=None, unique_names=False)
    assert descriptions == ["sequence 1", "sequence 2"]
    assert [s.replace("-", "") for s in sequences] == [query, template]  # input order kept
    assert len(sequences[0]) == len(sequences[1])
    with pytest.raises(ValueError, match="has 5 residues; Kalign needs at least 6"):
        tools.Kalign().align([query, "MKVLA"])


# ------------------------------------------------------------------------------ MMseqs2


def test_mmseqs_search_on_a_database_built_from_a_slice(tmp_path):
    records = list(parsers.iter_fasta_records(open(MINI_UNIREF).read()))[:1500]
    records += list(parsers.iter_fasta_records(open(GLOBINS45).read()))
    fasta = tmp_path / "slice.fasta"
    fasta.write_text("".join(f">{r.description}\n{r.sequence}\n" for r in records))
    family = {r.name: _family(r.description) or "globin" for r in records}
    db = tools.MMseqs.create_database(str(fasta), str(tmp_path / "db"))
    mmseqs = tools.MMseqs(database_path=db, n_cpu=1, num_iterations=1)
    result = mmseqs.query(QUERY_102M)
    msa = parsers.parse_a3m(result["a3m"], "mmseqs output")
    msa.check_query(_query_sequence(), "mmseqs output")
    hits = [d.split()[0] for d in msa.descriptions[1:]]
    assert len(hits) >= 20
    assert {family[h] for h in hits} <= GLOBIN_FAMILIES
    assert sum(h.startswith("MYG_") for h in hits) >= 5
    with pytest.raises(tools.DatabaseNotFoundError, match="create_database"):
        tools.MMseqs(database_path=str(fasta))
    with pytest.raises(ValueError, match="holds 2 records"):
        two = tmp_path / "two.fasta"
        two.write_text(">a\nMKVLAAG\n>b\nMKVLAAG\n")
        mmseqs.query(str(two))


# ------------------------------------------------------------------------------ failures

_CONSTRUCTORS = [
    ("jackhmmer", "hmmer", lambda: tools.Jackhmmer(database_path=GLOBINS45)),
    ("hhblits", "hhsuite", lambda: tools.HHBlits(databases=[PDB_MINI])),
    ("hhsearch", "hhsuite", lambda: tools.HHSearch(databases=[PDB_MINI])),
    ("hmmsearch", "hmmer", lambda: tools.Hmmsearch(database_path=PDB_SEQRES)),
    ("hmmbuild", "hmmer", lambda: tools.Hmmbuild()),
    ("kalign", "kalign", lambda: tools.Kalign()),
    ("mmseqs", "mmseqs2", lambda: tools.MMseqs(database_path=PDB_MINI)),
]


@pytest.mark.parametrize("program, package, make", _CONSTRUCTORS,
                         ids=[c[0] for c in _CONSTRUCTORS])
def test_missing_binary_says_how_to_install(program, package, make, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(tools.ToolNotFoundError,
                       match=rf"{program} executable not found .*apt-get install {package}"):
        make()


def test_explicit_binary_path_that_does_not_exist():
    with pytest.raises(tools.ToolNotFoundError, match=r"at '/nonexistent/jackhmmer'"):
        tools.Jackhmmer(database_path=GLOBINS45, binary_path="/nonexistent/jackhmmer")


@pytest.mark.parametrize("make, pattern", [
    (lambda p: tools.Jackhmmer(database_path=p + ".fasta"), r"jackhmmer: sequence database"),
    (lambda p: tools.Hmmsearch(database_path=p + ".txt"), r"hmmsearch: sequence database"),
    (lambda p: tools.HHBlits(databases=[PDB_MINI, p]),
     r"hhblits: database .*no_such_db_a3m\.ffindex"),
    (lambda p: tools.HHSearch(databases=[p]), r"hhsearch: database .*no_such_db_hhm\.ffindex"),
    (lambda p: tools.MMseqs(database_path=p), r"mmseqs: database .*\.dbtype"),
], ids=["jackhmmer", "hmmsearch", "hhblits", "hhsearch", "mmseqs"])
def test_missing_database_is_named(make, pattern, tmp_path):
    missing = str(tmp_path / "no_such_db")
    with pytest.raises(tools.DatabaseNotFoundError, match=pattern) as info:
        make(missing)
    assert "no_such_db" in str(info.value)


def test_tool_failure_carries_stderr(tmp_path):
    bad = tmp_path / "bad.fasta"
    bad.write_text(">bad\nMKV1LL\n")
    with pytest.raises(tools.ToolError, match=r"(?s)jackhmmer failed with exit status 1.*"
                                              r"illegal character 1") as info:
        tools.Jackhmmer(database_path=GLOBINS45, n_cpu=1).query(str(bad))
    assert info.value.program == "jackhmmer" and info.value.returncode == 1
    with pytest.raises(FileNotFoundError, match="query FASTA .*nope.fasta"):
        tools.Jackhmmer(database_path=GLOBINS45).query(str(tmp_path / "nope.fasta"))


def test_timeout_stops_a_real_search():
    hhblits = tools.HHBlits(databases=[PDB_MINI], n_cpu=1, n_iter=3, timeout_s=0.3)
    start = time.monotonic()
    with pytest.raises(tools.ToolTimeoutError, match=r"hhblits did not finish within 0\.3 s"):
        hhblits.query(str(MSAS / "102m_A/non_pairing.a3m"))
    assert time.monotonic() - start < 5


def test_timeout_kills_the_whole_process_group(tmp_path):
    pid_file = tmp_path / "child.pid"
    script = f"sleep 60 & echo $! > {pid_file}; wait"
    start = time.monotonic()
    with pytest.raises(tools.ToolTimeoutError, match="sh did not finish"):
        tools.run_command(["sh", "-c", script], program="sh", timeout_s=0.5)
    # Killing only ``sh`` would leave ``sleep`` holding the output pipes for 60 s.
    assert time.monotonic() - start < 10
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        with open(f"/proc/{child}/stat") as handle:  # a zombie is dead too
            if handle.read().split(") ")[1].startswith("Z"):
                break
        time.sleep(0.05)
    else:
        pytest.fail(f"child process {child} of the timed-out command is still running")
