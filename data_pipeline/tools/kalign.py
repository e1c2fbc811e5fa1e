"""Kalign: multiple alignment of a few sequences.

AF2 uses it to re-align a template hit to the template's actual mmCIF sequence when the
two differ. Sequences come back in input order as aligned FASTA (a valid A3M).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from data_pipeline.tools import base

logger = logging.getLogger(__name__)

#: Kalign refuses (or mis-aligns) shorter sequences.
MIN_SEQUENCE_LENGTH = 6


class Kalign:
    """Runs ``kalign`` (version 2 or 3; both take ``-i``, ``-o``, ``-format fasta``).

    Args:
        binary_path: the executable (default: ``kalign`` on PATH).
        timeout_s: wall-clock limit of one run.
    """

    def __init__(self, *, binary_path: str | None = None,
                 timeout_s: float | None = base.DEFAULT_TIMEOUT_S) -> None:
        self.binary_path = base.find_binary("kalign", binary_path)
        self.timeout_s = timeout_s

    def align(self, sequences: Sequence[str]) -> str:
        """Align ``sequences`` and return the alignment as aligned FASTA / A3M text.

        Records are named ``sequence 1``, ``sequence 2``, ... in input order.

        Raises:
            ValueError: fewer than two sequences, or one shorter than 6 residues.
            ToolError: kalign failed.
        """
        if isinstance(sequences, str):
            raise ValueError("kalign: pass a list of sequences, not one string")
        if len(sequences) < 2:
            raise ValueError(f"kalign: need at least 2 sequences to align, got {len(sequences)}")
        for i, seq in enumerate(sequences, start=1):
            if len(seq) < MIN_SEQUENCE_LENGTH:
                raise ValueError(
                    f"kalign: sequence {i} ({seq!r}) has {len(seq)} residues; Kalign needs at "
                    f"least {MIN_SEQUENCE_LENGTH}"
                )
        logger.info("Aligning %d sequences with kalign", len(sequences))
        with base.tmpdir("kalign") as work:
            input_path = os.path.join(work, "input.fasta")
            output_path = os.path.join(work, "output.a3m")
            with open(input_path, "w", encoding="utf-8") as handle:
                for i, seq in enumerate(sequences, start=1):
                    handle.write(f">sequence {i}\n{seq}\n")
            cmd = [self.binary_path, "-i", input_path, "-o", output_path, "-format", "fasta"]
            result = base.run_command(cmd, program="kalign", timeout_s=self.timeout_s)
            return base.read_output(output_path, "kalign", result.stderr)
