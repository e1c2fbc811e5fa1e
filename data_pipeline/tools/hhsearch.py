"""HHsearch (HH-suite): template search of a query MSA against PDB70-style HMM databases.

AF2's monomer template search: the query's UniRef90 MSA (as A3M) is searched against
PDB70 and the result is an hhr hit list.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from data_pipeline.parsers.hhr import TemplateHit, parse_hhr
from data_pipeline.tools import base

logger = logging.getLogger(__name__)

#: Files an HHsearch database prefix must have.
HHSEARCH_DB_SUFFIXES = ("_hhm.ffindex", "_hhm.ffdata")


class HHSearch:
    """Runs ``hhsearch`` with AF2's settings (``-maxseq``; HH-suite defaults otherwise).

    Args:
        databases: database prefixes (e.g. ``.../pdb70`` for ``pdb70_hhm.ffdata``).
        binary_path: the executable (default: ``hhsearch`` on PATH).
        maxseq: max rows of the input alignment.
        n_cpu: threads (``-cpu``); None leaves HH-suite's default (AF2 does not set it).
        timeout_s: wall-clock limit of one run.

    Raises:
        ToolNotFoundError: no hhsearch executable.
        DatabaseNotFoundError: a database prefix lacks its ``_hhm`` files.
    """

    output_format = "hhr"
    input_format = "a3m"

    def __init__(
        self,
        *,
        databases: Sequence[str],
        binary_path: str | None = None,
        maxseq: int = 1_000_000,
        n_cpu: int | None = None,
        timeout_s: float | None = base.DEFAULT_TIMEOUT_S,
    ) -> None:
        self.binary_path = base.find_binary("hhsearch", binary_path)
        if isinstance(databases, (str, os.PathLike)):
            databases = [databases]
        if not databases:
            raise ValueError("hhsearch: give at least one database prefix")
        self.databases = [base.check_prefix_database(os.fspath(db), "hhsearch",
                                                     HHSEARCH_DB_SUFFIXES) for db in databases]
        self.maxseq = maxseq
        self.n_cpu = n_cpu
        self.timeout_s = timeout_s

    def command(self, input_path: str, hhr_path: str) -> list[str]:
        """The command line for one search."""
        cmd = [self.binary_path, "-i", input_path, "-o", hhr_path, "-maxseq", str(self.maxseq)]
        if self.n_cpu is not None:
            cmd += ["-cpu", str(self.n_cpu)]
        for db in self.databases:
            cmd += ["-d", db]
        return cmd

    def query(self, a3m: str) -> str:
        """Search with an A3M alignment (text, query first); returns the hhr text."""
        if not a3m.strip():
            raise ValueError("hhsearch: the query alignment is empty; pass A3M text")
        with base.tmpdir("hhsearch") as work:
            input_path = os.path.join(work, "query.a3m")
            hhr_path = os.path.join(work, "output.hhr")
            with open(input_path, "w", encoding="utf-8") as handle:
                handle.write(a3m)
            result = base.run_command(self.command(input_path, hhr_path), program="hhsearch",
                                      timeout_s=self.timeout_s)
            return base.read_output(hhr_path, "hhsearch", result.stderr)

    def get_template_hits(self, output_string: str,
                          input_sequence: str) -> list[TemplateHit]:
        """Parse the hhr text (the query sequence is not needed for hhr)."""
        del input_sequence
        return parse_hhr(output_string, "hhsearch output")
