"""HH-suite result files (``.hhr``, written by hhsearch and hhblits) -> template hits.

An hhr file has a summary table, then one paragraph per hit::

    No 1
    >102m_A MYOGLOBIN; ...
    Probab=100.00  E-value=8.3e-70  Score=411.53  Aligned_cols=154  ...  Sum_probs=152.9 ...

    Q 102m_A      1 MVLSEGEWQLV...   80 (154)
    T 102m_A      1 MVLSEGEWQLV...   80 (154)

followed by more ``Q``/``T`` blocks. ``Q ss_pred``, ``Q Consensus`` and the like are
annotation rows and are skipped. Older HH-suite versions (before 3.1) end the summary
line at ``Sum_probs`` (no ``Template_Neff``); both forms are read.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Sequence

logger = logging.getLogger(__name__)

#: Names of annotation rows inside a ``Q``/``T`` block (not sequences).
_ANNOTATION_ROWS = frozenset({"ss_pred", "ss_dssp", "ss_conf", "Consensus"})
# "<start> <aligned residues> <end> (<length>)" at the end of a Q/T sequence row.
_ROW_TAIL = re.compile(r"\s(\d+) ([A-Za-z-]+)\s+(\d+) +\((\d+)\)\s*$")
_SUMMARY_FIELD = re.compile(r"([A-Za-z_-]+)=\s*(\S+)")


@dataclasses.dataclass(frozen=True)
class TemplateHit:
    """One hit of a template search, with its alignment to the query.

    Attributes (AF2's ``TemplateHit`` fields first):
        index: hit number in the file (1-based).
        name: the hit's header line without ``>`` (PDB id + chain, then free text).
        aligned_cols: number of aligned columns.
        sum_probs: sum of the alignment's posterior probabilities (None for hmmsearch).
        query: aligned query residues (``-`` for gaps), length ``L_ali``.
        hit_sequence: aligned hit residues (``-`` for gaps), length ``L_ali``.
        indices_query: 0-based query index per aligned column, -1 at gaps, ``[L_ali]``.
        indices_hit: 0-based hit (template) index per aligned column, -1 at gaps.
        prob: HH-suite probability (%) of the hit being a true homologue (hhr only).
        e_value: E-value (hhr only).
        score: alignment score in bits (hhr only).
    """

    index: int
    name: str
    aligned_cols: int
    sum_probs: float | None
    query: str
    hit_sequence: str
    indices_query: list[int]
    indices_hit: list[int]
    prob: float | None = None
    e_value: float | None = None
    score: float | None = None


def _residue_indices(aligned: str, start: int) -> list[int]:
    """0-based residue index of every aligned column from ``start``; -1 at ``-``."""
    indices = []
    for char in aligned:
        if char == "-":
            indices.append(-1)
        else:
            indices.append(start)
            start += 1
    return indices


def _parse_summary(line: str, where: str) -> dict[str, str]:
    fields = dict(_SUMMARY_FIELD.findall(line))
    missing = [k for k in ("Probab", "E-value", "Score", "Aligned_cols") if k not in fields]
    if missing:
        raise ValueError(
            f"{where}: expected the hit summary 'Probab=... E-value=... Score=... "
            f"Aligned_cols=...' but {', '.join(missing)} missing in {line[:80]!r}"
        )
    return fields


def _number(fields: dict[str, str], key: str, where: str, cast=float):
    text = fields[key].rstrip("%")
    try:
        return cast(float(text)) if cast is int else cast(text)
    except ValueError:
        raise ValueError(f"{where}: {key}={fields[key]!r} is not a number") from None


def _parse_hit(lines: Sequence[str], first_line: int, source: str) -> TemplateHit:
    """Parse one ``No N`` paragraph; ``first_line`` is the 1-based line of ``No N``."""
    where = f"{source}:{first_line}"
    try:
        index = int(lines[0].split()[1])
    except (IndexError, ValueError):
        raise ValueError(f"{where}: expected 'No <hit number>', got {lines[0][:40]!r}") from None
    if len(lines) < 3 or not lines[1].startswith(">"):
        raise ValueError(f"{source}:{first_line + 1}: expected the hit's '>name' line")
    name = lines[1][1:]
    fields = _parse_summary(lines[2], f"{source}:{first_line + 2}")
    sum_probs = _number(fields, "Sum_probs", where) if "Sum_probs" in fields else None

    query_parts: list[str] = []
    hit_parts: list[str] = []
    indices_query: list[int] = []
    indices_hit: list[int] = []
    block_length = None
    for offset, line in enumerate(lines[3:], start=3):
        if not line.startswith(("Q ", "T ")):
            continue
        words = line.split(maxsplit=2)
        if len(words) < 2 or words[1] in _ANNOTATION_ROWS:
            continue
        line_where = f"{source}:{first_line + offset}"
        match = _ROW_TAIL.search(line)
        if match is None:
            raise ValueError(
                f"{line_where}: cannot read the alignment row {line[:80]!r}; expected "
                "'<Q|T> <name> <start> <residues> <end> (<length>)'"
            )
        start, aligned, end = int(match[1]) - 1, match[2], int(match[3])
        if line.startswith("Q "):
            if end - start + aligned.count("-") != len(aligned):
                raise ValueError(
                    f"{line_where}: query row covers residues {start + 1}-{end} but holds "
                    f"{len(aligned) - aligned.count('-')} residues"
                )
            block_length = len(aligned)
            query_parts.append(aligned)
            indices_query += _residue_indices(aligned, start)
        else:
            if block_length != len(aligned):
                raise ValueError(
                    f"{line_where}: template row has {len(aligned)} columns, the query row "
                    f"before it {block_length}; the hhr file is damaged"
                )
            hit_parts.append(aligned)
            indices_hit += _residue_indices(aligned, start)
    return TemplateHit(
        index=index,
        name=name,
        aligned_cols=_number(fields, "Aligned_cols", where, int),
        sum_probs=sum_probs,
        query="".join(query_parts),
        hit_sequence="".join(hit_parts),
        indices_query=indices_query,
        indices_hit=indices_hit,
        prob=_number(fields, "Probab", where),
        e_value=_number(fields, "E-value", where),
        score=_number(fields, "Score", where),
    )


def parse_hhr(hhr_string: str, source: str = "<string>") -> list[TemplateHit]:
    """Parse every hit paragraph of an hhr file, in file order.

    Returns:
        A list of ``TemplateHit`` (empty when the search found nothing).

    Raises:
        ValueError: a paragraph that cannot be read; the message names file and line.
    """
    lines = hhr_string.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("No ")]
    starts.append(len(lines))
    return [
        _parse_hit(lines[begin:end], begin + 1, source)
        for begin, end in zip(starts[:-1], starts[1:], strict=True)
    ]
