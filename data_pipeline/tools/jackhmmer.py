"""jackhmmer (HMMER): iterative profile search of a query sequence against a FASTA database.

AF2 runs it on UniRef90 and MGnify (and UniProt for multimer pairing) with one iteration
and strict prefilter thresholds; the hits come back as a Stockholm alignment whose first
row is the query.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from data_pipeline.parsers.stockholm import truncate_stockholm_msa
from data_pipeline.tools import base

logger = logging.getLogger(__name__)


class Jackhmmer:
    """Runs ``jackhmmer`` with AF2's default settings.

    Args:
        database_path: the sequence database (FASTA).
        binary_path: the executable (default: ``jackhmmer`` on PATH).
        n_cpu: worker threads (``--cpu``).
        n_iter: search iterations (``-N``); AF2 uses 1.
        e_value: reporting and inclusion E-value (``-E``, ``--incE``).
        z_value: effective database size for E-values (``-Z``), None: actual size.
        get_tblout: also return the per-target table (``--tblout``).
        filter_f1, filter_f2, filter_f3: MSV / Viterbi / Forward prefilter pass rates.
        incdom_e, dom_e: domain inclusion / reporting E-values (``--incdomE``, ``--domE``).
        timeout_s: wall-clock limit of one run.

    Raises:
        ToolNotFoundError: no jackhmmer executable.
        DatabaseNotFoundError: ``database_path`` is not a file.
    """

    def __init__(
        self,
        *,
        database_path: str,
        binary_path: str | None = None,
        n_cpu: int = 8,
        n_iter: int = 1,
        e_value: float = 0.0001,
        z_value: int | None = None,
        get_tblout: bool = False,
        filter_f1: float = 0.0005,
        filter_f2: float = 0.00005,
        filter_f3: float = 0.0000005,
        incdom_e: float | None = None,
        dom_e: float | None = None,
        timeout_s: float | None = base.DEFAULT_TIMEOUT_S,
    ) -> None:
        self.binary_path = base.find_binary("jackhmmer", binary_path)
        self.database_path = base.check_file_database(
            os.fspath(database_path), "jackhmmer", "sequence database")
        self.n_cpu = n_cpu
        self.n_iter = n_iter
        self.e_value = e_value
        self.z_value = z_value
        self.get_tblout = get_tblout
        self.filter_f1 = filter_f1
        self.filter_f2 = filter_f2
        self.filter_f3 = filter_f3
        self.incdom_e = incdom_e
        self.dom_e = dom_e
        self.timeout_s = timeout_s

    def command(self, input_fasta_path: str, sto_path: str,
                tblout_path: str | None = None) -> list[str]:
        """The command line for one search (AF2's flags)."""
        cmd = [
            self.binary_path,
            "-o", "/dev/null",  # the human-readable report is not used
            "-A", sto_path,
            "--noali",
            "--F1", str(self.filter_f1),
            "--F2", str(self.filter_f2),
            "--F3", str(self.filter_f3),
            "--incE", str(self.e_value),
            "-E", str(self.e_value),
            "--cpu", str(self.n_cpu),
            "-N", str(self.n_iter),
        ]
        if tblout_path:
            cmd += ["--tblout", tblout_path]
        if self.z_value:
            cmd += ["-Z", str(self.z_value)]
        if self.dom_e is not None:
            cmd += ["--domE", str(self.dom_e)]
        if self.incdom_e is not None:
            cmd += ["--incdomE", str(self.incdom_e)]
        return cmd + [input_fasta_path, self.database_path]

    def query(self, input_fasta_path: str,
              max_sequences: int | None = None) -> list[dict[str, Any]]:
        """Search the database with the (single-sequence) FASTA file.

        Args:
            input_fasta_path: the query FASTA.
            max_sequences: keep only the first this many sequences of the alignment
                (read without loading the whole file).

        Returns:
            A one-element list (AF2's shape: one entry per database chunk) of a dict with
            ``sto`` (Stockholm text), ``tbl`` (tblout text or ""), ``stderr``, ``n_iter``,
            ``e_value`` and ``wall_time_s``.
        """
        input_fasta_path = os.fspath(input_fasta_path)
        if not os.path.isfile(input_fasta_path):
            raise FileNotFoundError(f"jackhmmer: query FASTA {input_fasta_path!r} not found")
        label = f"jackhmmer ({os.path.basename(self.database_path)})"
        with base.tmpdir("jackhmmer") as work, base.timing(label) as clock:
            sto_path = os.path.join(work, "output.sto")
            tbl_path = os.path.join(work, "tblout.txt") if self.get_tblout else None
            result = base.run_command(
                self.command(input_fasta_path, sto_path, tbl_path), program="jackhmmer",
                timeout_s=self.timeout_s, label=f"{label} process")
            if max_sequences is None:
                sto = base.read_output(sto_path, "jackhmmer", result.stderr)
            else:
                sto = truncate_stockholm_msa(
                    base.require_output(sto_path, "jackhmmer", result.stderr), max_sequences)
            tbl = base.read_output(tbl_path, "jackhmmer", result.stderr) if tbl_path else ""
        return [dict(sto=sto, tbl=tbl, stderr=result.stderr, n_iter=self.n_iter,
                     e_value=self.e_value, wall_time_s=clock["wall_time_s"])]
