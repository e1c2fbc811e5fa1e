"""What an alignments directory holds: AF2's (and OpenFold's, ColabFold's) file names.

One directory per chain. AF2 writes ``uniref90_hits.sto``, ``mgnify_hits.sto``,
``bfd_uniref_hits.a3m`` (or ``small_bfd_hits.sto`` with reduced databases) and
``pdb_hits.hhr`` (or ``pdb_hits.sto`` from hmmsearch); OpenFold's alignment folders call
the BFD file ``bfd_uniclust_hits.a3m`` and the template hits ``pdb70_hits.hhr`` (or
``hhsearch_output.hhr``); OpenProteinSet has ``uniref90_hits.a3m``; ColabFold writes one
``<name>.a3m``. All of these are read; multimer-only files (``uniprot_hits.*``, used for
pairing) are not MSAs of a monomer and are ignored.
"""

from __future__ import annotations

import dataclasses
import logging
import os

from data_pipeline.parsers import Msa, parse_a3m, parse_stockholm, truncate_stockholm_msa
from data_pipeline.parsers.fasta import PathLike

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class MsaSource:
    """One MSA database search.

    Attributes:
        name: the database (``"uniref90"``, ...).
        file_names: names its result may have in an alignments directory; a search writes
            the first.
        max_hits: rows kept (AF2's limit), None for all.
    """

    name: str
    file_names: tuple[str, ...]
    max_hits: int | None


#: AF2's MSA limits (``uniref_max_hits``, ``mgnify_max_hits``).
UNIREF_MAX_HITS = 10_000
MGNIFY_MAX_HITS = 501

#: The MSA databases in AF2's merge order (UniRef90, BFD, MGnify).
MSA_SOURCES: tuple[MsaSource, ...] = (
    MsaSource("uniref90", ("uniref90_hits.sto", "uniref90_hits.a3m"), UNIREF_MAX_HITS),
    MsaSource("bfd", ("bfd_uniref_hits.a3m", "bfd_uniclust_hits.a3m"), None),
    MsaSource("small_bfd", ("small_bfd_hits.sto",), None),
    MsaSource("mgnify", ("mgnify_hits.sto", "mgnify_hits.a3m"), MGNIFY_MAX_HITS),
)
SOURCES_BY_NAME = {source.name: source for source in MSA_SOURCES}

#: Template hit files, preferred first: hhsearch (hhr) then hmmsearch (Stockholm).
TEMPLATE_HIT_FILES: tuple[str, ...] = (
    "pdb_hits.hhr", "pdb70_hits.hhr", "hhsearch_output.hhr", "pdb_hits.sto", "hmm_output.sto",
)
HHSEARCH_HITS_FILE = "pdb_hits.hhr"
HMMSEARCH_HITS_FILE = "pdb_hits.sto"

#: Files that are not MSAs of the chain itself (multimer pairing, template hits).
_NOT_MSAS = frozenset({"uniprot_hits.sto", "uniprot_hits.a3m", *TEMPLATE_HIT_FILES})


@dataclasses.dataclass(frozen=True)
class MsaFile:
    """An MSA file found in an alignments directory (``source`` None: an extra ``.a3m``)."""

    path: str
    source: MsaSource | None

    @property
    def max_hits(self) -> int | None:
        return self.source.max_hits if self.source else None


@dataclasses.dataclass(frozen=True)
class AlignmentFiles:
    """The MSA files (merge order) and the template hit file of one chain."""

    msas: list[MsaFile]
    template_hits: str | None


def find_alignment_files(alignments: PathLike) -> AlignmentFiles:
    """List the MSAs and template hits of one chain.

    Args:
        alignments: a chain's alignments directory, or a single ``.a3m`` file (ColabFold).

    Returns:
        MSAs of the known databases in AF2's order (every accepted name that is present),
        then any other ``.a3m`` files in name order; the first template hit file present.

    Raises:
        FileNotFoundError: the path does not exist.
    """
    path = os.fspath(alignments)
    if os.path.isfile(path):
        if not path.endswith(".a3m"):
            raise ValueError(f"{path}: a single alignment file must be an .a3m file; for "
                             "AF2/OpenFold outputs give their directory")
        return AlignmentFiles([MsaFile(path, None)], None)
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"alignments directory {path!r} does not exist; precompute the alignments "
            "(scripts/precompute_alignments.py) or use msa_mode='search'"
        )
    names = set(os.listdir(path))
    msas = [MsaFile(os.path.join(path, name), source)
            for source in MSA_SOURCES for name in source.file_names if name in names]
    known = {os.path.basename(m.path) for m in msas}
    extra = sorted(n for n in names
                   if n.endswith(".a3m") and n not in known and n not in _NOT_MSAS)
    msas += [MsaFile(os.path.join(path, name), None) for name in extra]
    hits = next((os.path.join(path, n) for n in TEMPLATE_HIT_FILES if n in names), None)
    return AlignmentFiles(msas, hits)


def read_msa(msa_file: MsaFile, query_sequence: str) -> Msa:
    """Parse an MSA file (Stockholm or A3M), keep its first ``max_hits`` rows and check that
    its first row is the query.

    Raises:
        ValueError: a malformed file or a first row that is not ``query_sequence``; the
            message names the file.
    """
    path = msa_file.path
    max_hits = msa_file.max_hits
    if path.endswith(".sto"):
        if max_hits is not None:
            text = truncate_stockholm_msa(path, max_hits)
        else:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        msa = parse_stockholm(text, source=path)
    else:
        with open(path, encoding="utf-8") as handle:
            msa = parse_a3m(handle.read(), source=path)
        if max_hits is not None:
            msa = msa.truncate(max_hits)
    msa.check_query(query_sequence, source=path)
    return msa
