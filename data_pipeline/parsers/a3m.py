"""The parsed-MSA container and the A3M parser.

In A3M every row has the same number of *match* columns (upper-case letters and ``-``),
one per query residue. Lower-case letters are residues the row inserts between two query
columns; they are not aligned, and AF2 keeps only their count per column: the deletion
matrix. ``.`` (gap in an insert column) carries no information and is ignored.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import string
from collections.abc import Sequence

from data_pipeline.parsers.fasta import PathLike, iter_fasta_records

logger = logging.getLogger(__name__)

DeletionMatrix = Sequence[Sequence[int]]

_INVALID = re.compile(r"[^A-Za-z.\-]")
_INSERTION_RUN = re.compile(r"[a-z]+")
_DROP_LOWER = str.maketrans("", "", string.ascii_lowercase)


@dataclasses.dataclass(frozen=True)
class Msa:
    """A parsed multiple sequence alignment, aligned to the query (first row).

    Attributes:
        sequences: ``N_seq`` strings of length ``N_res``: match columns only, upper-case
            letters and ``-``. Duplicates are kept.
        deletion_matrix: ``[N_seq][N_res]`` ints: residues the row inserts just before
            each query column.
        descriptions: ``N_seq`` header texts (A3M) or sequence names (Stockholm).
    """

    sequences: Sequence[str]
    deletion_matrix: DeletionMatrix
    descriptions: Sequence[str]

    def __post_init__(self) -> None:
        if not len(self.sequences) == len(self.deletion_matrix) == len(self.descriptions):
            raise ValueError(
                "an Msa needs one deletion-matrix row and one description per sequence; got "
                f"{len(self.sequences)} sequences, {len(self.deletion_matrix)} deletion rows "
                f"and {len(self.descriptions)} descriptions"
            )

    def __len__(self) -> int:
        return len(self.sequences)

    def truncate(self, max_seqs: int) -> Msa:
        """The first ``max_seqs`` rows."""
        return Msa(
            sequences=self.sequences[:max_seqs],
            deletion_matrix=self.deletion_matrix[:max_seqs],
            descriptions=self.descriptions[:max_seqs],
        )

    def check_query(self, query_sequence: str, source: str = "MSA") -> None:
        """Raise ValueError unless the first row is ``query_sequence`` (gaps allowed nowhere).

        Args:
            query_sequence: the chain's sequence, ``N_res`` letters.
            source: the MSA's file name, for the message.
        """
        if not self.sequences:
            raise ValueError(f"{source}: the MSA is empty; its first row must be the query")
        first = self.sequences[0]
        if first != query_sequence:
            detail = f"lengths {len(first)} vs {len(query_sequence)}"
            if len(first) == len(query_sequence):
                pairs = zip(first, query_sequence, strict=True)
                pos = next(i for i, (a, b) in enumerate(pairs) if a != b)
                detail = f"first difference at residue {pos + 1}: {first[pos]!r} vs " \
                         f"{query_sequence[pos]!r}"
            raise ValueError(
                f"{source}: the first row is not the query sequence ({detail}); an MSA must "
                "start with the query it was searched for - check that the file belongs to "
                "this chain"
            )


def parse_a3m(a3m_string: str, source: str = "<string>") -> Msa:
    """Parse an A3M alignment (first row = query).

    Accepts ColabFold's ``#`` header line(s) before the first record and ignores ``.``.

    Returns:
        An ``Msa`` whose sequences hold the match columns and whose deletion matrix
        counts the lower-case residues before each match column.

    Raises:
        ValueError: no records, a row with no residues, a character that is neither a
            letter, ``-`` nor ``.``, or a row whose number of match columns differs from
            the first row's; the message names the file and line.
    """
    sequences: list[str] = []
    deletion_matrix: list[list[int]] = []
    descriptions: list[str] = []
    n_columns = -1
    for record in iter_fasta_records(a3m_string, source, skip_hash_lines=True):
        if not record.sequence:
            raise ValueError(
                f"{source}:{record.line}: A3M row {record.description[:60]!r} has no "
                "sequence; every row needs one character per query column"
            )
        bad = _INVALID.search(record.sequence)
        if bad is not None:
            raise ValueError(
                f"{record.locate(bad.start())}: invalid A3M character {bad[0]!r} in row "
                f"{record.name!r}; A3M rows hold upper-case letters and '-' (aligned), "
                "lower-case letters (insertions) and '.'"
            )
        row = record.sequence.replace(".", "")
        aligned = row.translate(_DROP_LOWER)
        deletions = [0] * len(aligned)
        inserted_before = 0
        for run in _INSERTION_RUN.finditer(row):
            column = run.start() - inserted_before  # the match column after the run
            if column < len(aligned):
                deletions[column] = run.end() - run.start()
            inserted_before += run.end() - run.start()
        if n_columns < 0:
            n_columns = len(aligned)
        elif len(aligned) != n_columns:
            raise ValueError(
                f"{source}:{record.line}: A3M row {record.name!r} has {len(aligned)} match "
                f"columns but the query (first row) has {n_columns}; every row must have one "
                "upper-case letter or '-' per query residue"
            )
        sequences.append(aligned)
        deletion_matrix.append(deletions)
        descriptions.append(record.description)
    if not sequences:
        raise ValueError(
            f"{source}: no A3M records found; an A3M file holds '>name' lines each followed "
            "by an aligned sequence, the query first"
        )
    return Msa(sequences=sequences, deletion_matrix=deletion_matrix, descriptions=descriptions)


def read_a3m(path: PathLike) -> Msa:
    """``parse_a3m`` on the file at ``path``."""
    path = os.fspath(path)
    with open(path, encoding="utf-8") as handle:
        return parse_a3m(handle.read(), source=path)
