"""FASTA reading: the record scanner shared by the FASTA and A3M parsers.

A FASTA text is a list of records, each a ``>description`` line followed by sequence lines.
``iter_fasta_records`` only splits the text into records and remembers where every piece
of a sequence came from, so the format-specific parsers can report errors as
``file:line:column``. ``parse_fasta`` is the strict reader for query files: residue letters
are checked, and empty records or repeated record names are refused.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import os
import string
from collections.abc import Iterator
from typing import Union

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

#: Letters accepted in a protein query: the 20 amino acids, ``X`` and the rare or
#: ambiguous codes ``B``, ``J``, ``O``, ``U``, ``Z`` (mapped to ``X`` or a standard
#: residue later on). Lower-case input is upper-cased before the check.
PROTEIN_LETTERS: str = string.ascii_uppercase


@dataclasses.dataclass(frozen=True)
class FastaRecord:
    """One record of a FASTA-like file, exactly as written.

    Attributes:
        description: the header line without its ``>`` (surrounding blanks removed).
        sequence: the sequence lines joined, each stripped of surrounding blanks.
        line: 1-based line number of the header.
        source: the file name (or ``"<string>"``) used in error messages.
        offsets: ``(start offset in sequence, line number)`` of each sequence line.
    """

    description: str
    sequence: str
    line: int
    source: str = "<string>"
    offsets: tuple[tuple[int, int], ...] = ()

    @property
    def name(self) -> str:
        """First word of the description (the record's identifier); may be empty."""
        words = self.description.split(maxsplit=1)
        return words[0] if words else ""

    def locate(self, position: int) -> str:
        """``"source:line:column"`` of the sequence character at ``position``."""
        starts = [start for start, _ in self.offsets]
        k = bisect.bisect_right(starts, position) - 1
        if k < 0:
            return f"{self.source}:{self.line}"
        start, line_no = self.offsets[k]
        return f"{self.source}:{line_no}:{position - start + 1}"


def iter_fasta_records(
    text: str, source: str = "<string>", *, skip_hash_lines: bool = False
) -> Iterator[FastaRecord]:
    """Split FASTA-formatted ``text`` into records, in file order.

    Blank lines are skipped and NUL bytes (left between queries in ColabFold's
    concatenated a3m files) are dropped. With ``skip_hash_lines``, lines starting with
    ``#`` before the first record (ColabFold's ``#len\\tcardinality`` header) are skipped.

    Raises:
        ValueError: text other than blank lines before the first ``>`` header.
    """
    description: str | None = None
    header_line = 0
    pieces: list[str] = []
    offsets: list[tuple[int, int]] = []
    length = 0
    for line_no, raw in enumerate(text.splitlines(), start=1):
        line = raw.replace("\x00", "").strip()
        if not line:
            continue
        if line.startswith(">"):
            if description is not None:
                yield FastaRecord(description, "".join(pieces), header_line, source,
                                  tuple(offsets))
            description, header_line = line[1:], line_no
            pieces, offsets, length = [], [], 0
            continue
        if description is None:
            if skip_hash_lines and line.startswith("#"):
                continue
            raise ValueError(
                f"{source}:{line_no}: expected a '>' header line before any sequence, got "
                f"{line[:40]!r}; a FASTA/A3M record starts with '>name'"
            )
        offsets.append((length, line_no))
        pieces.append(line)
        length += len(line)
    if description is not None:
        yield FastaRecord(description, "".join(pieces), header_line, source, tuple(offsets))


def parse_fasta(
    text: str,
    source: str = "<string>",
    *,
    alphabet: str | None = PROTEIN_LETTERS,
    unique_names: bool = True,
) -> tuple[list[str], list[str]]:
    """Parse a multi-record FASTA text strictly.

    Args:
        text: the file's contents.
        source: file name used in error messages.
        alphabet: allowed (upper-case) letters after upper-casing the sequence; ``None``
            accepts any sequence as written (no check, no upper-casing).
        unique_names: refuse two records with the same name (query files, whose names
            become output file names); sequence databases may repeat names.

    Returns:
        ``(sequences, descriptions)``, two lists in file order; descriptions are the
        header lines without ``>``.

    Raises:
        ValueError: no records, a record without sequence, two records with the same
            name (first word of the header), or a letter outside ``alphabet``; the message
            names the file, line and column.
    """
    sequences: list[str] = []
    descriptions: list[str] = []
    first_seen: dict = {}
    allowed = frozenset(alphabet) if alphabet is not None else None
    for record in iter_fasta_records(text, source):
        where = f"{source}:{record.line}"
        if not record.sequence:
            raise ValueError(
                f"{where}: record {record.description[:60]!r} has no sequence; remove it or "
                "add its residues on the lines after the header"
            )
        if not record.name:
            raise ValueError(f"{where}: record has an empty name; write '>name' on the header")
        if unique_names and record.name in first_seen:
            raise ValueError(
                f"{where}: duplicate record name {record.name!r} (first used at line "
                f"{first_seen[record.name]}); give every record a unique name"
            )
        first_seen.setdefault(record.name, record.line)
        sequence = record.sequence
        if allowed is not None:
            sequence = sequence.upper()
            for pos, letter in enumerate(sequence):
                if letter not in allowed:
                    raise ValueError(
                        f"{record.locate(pos)}: invalid residue letter {letter!r} in record "
                        f"{record.name!r}; only one-letter amino-acid codes "
                        f"({''.join(sorted(allowed))}) are allowed"
                    )
        sequences.append(sequence)
        descriptions.append(record.description)
    if not sequences:
        raise ValueError(
            f"{source}: no FASTA records found; a FASTA file holds '>name' header lines "
            "each followed by sequence lines"
        )
    return sequences, descriptions


def read_fasta(
    path: PathLike, *, alphabet: str | None = PROTEIN_LETTERS, unique_names: bool = True
) -> tuple[list[str], list[str]]:
    """``parse_fasta`` on the file at ``path`` (errors name the file)."""
    path = os.fspath(path)
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    return parse_fasta(text, source=path, alphabet=alphabet, unique_names=unique_names)
