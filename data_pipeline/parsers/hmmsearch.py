"""hmmsearch template hits (AF2's multimer template search over ``pdb_seqres.txt``).

hmmsearch ``-A`` writes the hits as a Stockholm alignment against the query profile.
Every hit is named ``<pdb id>_<chain>/<start>-<end>`` and described by its
``pdb_seqres.txt`` header (``mol:protein length:154  MYOGLOBIN``). Rows are read as A3M:
upper case and ``-`` on the profile's match columns, lower case for inserted residues.
"""

from __future__ import annotations

import dataclasses
import logging
import re

from data_pipeline.parsers.fasta import iter_fasta_records
from data_pipeline.parsers.hhr import TemplateHit
from data_pipeline.parsers.stockholm import convert_stockholm_to_a3m

logger = logging.getLogger(__name__)

_DESCRIPTION = re.compile(
    r"^>?(?P<pdb_id>[a-z0-9]+)_(?P<chain>\w+)/(?P<start>\d+)-(?P<end>\d+)"
    r".*protein length:(?P<length>\d+) *(?P<text>.*)$"
)


@dataclasses.dataclass(frozen=True)
class HitMetadata:
    """What an hmmsearch hit's description says about the PDB chain it comes from.

    ``start``/``end`` are the 1-based first and last chain residues of the hit.
    """

    pdb_id: str
    chain: str
    start: int
    end: int
    length: int
    text: str


def parse_hit_description(description: str) -> HitMetadata:
    """Read ``4pqx_A/2-217 [subseq from] mol:protein length:217  Free text``.

    Raises:
        ValueError: the description does not have that form.
    """
    match = _DESCRIPTION.match(description.strip())
    if match is None:
        raise ValueError(
            f"cannot read the hmmsearch hit description {description[:80]!r}; expected "
            "'<pdbid>_<chain>/<start>-<end> ... mol:protein length:<n> <text>' as written "
            "for hits in a pdb_seqres.txt database"
        )
    return HitMetadata(
        pdb_id=match["pdb_id"],
        chain=match["chain"],
        start=int(match["start"]),
        end=int(match["end"]),
        length=int(match["length"]),
        text=match["text"],
    )


def _a3m_indices(aligned: str, start: int) -> list[int]:
    """Template index of each match column from ``start``; -1 at ``-``; insertions skipped
    (but counted)."""
    indices = []
    for char in aligned:
        if char == "-":
            indices.append(-1)
        elif char.islower():
            start += 1
        else:
            indices.append(start)
            start += 1
    return indices


def parse_hmmsearch_a3m(
    query_sequence: str, a3m_string: str, skip_first: bool = True, source: str = "<string>"
) -> list[TemplateHit]:
    """Template hits from hmmsearch output already converted to A3M.

    Args:
        query_sequence: the query, ``N_res`` letters; every match column is a query residue.
        a3m_string: ``>description`` + row per hit.
        skip_first: the first row is the query itself, not a hit.
        source: file name for error messages.

    Returns:
        One ``TemplateHit`` per protein hit (``mol:na`` hits are skipped but keep their
        number), with ``hit_sequence`` upper-cased (insertions included, as AF2 does) and
        ``sum_probs`` None.
    """
    records = list(iter_fasta_records(a3m_string, source))
    if skip_first:
        records = records[1:]
    indices_query = _a3m_indices(query_sequence, 0)
    hits = []
    for number, record in enumerate(records, start=1):
        if "mol:protein" not in record.description:
            continue
        try:
            meta = parse_hit_description(record.description)
        except ValueError as error:
            raise ValueError(f"{source}:{record.line}: {error}") from None
        row = record.sequence
        hits.append(
            TemplateHit(
                index=number,
                name=f"{meta.pdb_id}_{meta.chain}",
                aligned_cols=sum(1 for c in row if c.isupper()),
                sum_probs=None,
                query=query_sequence,
                hit_sequence=row.upper(),
                indices_query=indices_query,
                indices_hit=_a3m_indices(row, meta.start - 1),
            )
        )
    return hits


def parse_hmmsearch_sto(
    sto_string: str, query_sequence: str, source: str = "<string>"
) -> list[TemplateHit]:
    """Template hits from hmmsearch's Stockholm output (``-A``), like AF2's
    ``Hmmsearch.get_template_hits``: Stockholm -> A3M (no column removal), every row a hit.

    An output with no hits (an empty alignment) gives an empty list.
    """
    if not any(line.strip() and not line.startswith(("#", "//"))
               for line in sto_string.splitlines()):
        return []
    a3m = convert_stockholm_to_a3m(sto_string, remove_first_row_gaps=False, source=source)
    return parse_hmmsearch_a3m(query_sequence, a3m, skip_first=False, source=source)
