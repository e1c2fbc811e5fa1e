"""Stockholm alignments as HMMER (jackhmmer, hmmsearch) writes them.

A Stockholm file is ``# STOCKHOLM 1.0``, mark-up lines (``#=GS name DE text`` holds a
sequence's description, ``#=GC RF`` the reference columns), ``name aligned-sequence``
lines (an alignment may come in several blocks, each repeating the names) and ``//``.
The first sequence of a jackhmmer alignment is the query. Columns where the query has a
gap are insertions of the other rows: they are dropped from the aligned sequences and
counted in the deletion matrix, as AF2 does.
"""

from __future__ import annotations

import dataclasses
import logging
import os

from data_pipeline.parsers.a3m import Msa
from data_pipeline.parsers.fasta import PathLike

logger = logging.getLogger(__name__)

_GAPS = frozenset("-.")


@dataclasses.dataclass
class StockholmAlignment:
    """The sequence part of a Stockholm file.

    Attributes:
        names: sequence names in order of first appearance (the query first).
        sequences: name -> aligned sequence (all blocks joined), all the same length.
        descriptions: name -> text of its ``#=GS name DE`` line, where present.
    """

    names: list[str]
    sequences: dict[str, str]
    descriptions: dict[str, str]


def _is_sequence_line(line: str) -> bool:
    return bool(line.strip()) and not line.startswith(("#", "//"))


def read_stockholm_alignment(
    stockholm_string: str, source: str = "<string>", max_sequences: int | None = None
) -> StockholmAlignment:
    """Read names, aligned sequences and descriptions, keeping the first ``max_sequences``.

    Raises:
        ValueError: no sequences, a sequence line that is not ``name sequence``, a
            character other than a letter, ``-`` or ``.``, a second alignment after
            ``//``, or sequences of unequal aligned length; the message names the line.
    """
    names: list[str] = []
    pieces: dict[str, list[str]] = {}
    first_line: dict[str, int] = {}
    descriptions: dict[str, str] = {}
    ended_at = 0
    for line_no, line in enumerate(stockholm_string.splitlines(), start=1):
        if line.startswith("//"):
            ended_at = ended_at or line_no
            continue
        if line.startswith("#=GS"):
            fields = line.split(maxsplit=3)
            if len(fields) >= 3 and fields[2] == "DE":
                descriptions.setdefault(fields[1], fields[3] if len(fields) == 4 else "")
            continue
        if not _is_sequence_line(line):
            continue
        if ended_at:
            raise ValueError(
                f"{source}:{line_no}: sequence data after the end of the alignment ('//' at "
                f"line {ended_at}); a file with several Stockholm alignments is not supported "
                "- split it into one file per alignment"
            )
        fields = line.split()
        if len(fields) != 2:
            raise ValueError(
                f"{source}:{line_no}: expected 'name aligned-sequence' (2 fields), got "
                f"{len(fields)} fields in {line[:60]!r}"
            )
        name, aligned = fields
        if name not in pieces:
            if max_sequences is not None and len(names) >= max_sequences:
                continue
            names.append(name)
            pieces[name] = []
            first_line[name] = line_no
        bad = next((c for c in aligned if not (c.isalpha() and c.isascii()) and c not in _GAPS),
                   None)
        if bad is not None:
            raise ValueError(
                f"{source}:{line_no}:{line.index(aligned) + aligned.index(bad) + 1}: invalid "
                f"character {bad!r} in sequence {name!r}; Stockholm sequences hold letters, "
                "'-' and '.'"
            )
        pieces[name].append(aligned)
    if not names:
        raise ValueError(
            f"{source}: no sequences found in the Stockholm alignment; expected "
            "'name aligned-sequence' lines after '# STOCKHOLM 1.0'"
        )
    sequences = {name: "".join(parts) for name, parts in pieces.items()}
    width = len(sequences[names[0]])
    for name in names:
        if len(sequences[name]) != width:
            raise ValueError(
                f"{source}:{first_line[name]}: sequence {name!r} has {len(sequences[name])} "
                f"aligned columns but the first sequence has {width}; the file is truncated "
                "or not a valid alignment"
            )
    kept_descriptions = {n: d for n, d in descriptions.items() if n in pieces}
    return StockholmAlignment(names=names, sequences=sequences, descriptions=kept_descriptions)


def parse_stockholm(
    stockholm_string: str, source: str = "<string>", max_sequences: int | None = None
) -> Msa:
    """Parse a Stockholm alignment whose first sequence is the query into an ``Msa``.

    Columns where the query has a gap (``-`` or ``.``) are removed; the residues other
    rows have there become deletion counts on the next query column. Kept residues are
    upper-cased and ``.`` becomes ``-``. Descriptions are the sequence names (with
    jackhmmer's ``/start-end`` suffix), as in AF2.

    Args:
        stockholm_string: the file's contents.
        source: file name for error messages.
        max_sequences: keep only the first this many sequences (``None``: all).

    Returns:
        ``Msa`` with ``N_seq`` rows of ``N_res`` = number of query residues.
    """
    alignment = read_stockholm_alignment(stockholm_string, source, max_sequences)
    query = alignment.sequences[alignment.names[0]]
    query_is_residue = [c not in _GAPS for c in query]
    sequences: list[str] = []
    deletion_matrix: list[list[int]] = []
    for name in alignment.names:
        row = alignment.sequences[name]
        aligned: list[str] = []
        deletions: list[int] = []
        pending = 0
        for keep, char in zip(query_is_residue, row, strict=True):
            if keep:
                aligned.append("-" if char in _GAPS else char.upper())
                deletions.append(pending)
                pending = 0
            elif char not in _GAPS:
                pending += 1
        sequences.append("".join(aligned))
        deletion_matrix.append(deletions)
    return Msa(sequences=sequences, deletion_matrix=deletion_matrix,
               descriptions=list(alignment.names))


def convert_stockholm_to_a3m(
    stockholm_format: str,
    max_sequences: int | None = None,
    remove_first_row_gaps: bool = True,
    source: str = "<string>",
) -> str:
    """Rewrite a Stockholm alignment as A3M text (``>name description`` + sequence).

    With ``remove_first_row_gaps``, residues in query-gap columns become lower-case
    insertions and gaps there vanish; otherwise only ``.`` characters are dropped (the
    rows of hmmsearch output are already A3M-like). At most ``max_sequences`` rows.
    """
    alignment = read_stockholm_alignment(stockholm_format, source, max_sequences)
    query = alignment.sequences[alignment.names[0]]
    query_is_residue = [c not in _GAPS for c in query]
    chunks = []
    for name in alignment.names:
        row = alignment.sequences[name]
        if remove_first_row_gaps:
            out = []
            for keep, char in zip(query_is_residue, row, strict=True):
                if keep:
                    out.append("-" if char == "." else char)
                elif char not in _GAPS:
                    out.append(char.lower())
            a3m_row = "".join(out)
        else:
            a3m_row = row.replace(".", "")
        chunks.append(f">{name} {alignment.descriptions.get(name, '')}\n{a3m_row}")
    return "\n".join(chunks) + "\n"


def _keeps_line(line: str, names: set[str]) -> bool:
    """Whether a Stockholm line survives when only the sequences in ``names`` are kept."""
    if not line.strip() or line.strip() == "//":
        return True
    if line.startswith(("# STOCKHOLM", "#=GC RF")):
        return True
    if line.startswith("#=GS"):
        fields = line.split(maxsplit=2)
        return len(fields) > 1 and fields[1] in names
    if line.startswith("#"):
        return False
    return line.partition(" ")[0] in names


def truncate_stockholm_msa(stockholm_msa_path: PathLike, max_sequences: int) -> str:
    """Keep the first ``max_sequences`` sequences of a (possibly huge) Stockholm file.

    The file is streamed twice, never held whole in memory. Lines of other sequences
    and mark-up other than the header, ``#=GS`` of kept sequences and ``#=GC RF`` are
    dropped.
    """
    path = os.fspath(stockholm_msa_path)
    names: set[str] = set()
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if _is_sequence_line(line):
                names.add(line.partition(" ")[0])
                if len(names) >= max_sequences:
                    break
        handle.seek(0)
        return "".join(line for line in handle if _keeps_line(line, names))


def deduplicate_stockholm_msa(stockholm_msa: str) -> str:
    """Drop sequences identical to an earlier one on the query's residue columns."""
    sequences: dict[str, str] = {}
    for line in stockholm_msa.splitlines():
        if _is_sequence_line(line):
            name, aligned = line.split()
            sequences[name] = sequences.get(name, "") + aligned
    if not sequences:
        raise ValueError("deduplicate_stockholm_msa: the alignment has no sequences")
    query = next(iter(sequences.values()))
    columns = [i for i, c in enumerate(query) if c != "-"]
    seen: set[str] = set()
    keep: set[str] = set()
    for name, aligned in sequences.items():
        key = "".join(aligned[i] for i in columns)
        if key not in seen:
            seen.add(key)
            keep.add(name)
    return "\n".join(line for line in stockholm_msa.splitlines() if _keeps_line(line, keep)) + "\n"


def remove_empty_columns_from_stockholm_msa(stockholm_msa: str) -> str:
    """Drop columns that are ``-`` in every sequence, block by block.

    Each block of sequence lines ends with its ``#=GC RF`` line, whose columns are
    dropped with the block's. Only blocks closed by ``#=GC RF`` are changed (HMMER writes
    one per block).
    """
    lines = stockholm_msa.splitlines()
    out = list(lines)
    block: list[int] = []
    for i, line in enumerate(lines):
        if line.startswith("#=GC RF"):
            rows = [lines[j].rpartition(" ")[2] for j in block]
            rf_columns = line.rpartition(" ")[2]
            keep = [any(r[k] != "-" for r in rows) for k in range(len(rf_columns))]
            if not any(keep):
                for j in block + [i]:
                    out[j] = ""
            else:
                for j in block + [i]:
                    prefix, _, aligned = lines[j].rpartition(" ")
                    kept = (c for c, k in zip(aligned, keep, strict=False) if k)
                    out[j] = prefix + " " + "".join(kept)
            block = []
        elif _is_sequence_line(line):
            block.append(i)
    return "\n".join(out)


def parse_e_values_from_tblout(tblout: str) -> dict[str, float]:
    """Target name -> full-sequence E-value from a HMMER ``--tblout`` table.

    The query itself is included with E-value 0 under the key ``"query"``, as AF2 does.
    """
    e_values: dict[str, float] = {"query": 0.0}
    for line_no, line in enumerate(tblout.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) < 5:
            raise ValueError(
                f"tblout line {line_no}: expected at least 5 fields (target, accession, "
                f"query, accession, E-value), got {len(fields)}"
            )
        try:
            e_values[fields[0]] = float(fields[4])
        except ValueError:
            raise ValueError(
                f"tblout line {line_no}: E-value {fields[4]!r} is not a number"
            ) from None
    return e_values
