"""Running the MSA and template searches of one chain into its alignments directory.

``MsaSearcher`` builds the search programs from a ``DatabaseConfig`` (checking every
program and database at once) and, for a query, runs each configured search whose result
file is not yet in the directory:

==========  ==========================================  ======================
search      program (AF2's settings)                    file written
==========  ==========================================  ======================
uniref90    jackhmmer, first 10,000 rows kept           ``uniref90_hits.sto``
mgnify      jackhmmer, first 501 rows kept              ``mgnify_hits.sto``
bfd         hhblits on BFD + UniRef30                   ``bfd_uniref_hits.a3m``
small_bfd   jackhmmer                                   ``small_bfd_hits.sto``
templates   hhsearch (PDB70) / hmmsearch (pdb_seqres)   ``pdb_hits.hhr`` / ``.sto``
==========  ==========================================  ======================

Templates are searched with the UniRef90 MSA (repeated rows and all-gap columns removed,
as AF2), so they run after it; the other searches run concurrently in threads. Results
are written under a temporary name and renamed: an interrupted search leaves no file,
and the next run redoes only what is missing.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from data_pipeline import alignment_files as af
from data_pipeline import parsers, tools

if TYPE_CHECKING:
    from data_pipeline.pipeline import DatabaseConfig

logger = logging.getLogger(__name__)


def temporary_name(path: str) -> str:
    """A unique hidden name next to ``path`` for writing it before the final rename."""
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f".{name}.{uuid.uuid4().hex[:12]}.tmp")


def write_atomically(path: str, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same directory + rename."""
    tmp_path = temporary_name(path)
    try:
        with open(tmp_path, "x", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise


def a3m_to_stockholm(a3m: str) -> str:
    """An A3M alignment as Stockholm with every query column a reference (``#=GC RF``)
    column, the form ``hmmbuild --hand`` needs. Insertions are dropped."""
    msa = parsers.parse_a3m(a3m)
    names = [f"seq{i}" for i in range(len(msa))]
    width = max(len(n) for n in names + ["#=GC RF"])
    lines = ["# STOCKHOLM 1.0", ""]
    lines += [f"{n:<{width}} {s}" for n, s in zip(names, msa.sequences, strict=True)]
    lines += [f"{'#=GC RF':<{width}} {'x' * len(msa.sequences[0])}", "//"]
    return "\n".join(lines) + "\n"


class MsaSearcher:
    """Runs the configured searches of one chain (see the module docstring).

    Args:
        databases: the ``DatabaseConfig``.
        max_workers: searches run at the same time.

    Raises:
        ToolNotFoundError, DatabaseNotFoundError: a configured program or database is
            missing.
    """

    def __init__(self, databases: DatabaseConfig, max_workers: int = 3) -> None:
        db = databases
        self.max_workers = max_workers
        common = dict(n_cpu=db.n_cpu)
        if db.timeout_s is not None:
            common["timeout_s"] = db.timeout_s
        self.jackhmmers: dict[str, tools.Jackhmmer] = {}
        for name, path in (("uniref90", db.uniref90_database_path),
                           ("mgnify", db.mgnify_database_path),
                           ("small_bfd", db.small_bfd_database_path)):
            if path:
                self.jackhmmers[name] = tools.Jackhmmer(
                    database_path=path, binary_path=db.jackhmmer_binary_path, **common)
        hhblits_dbs = [p for p in (db.bfd_database_path, db.uniref30_database_path) if p]
        self.hhblits = tools.HHBlits(databases=hhblits_dbs, binary_path=db.hhblits_binary_path,
                                     **common) if hhblits_dbs else None
        self.template_searcher: tools.HHSearch | tools.Hmmsearch | None = None
        if db.pdb70_database_path:
            self.template_searcher = tools.HHSearch(
                databases=[db.pdb70_database_path], binary_path=db.hhsearch_binary_path,
                **({"timeout_s": db.timeout_s} if db.timeout_s is not None else {}))
        elif db.pdb_seqres_database_path:
            self.template_searcher = tools.Hmmsearch(
                database_path=db.pdb_seqres_database_path,
                binary_path=db.hmmsearch_binary_path,
                hmmbuild_binary_path=db.hmmbuild_binary_path, **common)

    def output_files(self) -> list[str]:
        """File names a complete search of one chain writes."""
        names = [af.SOURCES_BY_NAME[n].file_names[0] for n in ("uniref90", "small_bfd", "mgnify")
                 if n in self.jackhmmers]
        if self.hhblits is not None:
            names.append(af.SOURCES_BY_NAME["bfd"].file_names[0])
        if self.template_searcher is not None:
            names.append(self._template_file())
        return names

    def _template_file(self) -> str:
        return af.HHSEARCH_HITS_FILE if isinstance(self.template_searcher, tools.HHSearch) \
            else af.HMMSEARCH_HITS_FILE

    def is_complete(self, out_dir: str) -> bool:
        """Whether every search's result (under any accepted name) is in ``out_dir``."""
        return os.path.isdir(out_dir) and not self._missing(out_dir)

    def _missing(self, out_dir: str) -> list[str]:
        present = set(os.listdir(out_dir)) if os.path.isdir(out_dir) else set()
        missing = [name for name in ("uniref90", "small_bfd", "mgnify")
                   if name in self.jackhmmers
                   and not present & set(af.SOURCES_BY_NAME[name].file_names)]
        if self.hhblits is not None and not present & set(af.SOURCES_BY_NAME["bfd"].file_names):
            missing.append("bfd")
        if self.template_searcher is not None and not present & set(af.TEMPLATE_HIT_FILES):
            missing.append("templates")
        return missing

    # ------------------------------------------------------------------ running

    def search(self, sequence: str, description: str, out_dir: str) -> dict[str, float]:
        """Run the searches whose results are missing from ``out_dir`` (created).

        Returns:
            Wall time (s) of each search run.

        Raises:
            ToolError: a program failed (the other searches still finish and keep their
                files); the first failure is raised.
        """
        os.makedirs(out_dir, exist_ok=True)
        missing = self._missing(out_dir)
        if not missing:
            logger.info("All alignments of %s already in %s", description.split()[0], out_dir)
            return {}
        logger.info("Searching %s for %s (%d residues): %s", out_dir, description.split()[0],
                    len(sequence), ", ".join(missing))
        timings: dict[str, float] = {}
        with tempfile.TemporaryDirectory(prefix="unifold_query_") as work:
            fasta = os.path.join(work, "query.fasta")
            with open(fasta, "w", encoding="utf-8") as handle:
                handle.write(f">{description}\n{sequence}\n")
            jobs: dict[str, Callable[[], None]] = {}
            for name in ("mgnify", "small_bfd"):
                if name in missing:
                    jobs[name] = self._jackhmmer_job(name, fasta, out_dir)
            if "bfd" in missing:
                jobs["bfd"] = self._hhblits_job(fasta, out_dir)
            if "uniref90" in missing or "templates" in missing:
                jobs["uniref90"] = self._uniref90_and_templates_job(
                    sequence, fasta, out_dir, "uniref90" in missing, "templates" in missing)
            errors = []
            with concurrent.futures.ThreadPoolExecutor(self.max_workers) as pool:
                futures = {pool.submit(self._timed, name, job, timings): name
                           for name, job in jobs.items()}
                for future in concurrent.futures.as_completed(futures):
                    if future.exception() is not None:
                        logger.error("Search %s failed: %s", futures[future], future.exception())
                        errors.append(future.exception())
        if errors:
            raise errors[0]
        return timings

    @staticmethod
    def _timed(name: str, job: Callable[[], None], timings: dict[str, float]) -> None:
        start = time.perf_counter()
        job()
        timings[name] = time.perf_counter() - start
        logger.info("Search %s done in %.2f s", name, timings[name])

    def _jackhmmer_job(self, name: str, fasta: str, out_dir: str) -> Callable[[], None]:
        source = af.SOURCES_BY_NAME[name]

        def run() -> None:
            result = self.jackhmmers[name].query(fasta, max_sequences=source.max_hits)[0]
            write_atomically(os.path.join(out_dir, source.file_names[0]), result["sto"])
        return run

    def _hhblits_job(self, fasta: str, out_dir: str) -> Callable[[], None]:
        def run() -> None:
            result = self.hhblits.query(fasta)[0]
            write_atomically(os.path.join(out_dir, af.SOURCES_BY_NAME["bfd"].file_names[0]),
                             result["a3m"])
        return run

    def _uniref90_and_templates_job(self, sequence: str, fasta: str, out_dir: str,
                                    run_uniref90: bool, run_templates: bool
                                    ) -> Callable[[], None]:
        def run() -> None:
            if run_uniref90:
                self._jackhmmer_job("uniref90", fasta, out_dir)()
            if run_templates:
                start = time.perf_counter()
                self._search_templates(sequence, out_dir)
                logger.info("Template search done in %.2f s", time.perf_counter() - start)
        return run

    def _template_query(self, sequence: str, out_dir: str) -> tuple[str, str]:
        """The template search input, ``(format, text)``: the UniRef90 MSA when there is
        one (Stockholm: deduplicated, empty columns removed), else the query alone."""
        source = af.SOURCES_BY_NAME["uniref90"]
        sto_path, a3m_path = (os.path.join(out_dir, n) for n in source.file_names)
        if os.path.exists(sto_path):
            sto = parsers.truncate_stockholm_msa(sto_path, source.max_hits)
            sto = parsers.deduplicate_stockholm_msa(sto)
            return "sto", parsers.remove_empty_columns_from_stockholm_msa(sto)
        if os.path.exists(a3m_path):
            with open(a3m_path, encoding="utf-8") as handle:
                return "a3m", handle.read()
        logger.info("No UniRef90 MSA: searching templates with the query alone")
        return "a3m", f">query\n{sequence}\n"

    def _search_templates(self, sequence: str, out_dir: str) -> None:
        kind, msa = self._template_query(sequence, out_dir)
        searcher = self.template_searcher
        if isinstance(searcher, tools.HHSearch):
            query = parsers.convert_stockholm_to_a3m(msa) if kind == "sto" else msa
        else:
            query = msa if kind == "sto" else a3m_to_stockholm(msa)
        result = searcher.query(query)
        write_atomically(os.path.join(out_dir, self._template_file()), result)
