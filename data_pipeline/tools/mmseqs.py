"""MMseqs2: fast (profile) sequence search producing an A3M, as ColabFold does.

AF2 has no MMseqs2 stage; ColabFold replaces jackhmmer/hhblits with it. The flow for one
query against a sequence database built by ``MMseqs.create_database``::

    mmseqs createdb query.fasta qdb
    mmseqs search qdb targetdb res tmp -a --num-iterations 3 -s 8 -e 0.1 --max-seqs 10000
    mmseqs result2msa qdb targetdb res msa --msa-format-mode 6 (+ ColabFold's filter)

``--msa-format-mode 6`` writes A3M with ColabFold's alignment statistics in the headers.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from data_pipeline.parsers.fasta import iter_fasta_records
from data_pipeline.tools import base

logger = logging.getLogger(__name__)

#: Files every MMseqs2 sequence database prefix has.
MMSEQS_DB_SUFFIXES = ("", ".dbtype", ".index", "_h", "_h.index")
#: ColabFold's MSA filter for result2msa (diversity-preserving, max 95% identity).
COLABFOLD_MSA_FILTER = ("--filter-msa", "1", "--filter-min-enable", "1000", "--diff", "3000",
                        "--qid", "0.0,0.2,0.4,0.6,0.8,1.0", "--qsc", "0",
                        "--max-seq-id", "0.95")


class MMseqs:
    """Searches one query against an MMseqs2 database and returns an A3M.

    Args:
        database_path: prefix of an MMseqs2 sequence database (``mmseqs createdb``).
        binary_path: the executable (default: ``mmseqs`` on PATH).
        n_cpu: threads.
        num_iterations: profile-search iterations (ColabFold: 3).
        sensitivity: prefilter sensitivity ``-s`` (ColabFold: 8).
        e_value: E-value cutoff (ColabFold: 0.1).
        max_seqs: maximum hits per query passed to alignment.
        filter_msa: apply ColabFold's MSA filter (``COLABFOLD_MSA_FILTER``).
        timeout_s: wall-clock limit of each mmseqs step.

    Raises:
        ToolNotFoundError: no mmseqs executable.
        DatabaseNotFoundError: ``database_path`` is not an MMseqs2 database (a FASTA file
            must first go through ``MMseqs.create_database``).
    """

    def __init__(
        self,
        *,
        database_path: str,
        binary_path: str | None = None,
        n_cpu: int = 4,
        num_iterations: int = 3,
        sensitivity: float = 8.0,
        e_value: float = 0.1,
        max_seqs: int = 10_000,
        filter_msa: bool = True,
        timeout_s: float | None = base.DEFAULT_TIMEOUT_S,
    ) -> None:
        self.binary_path = base.find_binary("mmseqs", binary_path)
        database_path = os.fspath(database_path)
        if os.path.isfile(database_path) and not os.path.exists(database_path + ".dbtype"):
            raise base.DatabaseNotFoundError(
                f"mmseqs: {database_path!r} is a plain file, not an MMseqs2 database; build "
                "one with MMseqs.create_database(fasta_path, db_prefix) (mmseqs createdb)"
            )
        self.database_path = base.check_prefix_database(database_path, "mmseqs",
                                                        MMSEQS_DB_SUFFIXES)
        self.n_cpu = n_cpu
        self.num_iterations = num_iterations
        self.sensitivity = sensitivity
        self.e_value = e_value
        self.max_seqs = max_seqs
        self.filter_msa = filter_msa
        self.timeout_s = timeout_s

    @staticmethod
    def create_database(fasta_path: str, db_prefix: str, *, binary_path: str | None = None,
                        timeout_s: float | None = base.DEFAULT_TIMEOUT_S) -> str:
        """Build an MMseqs2 sequence database from a FASTA file (``mmseqs createdb``).

        Returns:
            ``db_prefix``, ready to pass as ``database_path``.
        """
        binary = base.find_binary("mmseqs", binary_path)
        fasta_path, db_prefix = os.fspath(fasta_path), os.fspath(db_prefix)
        if not os.path.isfile(fasta_path):
            raise FileNotFoundError(f"mmseqs createdb: FASTA file {fasta_path!r} not found")
        base.run_command([binary, "createdb", fasta_path, db_prefix, "-v", "1"],
                         program="mmseqs", timeout_s=timeout_s, label="mmseqs createdb")
        return base.check_prefix_database(db_prefix, "mmseqs", MMSEQS_DB_SUFFIXES)

    def _run(self, *args: str, label: str) -> str:
        result = base.run_command([self.binary_path, *args], program="mmseqs",
                                  timeout_s=self.timeout_s, label=label)
        return result.stderr

    def query(self, input_fasta_path: str) -> dict[str, Any]:
        """Search with a one-record FASTA file.

        Returns:
            dict with ``a3m`` (query first, then the hits), ``stderr`` (of all steps)
            and ``wall_time_s``.
        """
        input_fasta_path = os.fspath(input_fasta_path)
        if not os.path.isfile(input_fasta_path):
            raise FileNotFoundError(f"mmseqs: query FASTA {input_fasta_path!r} not found")
        with open(input_fasta_path, encoding="utf-8") as handle:
            n_records = sum(1 for _ in iter_fasta_records(handle.read(), input_fasta_path))
        if n_records != 1:
            raise ValueError(
                f"mmseqs: {input_fasta_path!r} holds {n_records} records; MMseqs.query "
                "searches one query sequence per call"
            )
        threads = ("--threads", str(self.n_cpu))
        stderr = []
        label = f"mmseqs ({os.path.basename(self.database_path)})"
        with base.tmpdir("mmseqs") as work, base.timing(label) as clock:
            qdb, res, msa = (os.path.join(work, n) for n in ("qdb", "res", "msa"))
            stderr.append(self._run("createdb", input_fasta_path, qdb, "-v", "1",
                                    label="mmseqs createdb (query)"))
            stderr.append(self._run(
                "search", qdb, self.database_path, res, os.path.join(work, "tmp"), "-a",
                "--num-iterations", str(self.num_iterations), "-s", str(self.sensitivity),
                "-e", str(self.e_value), "--max-seqs", str(self.max_seqs),
                "--remove-tmp-files", "1", *threads, "-v", "1", label="mmseqs search"))
            stderr.append(self._run(
                "result2msa", qdb, self.database_path, res, msa, "--msa-format-mode", "6",
                *(COLABFOLD_MSA_FILTER if self.filter_msa else ()), *threads, "-v", "1",
                label="mmseqs result2msa"))
            a3m = base.read_output(msa, "mmseqs", "\n".join(stderr)).replace("\x00", "")
        return dict(a3m=a3m, stderr="\n".join(stderr), wall_time_s=clock["wall_time_s"])
