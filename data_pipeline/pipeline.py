"""``DataPipeline``: a FASTA file -> the raw feature dict of its chain.

Three MSA modes:

* ``"precomputed"`` (default without databases): read the alignments directory as is
  (AF2's ``use_precomputed_msas``, OpenFold's ``alignment_dir``; file names in
  ``data_pipeline.alignment_files``); no search program runs.
* ``"search"`` (default with databases): run jackhmmer / hhblits / hhsearch or hmmsearch
  on the configured databases for every result file not yet in the alignments directory,
  writing AF2's file names there, so a later run (or AF2, OpenFold) reuses them.
  Independent searches run concurrently.
* ``"single_sequence"``: the query is the whole MSA.

MSAs are merged UniRef90, BFD, MGnify (then extra ``.a3m`` files) with repeated rows
dropped, as official AF2. Templates come from the hit file when a template mmCIF
directory is configured; otherwise the template features are empty (``N_t = 0``).
With ``feature_cache_dir`` the features are stored as ``<record id>.npz`` and reused while
the sequence, the settings and the alignment files are unchanged.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import logging
import os
import re
import time
from collections.abc import Sequence

from data_pipeline import alignment_files as af
from data_pipeline import features as feats
from data_pipeline.msa_search import MsaSearcher
from data_pipeline.parsers import parse_hhr, parse_hmmsearch_sto, read_fasta
from data_pipeline.parsers.fasta import PathLike
from data_pipeline.templates import (
    HhsearchHitFeaturizer,
    HmmsearchHitFeaturizer,
    TemplateHitFeaturizer,
)

logger = logging.getLogger(__name__)

MSA_MODES = ("search", "precomputed", "single_sequence")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclasses.dataclass
class DatabaseConfig:
    """Search databases and programs (AF2's ``run_alphafold`` flags). Paths left None are
    not searched; programs left None are looked up on PATH.

    Attributes:
        uniref90_database_path: UniRef90 FASTA (jackhmmer).
        mgnify_database_path: MGnify FASTA (jackhmmer).
        bfd_database_path: BFD HH-suite prefix (hhblits, with ``uniref30_database_path``).
        uniref30_database_path: UniRef30 / Uniclust30 HH-suite prefix (hhblits).
        small_bfd_database_path: reduced BFD FASTA (jackhmmer), instead of BFD + UniRef30.
        pdb70_database_path: PDB70 HH-suite prefix (hhsearch templates).
        pdb_seqres_database_path: ``pdb_seqres.txt`` (hmmsearch templates, AF2-Multimer).
        template_mmcif_dir: mmCIF files of the template entries; None: no templates.
        max_template_date: latest template release (``YYYY-MM-DD``); None: today.
        release_dates_path, obsolete_pdbs_path: optional PDB metadata files.
        max_template_hits: templates kept (AF2: 20; the model later uses 4).
        jackhmmer_binary_path ... kalign_binary_path: program paths.
        n_cpu: threads per search program.
        timeout_s: wall-clock limit of one search.
    """

    uniref90_database_path: str | None = None
    mgnify_database_path: str | None = None
    bfd_database_path: str | None = None
    uniref30_database_path: str | None = None
    small_bfd_database_path: str | None = None
    pdb70_database_path: str | None = None
    pdb_seqres_database_path: str | None = None
    template_mmcif_dir: str | None = None
    max_template_date: str | None = None
    release_dates_path: str | None = None
    obsolete_pdbs_path: str | None = None
    max_template_hits: int = 20
    jackhmmer_binary_path: str | None = None
    hhblits_binary_path: str | None = None
    hhsearch_binary_path: str | None = None
    hmmsearch_binary_path: str | None = None
    hmmbuild_binary_path: str | None = None
    kalign_binary_path: str | None = None
    n_cpu: int = 8
    timeout_s: float | None = None

    def __post_init__(self) -> None:
        if self.pdb70_database_path and self.pdb_seqres_database_path:
            raise ValueError("give pdb70_database_path (hhsearch) or pdb_seqres_database_path "
                             "(hmmsearch) for template search, not both")
        if self.small_bfd_database_path and (self.bfd_database_path
                                             or self.uniref30_database_path):
            raise ValueError("give small_bfd_database_path or bfd/uniref30 database paths, "
                             "not both (AF2's reduced_dbs vs full_dbs)")

    @property
    def has_msa_databases(self) -> bool:
        return any((self.uniref90_database_path, self.mgnify_database_path,
                    self.bfd_database_path, self.uniref30_database_path,
                    self.small_bfd_database_path))


def safe_name(description: str) -> str:
    """A file-system-safe name from a FASTA header's first word (``sp|P69905|HBA`` ->
    ``sp_P69905_HBA``)."""
    words = description.split()
    name = _UNSAFE.sub("_", words[0] if words else "").strip("._")
    if not name:
        raise ValueError(f"FASTA header {description[:60]!r} gives no usable name; start it "
                         "with an identifier made of letters, digits, '.', '_' or '-'")
    return name[:200]


def read_single_sequence(fasta_path: PathLike) -> tuple[str, str]:
    """``(sequence, description)`` of a one-record FASTA file.

    Raises:
        ValueError: no record, several records, or bad residue letters.
    """
    sequences, descriptions = read_fasta(fasta_path)
    if len(sequences) != 1:
        raise ValueError(
            f"{os.fspath(fasta_path)}: expected one sequence, found {len(sequences)} records; "
            "DataPipeline.process featurises one chain - split the file, or precompute "
            "alignments for all records with scripts/precompute_alignments.py"
        )
    return sequences[0], descriptions[0]


class DataPipeline:
    """FASTA -> raw feature dict (see the module docstring for the modes).

    Args:
        databases: search databases, programs and template settings; None for
            precomputed alignments or single-sequence mode without templates.
        msa_mode: ``"search"``, ``"precomputed"`` or ``"single_sequence"``; None:
            ``"search"`` when ``databases`` has an MSA database, else ``"precomputed"``.
        deduplicate_msa: drop repeated MSA rows (official AF2); False keeps all.
        feature_cache_dir: where to keep ``<record id>.npz`` feature files; None: no cache.
        max_workers: concurrent searches in search mode.

    Raises:
        ValueError: an unknown mode, or search mode without MSA databases.
        ToolNotFoundError / DatabaseNotFoundError: a configured program or database is
            missing (checked here, before any work).
    """

    def __init__(
        self,
        databases: DatabaseConfig | None = None,
        *,
        msa_mode: str | None = None,
        deduplicate_msa: bool = True,
        feature_cache_dir: PathLike | None = None,
        max_workers: int = 3,
    ) -> None:
        self.databases = databases or DatabaseConfig()
        if msa_mode is None:
            msa_mode = "search" if self.databases.has_msa_databases else "precomputed"
        if msa_mode not in MSA_MODES:
            raise ValueError(f"msa_mode must be one of {MSA_MODES}, got {msa_mode!r}")
        self.msa_mode = msa_mode
        self.deduplicate_msa = deduplicate_msa
        self.feature_cache_dir = os.fspath(feature_cache_dir) if feature_cache_dir else None
        self.searcher: MsaSearcher | None = None
        if msa_mode == "search":
            if not self.databases.has_msa_databases:
                raise ValueError("msa_mode='search' needs at least one MSA database in "
                                 "DatabaseConfig (e.g. uniref90_database_path)")
            self.searcher = MsaSearcher(self.databases, max_workers=max_workers)
        self.template_settings: dict | None = None
        self._featurizers: dict[str, TemplateHitFeaturizer] = {}
        db = self.databases
        if db.template_mmcif_dir:
            date = db.max_template_date or datetime.date.today().isoformat()
            self.template_settings = dict(
                mmcif_dir=db.template_mmcif_dir, max_template_date=date,
                max_hits=db.max_template_hits, kalign_binary_path=db.kalign_binary_path,
                release_dates_path=db.release_dates_path,
                obsolete_pdbs_path=db.obsolete_pdbs_path)
            self._featurizers = {
                "hhr": HhsearchHitFeaturizer(**self.template_settings),
                "sto": HmmsearchHitFeaturizer(**self.template_settings),
            }
        self.timings: dict[str, float] = {}

    # --------------------------------------------------------------------- public

    def process(self, fasta_path: PathLike, alignments_dir: PathLike | None = None
                ) -> feats.FeatureDict:
        """Raw features of the one chain in ``fasta_path``.

        Args:
            fasta_path: FASTA file with exactly one record.
            alignments_dir: the chain's alignments directory (or one ``.a3m`` file in
                precomputed mode); created in search mode; optional in single-sequence
                mode (template hits are read from it when present).

        Returns:
            The raw feature dict (``data_pipeline.features`` lists keys and shapes).
        """
        sequence, description = read_single_sequence(fasta_path)
        return self.process_sequence(sequence, description, alignments_dir)

    def process_sequence(self, sequence: str, description: str,
                         alignments_dir: PathLike | None = None) -> feats.FeatureDict:
        """``process`` for a sequence given directly (``description`` is its header)."""
        start = time.perf_counter()
        self.timings = {}
        sequence = sequence.upper()
        if alignments_dir is None and self.msa_mode != "single_sequence":
            raise ValueError(f"msa_mode={self.msa_mode!r} needs an alignments directory")
        path = os.fspath(alignments_dir) if alignments_dir is not None else None
        if self.searcher is not None:
            self.timings.update(self.searcher.search(sequence, description, path))
        if self.msa_mode == "single_sequence":
            hits = (af.find_alignment_files(path).template_hits
                    if path is not None and os.path.isdir(path) else None)
            files = af.AlignmentFiles([], hits)
        else:
            files = af.find_alignment_files(path)
        if self.msa_mode != "single_sequence" and not files.msas:
            raise FileNotFoundError(
                f"no MSA in {path}: expected one of "
                f"{', '.join(n for s in af.MSA_SOURCES for n in s.file_names)} or an .a3m "
                "file; run with msa_mode='search' (and databases) or 'single_sequence'"
            )

        cache_path = fingerprint = None
        if self.feature_cache_dir is not None:
            cache_path = os.path.join(self.feature_cache_dir, safe_name(description) + ".npz")
            fingerprint = self._fingerprint(sequence, description, files)
            if os.path.exists(cache_path) and \
                    feats.read_feature_metadata(cache_path).get("fingerprint") == fingerprint:
                logger.info("Loaded cached features %s", cache_path)
                return feats.load_features(cache_path)

        features = self._featurize(sequence, description, files)
        if cache_path is not None:
            feats.save_features(features, cache_path, metadata={"fingerprint": fingerprint})
            logger.info("Saved features to %s", cache_path)
        self.timings["total"] = time.perf_counter() - start
        logger.info("Features of %s (%d residues) in %.2f s: %s", safe_name(description),
                    len(sequence), self.timings["total"],
                    ", ".join(f"{k} {v:.2f} s" for k, v in self.timings.items()))
        return features

    # ------------------------------------------------------------------- helpers

    def _featurize(self, sequence: str, description: str,
                   files: af.AlignmentFiles) -> feats.FeatureDict:
        start = time.perf_counter()
        if files.msas:
            msas = [af.read_msa(msa_file, sequence) for msa_file in files.msas]
        else:
            msas = [feats.single_sequence_msa(sequence, description)]
        msa_features = feats.make_msa_features(msas, deduplicate=self.deduplicate_msa)
        self.timings["msa_features"] = time.perf_counter() - start
        for msa_file, msa in zip(files.msas, msas, strict=False):
            logger.info("MSA %s: %d rows", os.path.basename(msa_file.path), len(msa))
        logger.info("Merged MSA: %d rows (%s)", msa_features["num_alignments"][0],
                    "deduplicated" if self.deduplicate_msa else "all rows kept")
        start = time.perf_counter()
        template_features = self._template_features(sequence, files.template_hits)
        self.timings["template_features"] = time.perf_counter() - start
        return {
            **feats.make_sequence_features(sequence, description, len(sequence)),
            **msa_features,
            **template_features,
        }

    def _template_features(self, sequence: str, hits_path: str | None) -> feats.FeatureDict:
        if not self._featurizers or hits_path is None:
            if hits_path is not None:
                logger.info("Template hits %s not used: no template_mmcif_dir configured",
                            hits_path)
            return feats.empty_template_features(len(sequence))
        with open(hits_path, encoding="utf-8") as handle:
            text = handle.read()
        if hits_path.endswith(".hhr"):
            hits = parse_hhr(text, source=hits_path)
            featurizer = self._featurizers["hhr"]
        else:
            hits = parse_hmmsearch_sto(text, sequence, source=hits_path)
            featurizer = self._featurizers["sto"]
        result = featurizer.get_templates(sequence, hits)
        logger.info("Templates from %s: %d of %d hits", os.path.basename(hits_path),
                    len(result.features["template_domain_names"]), len(hits))
        return dict(result.features)

    def _fingerprint(self, sequence: str, description: str,
                     files: af.AlignmentFiles) -> str:
        digest = hashlib.sha256()
        paths: Sequence[str] = [m.path for m in files.msas] + (
            [files.template_hits] if files.template_hits else [])
        parts = [sequence, description, self.msa_mode, str(self.deduplicate_msa),
                 repr(sorted((self.template_settings or {}).items()))]
        for path in paths:
            stat = os.stat(path)
            parts.append(f"{os.path.abspath(path)}:{stat.st_size}:{stat.st_mtime_ns}")
        digest.update("\n".join(parts).encode())
        return digest.hexdigest()
