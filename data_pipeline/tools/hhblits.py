"""HHblits (HH-suite): iterative HMM-HMM search of a query against clustered databases.

AF2 runs it on BFD + UniRef30 (Uniclust30) with three iterations and returns the hits
as an A3M alignment whose first row is the query. A database is given by its prefix
(``.../uniref30_2103`` for ``uniref30_2103_a3m.ffdata`` etc.).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from data_pipeline.tools import base

logger = logging.getLogger(__name__)

# HH-suite's own defaults for -p and -Z; the flags are passed only when changed.
_DEFAULT_P = 20
_DEFAULT_Z = 500
#: Files an HHblits database prefix must have (the hhm part is optional).
HHBLITS_DB_SUFFIXES = ("_a3m.ffindex", "_a3m.ffdata", "_cs219.ffindex", "_cs219.ffdata")


class HHBlits:
    """Runs ``hhblits`` with AF2's default settings.

    Args:
        databases: database prefixes, searched together.
        binary_path: the executable (default: ``hhblits`` on PATH).
        n_cpu: threads (``-cpu``).
        n_iter: search iterations (``-n``).
        e_value: E-value cutoff for inclusion (``-e``).
        maxseq: max rows of the input alignment (``-maxseq``).
        realign_max, maxfilt, min_prefilter_hits: HHblits' search-breadth limits.
        all_seqs: return every hit, unfiltered (``-all``).
        alt: alternative alignments per hit (``-alt``).
        p: minimum probability for a hit in the hhr (``-p``).
        z: maximum hits in the hhr (``-Z``).
        timeout_s: wall-clock limit of one run.

    Raises:
        ToolNotFoundError: no hhblits executable.
        DatabaseNotFoundError: a database prefix lacks its ``_a3m`` / ``_cs219`` files.
    """

    def __init__(
        self,
        *,
        databases: Sequence[str],
        binary_path: str | None = None,
        n_cpu: int = 4,
        n_iter: int = 3,
        e_value: float = 0.001,
        maxseq: int = 1_000_000,
        realign_max: int = 100_000,
        maxfilt: int = 100_000,
        min_prefilter_hits: int = 1000,
        all_seqs: bool = False,
        alt: int | None = None,
        p: int = _DEFAULT_P,
        z: int = _DEFAULT_Z,
        timeout_s: float | None = base.DEFAULT_TIMEOUT_S,
    ) -> None:
        self.binary_path = base.find_binary("hhblits", binary_path)
        if isinstance(databases, (str, os.PathLike)):
            databases = [databases]
        if not databases:
            raise ValueError("hhblits: give at least one database prefix")
        self.databases = [base.check_prefix_database(os.fspath(db), "hhblits",
                                                     HHBLITS_DB_SUFFIXES) for db in databases]
        self.n_cpu = n_cpu
        self.n_iter = n_iter
        self.e_value = e_value
        self.maxseq = maxseq
        self.realign_max = realign_max
        self.maxfilt = maxfilt
        self.min_prefilter_hits = min_prefilter_hits
        self.all_seqs = all_seqs
        self.alt = alt
        self.p = p
        self.z = z
        self.timeout_s = timeout_s

    def command(self, input_path: str, a3m_path: str) -> list[str]:
        """The command line for one search (AF2's flags)."""
        cmd = [
            self.binary_path,
            "-i", input_path,
            "-cpu", str(self.n_cpu),
            "-oa3m", a3m_path,
            "-o", "/dev/null",
            "-n", str(self.n_iter),
            "-e", str(self.e_value),
            "-maxseq", str(self.maxseq),
            "-realign_max", str(self.realign_max),
            "-maxfilt", str(self.maxfilt),
            "-min_prefilter_hits", str(self.min_prefilter_hits),
        ]
        if self.all_seqs:
            cmd.append("-all")
        if self.alt:
            cmd += ["-alt", str(self.alt)]
        if self.p != _DEFAULT_P:
            cmd += ["-p", str(self.p)]
        if self.z != _DEFAULT_Z:
            cmd += ["-Z", str(self.z)]
        for db in self.databases:
            cmd += ["-d", db]
        return cmd

    def query(self, input_fasta_path: str) -> list[dict[str, Any]]:
        """Search with a query FASTA (or an A3M alignment to start from).

        Returns:
            A one-element list (AF2's shape) of a dict with ``a3m`` (the hits, query
            first), ``output`` (stdout), ``stderr``, ``n_iter``, ``e_value`` and
            ``wall_time_s``.
        """
        input_fasta_path = os.fspath(input_fasta_path)
        if not os.path.isfile(input_fasta_path):
            raise FileNotFoundError(f"hhblits: query file {input_fasta_path!r} not found")
        with base.tmpdir("hhblits") as work, base.timing("hhblits") as clock:
            a3m_path = os.path.join(work, "output.a3m")
            result = base.run_command(self.command(input_fasta_path, a3m_path),
                                      program="hhblits", timeout_s=self.timeout_s,
                                      label="hhblits process")
            a3m = base.read_output(a3m_path, "hhblits", result.stderr)
        return [dict(a3m=a3m, output=result.stdout, stderr=result.stderr, n_iter=self.n_iter,
                     e_value=self.e_value, wall_time_s=clock["wall_time_s"])]
