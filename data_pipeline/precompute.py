"""Precompute the alignments of many chains: ``<alignments_dir>/<record id>/`` per record.

For a FASTA file (any number of records) or a directory of FASTA files, every record's
searches run into its own directory with AF2's file names (``data_pipeline.msa_search``),
ready for ``DataPipeline(msa_mode="precomputed")``, AF2's ``use_precomputed_msas`` or
OpenFold's ``alignment_dir``. Resumable: a chain whose files are all present is skipped,
results are written under temporary names and renamed, so an interrupted run leaves only
finished files and the next run does the rest. Records with the same sequence are
searched once and the files copied.

Command line (``python scripts/precompute_alignments.py --help``)::

    precompute-alignments seqs.fasta -o alignments/ \\
        --uniref90_database_path uniref90.fasta --mgnify_database_path mgy_clusters.fa \\
        --bfd_database_path bfd/bfd_... --uniref30_database_path uniref30/UniRef30_... \\
        --pdb70_database_path pdb70/pdb70
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shutil
import time
from collections.abc import Sequence

from data_pipeline.msa_search import MsaSearcher, temporary_name
from data_pipeline.parsers import read_fasta
from data_pipeline.parsers.fasta import PathLike
from data_pipeline.pipeline import DatabaseConfig, safe_name

logger = logging.getLogger(__name__)

FASTA_SUFFIXES = (".fasta", ".fa", ".faa", ".fas", ".seq")


@dataclasses.dataclass(frozen=True)
class Chain:
    """One query record: its directory name, sequence and FASTA header."""

    record_id: str
    sequence: str
    description: str
    source: str


@dataclasses.dataclass
class PrecomputeSummary:
    """What a run did: record ids searched, skipped (already complete), copied from an
    identical sequence, failed (with the error), and the wall time per record (s)."""

    searched: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)
    copied: list[str] = dataclasses.field(default_factory=list)
    failed: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    timings: dict[str, float] = dataclasses.field(default_factory=dict)


def read_chains(inputs: PathLike | Sequence[PathLike]) -> list[Chain]:
    """Records of FASTA files and directories of FASTA files (``*.fasta``, ``*.fa``, ...).

    Raises:
        FileNotFoundError: an input does not exist or a directory holds no FASTA file.
        ValueError: a malformed FASTA file, or two records whose ids (first header word,
            sanitised for the file system) are the same.
    """
    paths = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    files: list[str] = []
    for path in map(os.fspath, paths):
        if os.path.isdir(path):
            found = sorted(os.path.join(path, n) for n in os.listdir(path)
                           if n.lower().endswith(FASTA_SUFFIXES))
            if not found:
                raise FileNotFoundError(
                    f"{path}: no FASTA files ({', '.join(FASTA_SUFFIXES)}) in the directory")
            files += found
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise FileNotFoundError(f"FASTA input {path!r} does not exist")
    chains: list[Chain] = []
    first: dict[str, str] = {}
    for path in files:
        sequences, descriptions = read_fasta(path)
        for sequence, description in zip(sequences, descriptions, strict=True):
            record_id = safe_name(description)
            if record_id in first:
                raise ValueError(
                    f"{path}: record {description.split()[0]!r} has the directory name "
                    f"{record_id!r}, already used by a record of {first[record_id]}; give "
                    "every record a unique identifier"
                )
            first[record_id] = path
            chains.append(Chain(record_id, sequence, description, path))
    return chains


def precompute_alignments(
    inputs: PathLike | Sequence[PathLike],
    alignments_dir: PathLike,
    databases: DatabaseConfig,
    *,
    max_workers: int = 3,
    keep_going: bool = True,
    show_progress: bool = False,
) -> PrecomputeSummary:
    """Search every chain of ``inputs`` into ``<alignments_dir>/<record id>/``.

    Args:
        inputs: FASTA file(s) and/or directories of FASTA files.
        alignments_dir: output root (created).
        databases: what to search (``DatabaseConfig``; ``template_mmcif_dir`` unused).
        max_workers: searches of one chain run at the same time.
        keep_going: log a chain's failure and continue (else raise it).
        show_progress: draw a tqdm progress bar.

    Returns:
        A ``PrecomputeSummary``.
    """
    chains = read_chains(inputs)
    searcher = MsaSearcher(databases, max_workers=max_workers)
    root = os.fspath(alignments_dir)
    os.makedirs(root, exist_ok=True)
    summary = PrecomputeSummary()
    done_by_sequence: dict[str, str] = {}
    logger.info("Precomputing alignments of %d chains into %s (files: %s)", len(chains), root,
                ", ".join(searcher.output_files()))
    bar = _progress(len(chains), show_progress)
    start_all = time.perf_counter()
    try:
        for chain in chains:
            out_dir = os.path.join(root, chain.record_id)
            start = time.perf_counter()
            try:
                if searcher.is_complete(out_dir):
                    logger.info("%s: complete, skipped", chain.record_id)
                    summary.skipped.append(chain.record_id)
                elif chain.sequence in done_by_sequence:
                    _copy_results(done_by_sequence[chain.sequence], out_dir)
                    logger.info("%s: same sequence as %s, files copied", chain.record_id,
                                os.path.basename(done_by_sequence[chain.sequence]))
                    summary.copied.append(chain.record_id)
                else:
                    searcher.search(chain.sequence, chain.description, out_dir)
                    summary.searched.append(chain.record_id)
                done_by_sequence.setdefault(chain.sequence, out_dir)
            except Exception as error:
                if not keep_going:
                    raise
                logger.error("%s: alignment failed: %s", chain.record_id, error)
                summary.failed.append((chain.record_id, str(error)))
            summary.timings[chain.record_id] = time.perf_counter() - start
            logger.info("%s (%d residues) done in %.2f s", chain.record_id, len(chain.sequence),
                        summary.timings[chain.record_id])
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(chain.record_id)
    finally:
        if bar is not None:
            bar.close()
    logger.info("Precomputed %d chains in %.1f s: %d searched, %d skipped, %d copied, %d failed",
                len(chains), time.perf_counter() - start_all, len(summary.searched),
                len(summary.skipped), len(summary.copied), len(summary.failed))
    return summary


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is a declared dependency; without it, logs only
        logger.warning("tqdm not installed: no progress bar")
        return None
    return tqdm(total=total, unit="chain", desc="alignments")


def _copy_results(source_dir: str, out_dir: str) -> None:
    """Copy the finished files of an identical chain (temporary name, then rename)."""
    os.makedirs(out_dir, exist_ok=True)
    for name in sorted(os.listdir(source_dir)):
        target = os.path.join(out_dir, name)
        if name.startswith(".") or os.path.exists(target):
            continue
        tmp = temporary_name(target)
        shutil.copyfile(os.path.join(source_dir, name), tmp)
        os.replace(tmp, target)


# ------------------------------------------------------------------------------- CLI

_DATABASE_FLAGS = (
    ("uniref90_database_path", "UniRef90 FASTA (jackhmmer)"),
    ("mgnify_database_path", "MGnify FASTA (jackhmmer)"),
    ("bfd_database_path", "BFD HH-suite database prefix (hhblits)"),
    ("uniref30_database_path", "UniRef30 / Uniclust30 HH-suite prefix (hhblits)"),
    ("small_bfd_database_path", "reduced BFD FASTA (jackhmmer), instead of BFD + UniRef30"),
    ("pdb70_database_path", "PDB70 HH-suite prefix (hhsearch templates)"),
    ("pdb_seqres_database_path", "pdb_seqres.txt (hmmsearch templates)"),
)
_BINARY_FLAGS = ("jackhmmer", "hhblits", "hhsearch", "hmmsearch", "hmmbuild")


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``precompute-alignments``."""
    parser = argparse.ArgumentParser(
        prog="precompute-alignments",
        description="Run the MSA and template searches of every record of FASTA files into "
                    "<output_dir>/<record id>/ with AlphaFold 2's file names. Resumable: "
                    "chains whose files are all present are skipped.")
    parser.add_argument("fasta", nargs="+", help="FASTA file(s) or directories of them")
    parser.add_argument("-o", "--output_dir", required=True, help="alignments directory")
    for flag, text in _DATABASE_FLAGS:
        parser.add_argument(f"--{flag}", default=None, help=text)
    parser.add_argument("--uniclust30_database_path", dest="uniref30_database_path",
                        help=argparse.SUPPRESS)
    for program in _BINARY_FLAGS:
        parser.add_argument(f"--{program}_binary_path", default=None,
                            help=f"{program} executable (default: on PATH)")
    parser.add_argument("--n_cpu", type=int, default=8, help="threads per search program")
    parser.add_argument("--max_workers", type=int, default=3,
                        help="searches of one chain run at the same time")
    parser.add_argument("--timeout_s", type=float, default=None,
                        help="wall-clock limit of one search (default: 6 h)")
    parser.add_argument("--stop_on_error", action="store_true",
                        help="stop at the first failing chain (default: log it and go on)")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (1 when a chain failed)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    databases = DatabaseConfig(
        **{flag: getattr(args, flag) for flag, _ in _DATABASE_FLAGS},
        **{f"{p}_binary_path": getattr(args, f"{p}_binary_path") for p in _BINARY_FLAGS},
        n_cpu=args.n_cpu, timeout_s=args.timeout_s)
    if not databases.has_msa_databases:
        build_parser().error("give at least one MSA database, e.g. --uniref90_database_path")
    summary = precompute_alignments(
        args.fasta, args.output_dir, databases, max_workers=args.max_workers,
        keep_going=not args.stop_on_error, show_progress=not args.no_progress)
    for record_id, error in summary.failed:
        logger.error("FAILED %s: %s", record_id, error.splitlines()[0] if error else "")
    return 1 if summary.failed else 0
