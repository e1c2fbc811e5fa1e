"""hmmbuild + hmmsearch (HMMER): AF2-Multimer's template search over ``pdb_seqres.txt``.

The query's UniRef90 MSA (Stockholm, reference columns marked by ``#=GC RF``) becomes a
profile HMM with ``hmmbuild --hand``; ``hmmsearch`` scans the PDB sequences with it and
writes the hits as a Stockholm alignment, parsed by ``parse_hmmsearch_sto``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence

from data_pipeline.parsers.hhr import TemplateHit
from data_pipeline.parsers.hmmsearch import parse_hmmsearch_sto
from data_pipeline.tools import base

logger = logging.getLogger(__name__)

#: AF2's hmmsearch thresholds: permissive prefilters and E-values, so that remote
#: templates are kept and filtered later.
DEFAULT_HMMSEARCH_FLAGS = ("--F1", "0.1", "--F2", "0.1", "--F3", "0.1", "--incE", "100",
                           "-E", "100", "--domE", "100", "--incdomE", "100")


class Hmmbuild:
    """Runs ``hmmbuild`` to make a profile HMM from an MSA.

    Args:
        binary_path: the executable (default: ``hmmbuild`` on PATH).
        singlemx: use a plain substitution matrix for single sequences (``--singlemx``).
        timeout_s: wall-clock limit of one run.
    """

    def __init__(self, *, binary_path: str | None = None, singlemx: bool = False,
                 timeout_s: float | None = base.DEFAULT_TIMEOUT_S) -> None:
        self.binary_path = base.find_binary("hmmbuild", binary_path)
        self.singlemx = singlemx
        self.timeout_s = timeout_s

    def build_profile_from_sto(self, sto: str, model_construction: str = "fast") -> str:
        """HMM text from a Stockholm MSA. ``"hand"`` takes the match columns from the
        ``#=GC RF`` line, ``"fast"`` lets hmmbuild choose them."""
        return self._build(sto, model_construction)

    def build_profile_from_a3m(self, a3m: str) -> str:
        """HMM text from an A3M MSA (insertions dropped, then aligned FASTA)."""
        lines = [line if line.startswith(">") else re.sub("[a-z]+", "", line)
                 for line in a3m.splitlines()]
        return self._build("\n".join(lines) + "\n", "fast")

    def _build(self, msa: str, model_construction: str) -> str:
        if model_construction not in ("hand", "fast"):
            raise ValueError(
                f"hmmbuild: model_construction must be 'hand' or 'fast', got "
                f"{model_construction!r}"
            )
        if not msa.strip():
            raise ValueError("hmmbuild: the MSA is empty")
        with base.tmpdir("hmmbuild") as work:
            msa_path = os.path.join(work, "query.msa")
            hmm_path = os.path.join(work, "output.hmm")
            with open(msa_path, "w", encoding="utf-8") as handle:
                handle.write(msa)
            cmd = [self.binary_path]
            if model_construction == "hand":
                cmd.append("--hand")
            if self.singlemx:
                cmd.append("--singlemx")
            cmd += ["--amino", hmm_path, msa_path]
            result = base.run_command(cmd, program="hmmbuild", timeout_s=self.timeout_s)
            return base.read_output(hmm_path, "hmmbuild", result.stderr)


class Hmmsearch:
    """Runs ``hmmsearch`` of a profile against a FASTA database with AF2's flags.

    Args:
        database_path: the sequence database (FASTA, e.g. ``pdb_seqres.txt``).
        binary_path: the hmmsearch executable (default: on PATH).
        hmmbuild_binary_path: the hmmbuild executable (default: on PATH).
        flags: hmmsearch thresholds; None: ``DEFAULT_HMMSEARCH_FLAGS``.
        n_cpu: worker threads (``--cpu``; AF2 uses 8).
        timeout_s: wall-clock limit of one run.

    Raises:
        ToolNotFoundError: hmmsearch or hmmbuild not installed.
        DatabaseNotFoundError: ``database_path`` is not a file.
    """

    output_format = "sto"
    input_format = "sto"

    def __init__(
        self,
        *,
        database_path: str,
        binary_path: str | None = None,
        hmmbuild_binary_path: str | None = None,
        flags: Sequence[str] | None = None,
        n_cpu: int = 8,
        timeout_s: float | None = base.DEFAULT_TIMEOUT_S,
    ) -> None:
        self.binary_path = base.find_binary("hmmsearch", binary_path)
        self.hmmbuild_runner = Hmmbuild(binary_path=hmmbuild_binary_path, timeout_s=timeout_s)
        self.database_path = base.check_file_database(
            os.fspath(database_path), "hmmsearch", "sequence database")
        self.flags = list(DEFAULT_HMMSEARCH_FLAGS if flags is None else flags)
        self.n_cpu = n_cpu
        self.timeout_s = timeout_s

    def query(self, msa_sto: str) -> str:
        """Build a profile from the Stockholm MSA (``--hand``) and search with it."""
        return self.query_with_hmm(
            self.hmmbuild_runner.build_profile_from_sto(msa_sto, model_construction="hand"))

    def query_with_hmm(self, hmm: str) -> str:
        """Search the database with an HMM (text); returns the hits as Stockholm text."""
        with base.tmpdir("hmmsearch") as work:
            hmm_path = os.path.join(work, "query.hmm")
            out_path = os.path.join(work, "output.sto")
            with open(hmm_path, "w", encoding="utf-8") as handle:
                handle.write(hmm)
            cmd = [self.binary_path, "--noali", "--cpu", str(self.n_cpu), *self.flags,
                   "-A", out_path, hmm_path, self.database_path]
            result = base.run_command(
                cmd, program="hmmsearch", timeout_s=self.timeout_s,
                label=f"hmmsearch ({os.path.basename(self.database_path)})")
            return base.read_output(out_path, "hmmsearch", result.stderr)

    def get_template_hits(self, output_string: str, input_sequence: str) -> list[TemplateHit]:
        """Template hits from hmmsearch's Stockholm output for the query ``input_sequence``."""
        return parse_hmmsearch_sto(output_string, input_sequence, "hmmsearch output")
