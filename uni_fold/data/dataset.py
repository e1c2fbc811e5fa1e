"""Training examples from mmCIF files and precomputed alignments.

:class:`ChainDataset` serves the PDB chains of a chain list. For each chain it builds the
raw features once: the MSA (and, when a template mmCIF directory is given, template)
features from the chain's alignments folder ``<alignments_dir>/<pdb id>_<chain id>/``
through :class:`data_pipeline.pipeline.DataPipeline` in precomputed mode, and the ground
truth from ``<mmcif_dir>/<pdb id>.cif``: atom37 positions and masks of every SEQRES
residue (unobserved residues masked), resolution and release date. With a
``feature_cache_dir`` they are kept as ``<name>.npz`` (no pickle) and reused while the
mmCIF and alignment files are unchanged.

An example is then made from the raw features with a seed: MSA block deletion (Suppl.
Alg. 1), then :func:`uni_fold.data.process_features` in ``train`` mode (random crop, MSA
sampling and masking, the number of recycling iterations ``num_iter_recycling`` drawn
from ``0..num_recycle``, ground-truth features). The seed comes from the sampler's
:class:`~uni_fold.data.weighted_sampler.SampleKey`, so the stream of examples depends
only on the sampler's seed and position, never on worker processes or timing.

:class:`MixedDataset` joins sources (PDB chains and self-distillation,
:mod:`uni_fold.data.distillation`) under one sampler with a mixing ratio.
"""
from __future__ import annotations

import abc
import datetime
import hashlib
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from data_pipeline import features as feats
from data_pipeline.parsers.mmcif import MmcifObject, parse_mmcif_file
from data_pipeline.pipeline import DatabaseConfig, DataPipeline
from data_pipeline.template_hits import TemplateHitError, template_atom_positions
from uni_fold.config import Config
from uni_fold.data.chain_list import (
    ChainEntry,
    ChainMetadata,
    cluster_sizes,
    filter_chains,
    load_chain_metadata,
    parse_chain_list,
    read_chain_list,
    sampling_weights,
)
from uni_fold.data.process import process_features
from uni_fold.data.train_config import TrainingDataConfig, parse_date
from uni_fold.data.weighted_sampler import SampleKey, derive_seed

logger = logging.getLogger(__name__)

__all__ = [
    "TrainingSource",
    "ChainDataset",
    "MixedDataset",
    "block_delete_msa",
    "make_training_example",
    "mmcif_ground_truth",
    "find_mmcif",
]

PathLike = str | os.PathLike
#: Raw MSA features with one entry per MSA row.
_MSA_ROW_FEATURES = ("msa", "deletion_matrix_int", "deletion_matrix", "msa_species_identifiers")
#: Bumped when the layout of cached raw features changes.
_CACHE_VERSION = "1"
#: Seed streams derived from an example's seed.
_BLOCK_DELETION_STREAM, _PROCESS_STREAM = 1, 2


# ----------------------------------------------------------------- one example


def block_delete_msa(
    raw: Mapping[str, Any], rng: np.random.Generator, config: TrainingDataConfig
) -> dict[str, Any]:
    """MSA block deletion (Suppl. Alg. 1, Jumper et al. 2021) on raw features.

    ``num_blocks`` blocks of ``floor(N_seq * msa_fraction_per_block)`` consecutive rows,
    each starting at a uniformly drawn row, are removed; the query (row 0) always stays.

    Args:
        raw: raw features with ``msa [N_seq, N_res]`` and the other per-row MSA features.
        rng: the example's generator.
        config: ``msa_fraction_per_block``, ``num_blocks``, ``randomize_num_blocks``.
    Returns:
        A shallow copy of ``raw`` with the kept rows and ``num_alignments`` updated.
    """
    out = dict(raw)
    num_seq = int(np.asarray(raw["msa"]).shape[0])
    block_size = int(np.floor(num_seq * config.msa_fraction_per_block))
    num_blocks = (int(rng.integers(0, config.num_blocks + 1)) if config.randomize_num_blocks
                  else config.num_blocks)
    if num_seq <= 1 or block_size == 0 or num_blocks == 0:
        return out
    starts = rng.integers(0, num_seq, size=num_blocks)
    deleted = np.clip(starts[:, None] + np.arange(block_size)[None, :], 0, num_seq - 1)
    keep = np.ones(num_seq, dtype=bool)
    keep[deleted.ravel()] = False
    keep[0] = True
    rows = np.flatnonzero(keep)
    for name in _MSA_ROW_FEATURES:
        if name in out:
            out[name] = np.asarray(out[name])[rows]
    if "num_alignments" in out:
        out["num_alignments"] = np.full_like(np.asarray(out["num_alignments"]), rows.size)
    return out


def make_training_example(
    raw: Mapping[str, Any], config: Config, data_config: TrainingDataConfig, seed: int
) -> dict[str, torch.Tensor]:
    """One training example from raw features (with ground truth) and a seed.

    Returns:
        :func:`~uni_fold.data.process_features`'s batch (``mode="train"``): every feature
        ``[num_recycle + 1, ...]`` with ``N_res = crop_size``, including
        ``num_iter_recycling`` and ``use_clamped_fape``.
    """
    if data_config.block_delete_msa:
        rng = np.random.default_rng([seed, _BLOCK_DELETION_STREAM])
        raw = block_delete_msa(raw, rng, data_config)
    num_recycle = data_config.num_recycle
    return process_features(
        raw, config, mode="train", seed=derive_seed(seed, _PROCESS_STREAM),
        num_recycle=config.model.num_recycle if num_recycle is None else num_recycle,
        crop_size=data_config.crop_size,
    )


def _key_seed(key: SampleKey | int, base_seed: int) -> tuple[int, int]:
    """(example index, example seed) of a sampler key or a plain index."""
    if isinstance(key, SampleKey):
        return key.index, key.seed
    if isinstance(key, int | np.integer) and not isinstance(key, bool):
        return int(key), derive_seed(base_seed, int(key))
    raise TypeError(f"index a training dataset with an int or a SampleKey, got {key!r}")


# ------------------------------------------------------------------ mmCIF files


def find_mmcif(mmcif_dir: PathLike, pdb_id: str) -> str:
    """Path of ``<pdb id>.cif`` (or ``.cif.gz``, any case) in ``mmcif_dir``.

    Raises:
        FileNotFoundError: naming the entry and the names looked for.
    """
    names = [f"{i}{s}" for i in dict.fromkeys((pdb_id.lower(), pdb_id.upper(), pdb_id))
             for s in (".cif", ".cif.gz")]
    for name in names:
        path = os.path.join(os.fspath(mmcif_dir), name)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"no mmCIF file for {pdb_id} in {os.fspath(mmcif_dir)!r} "
                            f"(looked for {', '.join(names)})")


def _chain_of(mmcif: MmcifObject, name: str, chain_id: str) -> None:
    if chain_id not in mmcif.chain_to_seqres:
        raise ValueError(f"chain {name}: {mmcif.file_id} has no protein chain {chain_id!r} "
                         f"(author chain ids: {sorted(mmcif.chain_to_seqres)}); fix the "
                         "chain list")


def mmcif_ground_truth(mmcif: MmcifObject, chain_id: str) -> dict[str, np.ndarray]:
    """Raw ground-truth features of one chain, aligned to its SEQRES.

    Returns:
        ``all_atom_positions [N_res, 37, 3]`` float32 (Å; zero where unobserved),
        ``all_atom_mask [N_res, 37]`` float32, ``resolution [1]`` float32 (0 when
        unknown), ``release_date [1]`` bytes (empty when unknown).
    """
    name = f"{mmcif.file_id}_{chain_id}"
    _chain_of(mmcif, name, chain_id)
    try:
        positions, mask = template_atom_positions(mmcif, chain_id)
    except TemplateHitError as error:
        raise ValueError(f"chain {name}: unusable coordinates: {error}") from None
    release = mmcif.header.get("release_date", "")
    return {
        "all_atom_positions": positions,
        "all_atom_mask": mask,
        "resolution": np.array([mmcif.header.get("resolution", 0.0)], dtype=np.float32),
        "release_date": np.array([release.encode()], dtype=np.object_),
    }


def _fingerprint(paths: Sequence[str], settings: Sequence[str]) -> str:
    digest = hashlib.sha256("\n".join([_CACHE_VERSION, *settings]).encode())
    for path in paths:
        stat = os.stat(path)
        digest.update(f"\n{os.path.abspath(path)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def _folder_files(folder: str) -> list[str]:
    return sorted(os.path.join(folder, n) for n in os.listdir(folder)
                  if os.path.isfile(os.path.join(folder, n)))


# ---------------------------------------------------------------------- datasets


class TrainingSource(torch.utils.data.Dataset, abc.ABC):
    """What the training sources share: a chain list, one structure file and one
    alignments folder per chain, filters, sampling weights, the raw-feature cache and
    examples made from sampler keys. Subclasses say where structures are and how a
    chain's raw features are built (:class:`ChainDataset`, ``DistillationDataset``).
    """

    #: Chain-list names must be ``<pdb id>_<chain id>``.
    pdb_names = True

    def __init__(
        self,
        structures_dir: PathLike,
        alignments_dir: PathLike,
        chain_list: PathLike | Sequence[ChainEntry | str],
        config: Config,
        data_config: TrainingDataConfig | None = None,
        *,
        feature_cache_dir: PathLike | None = None,
        metadata_cache: PathLike | None = None,
        seed: int = 0,
    ) -> None:
        if not isinstance(config, Config):
            raise TypeError("config must be a uni_fold.config.Config "
                            "(e.g. uni_fold.config.model_config('model_1'))")
        self.config = config
        self.data_config = data_config or TrainingDataConfig()
        self.structures_dir = os.fspath(structures_dir)
        self.alignments_dir = os.fspath(alignments_dir)
        self.feature_cache_dir = os.fspath(feature_cache_dir) if feature_cache_dir else None
        self.seed = seed
        self._pipelines: dict[str | None, DataPipeline] = {}
        for what, folder in (("structures directory", self.structures_dir),
                             ("alignments directory", self.alignments_dir)):
            if not os.path.isdir(folder):
                raise FileNotFoundError(f"{type(self).__name__}: {what} {folder!r} does not "
                                        "exist or is not a directory")
        entries = _entries(chain_list, pdb_names=self.pdb_names)
        self._check_files(entries)
        metadata = load_chain_metadata([e.name for e in entries], self._read_metadata,
                                       metadata_cache)
        self.entries = filter_chains(entries, metadata, self.data_config)
        if not self.entries:
            raise ValueError(f"no chain of {len(entries)} passes the filters "
                             f"({self.data_config}); relax them or check the chain list")
        self.metadata = [metadata[e.name] for e in self.entries]
        self.weights = sampling_weights([m.length for m in self.metadata],
                                        cluster_sizes(self.entries), self.data_config)
        logger.info("%s: %d chains from %s", type(self).__name__, len(self.entries),
                    self.structures_dir)

    # ------------------------------------------------------- for subclasses

    @abc.abstractmethod
    def structure_path(self, entry: ChainEntry) -> str:
        """The structure file of a chain; FileNotFoundError naming it when absent."""

    @abc.abstractmethod
    def _read_metadata(self, names: Sequence[str]) -> dict[str, ChainMetadata]:
        """Length, resolution and release date of each named chain."""

    @abc.abstractmethod
    def _build(self, entry: ChainEntry, folder: str) -> dict[str, Any]:
        """Raw features (pipeline + ground truth) of a chain, to be cached."""

    def _cache_settings(self) -> list[str]:
        """Settings that change the cached raw features."""
        return []

    def _finish(self, raw: dict[str, Any]) -> dict[str, Any]:
        """Last per-chain step after the cache (e.g. pLDDT masking)."""
        return raw

    # ------------------------------------------------------------------ files

    def _check_files(self, entries: Sequence[ChainEntry]) -> None:
        problems = []
        for entry in entries:
            try:
                self.structure_path(entry)
            except FileNotFoundError as error:
                problems.append(f"chain {entry.name} (line {entry.line}): {error}")
            folder = os.path.join(self.alignments_dir, entry.name)
            if not os.path.isdir(folder):
                problems.append(f"chain {entry.name} (line {entry.line}): no alignments "
                                f"folder {folder!r}; precompute its alignments "
                                "(precompute-alignments) or remove the chain")
        if problems:
            shown = "\n  ".join(problems[:20])
            more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
            raise FileNotFoundError(f"{len(problems)} missing input(s):\n  {shown}{more}")

    def _pipeline(self, max_template_date: str | None = None,
                  template_mmcif_dir: str | None = None) -> DataPipeline:
        """A precomputed-mode pipeline (kept per template settings)."""
        key = (max_template_date, template_mmcif_dir)
        if key not in self._pipelines:
            databases = None
            if template_mmcif_dir is not None:
                databases = DatabaseConfig(template_mmcif_dir=template_mmcif_dir,
                                           max_template_date=max_template_date)
            if len(self._pipelines) > 64:
                self._pipelines.clear()
            self._pipelines[key] = DataPipeline(databases, msa_mode="precomputed")
        return self._pipelines[key]

    def _pipeline_features(self, pipeline: DataPipeline, entry: ChainEntry, sequence: str,
                           folder: str) -> dict[str, Any]:
        try:
            return dict(pipeline.process_sequence(sequence, entry.name, folder))
        except (ValueError, FileNotFoundError) as error:
            raise type(error)(f"chain {entry.name}: the alignments in {folder!r} do not fit "
                              f"its sequence ({len(sequence)} residues): {error}") from None

    def __getstate__(self) -> dict[str, Any]:
        # Worker processes build their own pipelines.
        return {**self.__dict__, "_pipelines": {}}

    # ----------------------------------------------------------- raw features

    def raw_features(self, index: int) -> dict[str, Any]:
        """Raw features of chain ``index`` (pipeline features + ground truth), from the
        cache when it is current."""
        entry = self.entries[index]
        folder = os.path.join(self.alignments_dir, entry.name)
        if self.feature_cache_dir is None:
            return self._finish(self._build(entry, folder))
        cache_path = os.path.join(self.feature_cache_dir, f"{entry.name}.npz")
        fingerprint = _fingerprint([self.structure_path(entry), *_folder_files(folder)],
                                   [type(self).__name__, entry.name, *self._cache_settings()])
        if os.path.exists(cache_path) and \
                feats.read_feature_metadata(cache_path).get("fingerprint") == fingerprint:
            return self._finish(dict(feats.load_features(cache_path)))
        raw = self._build(entry, folder)
        feats.save_features(raw, cache_path, metadata={"fingerprint": fingerprint})
        logger.debug("cached raw features of %s in %s", entry.name, cache_path)
        return self._finish(raw)

    # --------------------------------------------------------------- examples

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, key: SampleKey | int) -> dict[str, torch.Tensor]:
        """The training example of a sampler key (or of an index, with ``self.seed``)."""
        index, seed = _key_seed(key, self.seed)
        if not 0 <= index < len(self.entries):
            raise IndexError(f"chain index {index} out of range for {len(self.entries)} chains")
        return make_training_example(self.raw_features(index), self.config,
                                     self.data_config, seed)

    @property
    def source_weights(self) -> list[np.ndarray]:
        """Sampling weights per source (one source here)."""
        return [self.weights]

    @property
    def source_ratios(self) -> list[float]:
        return [1.0]


class ChainDataset(TrainingSource):
    """PDB chains of a chain list as training examples (see the module docstring).

    Args:
        mmcif_dir: folder of ``<pdb id>.cif`` files.
        alignments_dir: folder of per-chain alignment folders ``<pdb id>_<chain id>/``
            (the data pipeline's layout).
        chain_list: a chain-list file, or entries / names.
        config: the model's config (input processing: ``config.data``; default number of
            recycles: ``config.model.num_recycle``).
        data_config: filters, weights, crop, block deletion; default AF2's.
        feature_cache_dir: where raw features are cached as ``<name>.npz``; None: none.
        metadata_cache: JSON file of chain metadata for the filters (see
            :func:`~uni_fold.data.chain_list.load_chain_metadata`).
        template_mmcif_dir: mmCIF files of template entries; templates are then read
            from the hit file in each alignments folder, restricted to entries released
            before the chain (and ``data_config.max_template_date``). None: no templates.
        seed: seed of examples fetched by plain int index (sampler keys carry their own).

    Raises:
        FileNotFoundError: a missing mmCIF file or alignments folder (all are checked up
            front, and the error names them).
        ValueError: a bad chain list, or a chain the mmCIF file does not have.
    """

    def __init__(
        self,
        mmcif_dir: PathLike,
        alignments_dir: PathLike,
        chain_list: PathLike | Sequence[ChainEntry | str],
        config: Config,
        data_config: TrainingDataConfig | None = None,
        *,
        feature_cache_dir: PathLike | None = None,
        metadata_cache: PathLike | None = None,
        template_mmcif_dir: PathLike | None = None,
        seed: int = 0,
    ) -> None:
        self.template_mmcif_dir = os.fspath(template_mmcif_dir) if template_mmcif_dir else None
        super().__init__(mmcif_dir, alignments_dir, chain_list, config, data_config,
                         feature_cache_dir=feature_cache_dir, metadata_cache=metadata_cache,
                         seed=seed)

    @property
    def mmcif_dir(self) -> str:
        return self.structures_dir

    def structure_path(self, entry: ChainEntry) -> str:
        return find_mmcif(self.structures_dir, entry.pdb_id)

    def _read_metadata(self, names: Sequence[str]) -> dict[str, ChainMetadata]:
        out = {}
        by_entry: dict[str, list[str]] = {}
        for name in names:
            by_entry.setdefault(ChainEntry(name).pdb_id, []).append(name)
        for pdb_id, chain_names in by_entry.items():
            mmcif = parse_mmcif_file(find_mmcif(self.structures_dir, pdb_id), pdb_id)
            for name in chain_names:
                chain_id = ChainEntry(name).chain_id
                _chain_of(mmcif, name, chain_id)
                out[name] = ChainMetadata(
                    sequence=mmcif.chain_to_seqres[chain_id],
                    resolution=float(mmcif.header.get("resolution", 0.0)),
                    release_date=mmcif.header.get("release_date"),
                )
        return out

    def _cache_settings(self) -> list[str]:
        return [repr(self.template_mmcif_dir), repr(self.data_config.max_template_date)]

    def _template_date(self, release_date: str | None) -> str | None:
        """Templates must be released before the chain (and the global cutoff)."""
        dates = []
        if release_date:
            day_before = parse_date(release_date, "release date") - datetime.timedelta(days=1)
            dates.append(day_before)
        if self.data_config.max_template_date is not None:
            dates.append(parse_date(self.data_config.max_template_date, "max_template_date"))
        return min(dates).isoformat() if dates else None

    def _build(self, entry: ChainEntry, folder: str) -> dict[str, Any]:
        mmcif = parse_mmcif_file(self.structure_path(entry), entry.pdb_id)
        chain_id = entry.chain_id
        _chain_of(mmcif, entry.name, chain_id)
        sequence = mmcif.chain_to_seqres[chain_id]
        if self.template_mmcif_dir is None:
            pipeline = self._pipeline()
        else:
            date = self._template_date(mmcif.header.get("release_date"))
            pipeline = self._pipeline(date, self.template_mmcif_dir)
        raw = self._pipeline_features(pipeline, entry, sequence, folder)
        raw.update(mmcif_ground_truth(mmcif, chain_id))
        return raw


class MixedDataset(torch.utils.data.Dataset):
    """Several training sources drawn at fixed ratios (e.g. PDB and self-distillation).

    Index it with :class:`SampleKey` s whose ``source`` picks the dataset; sample it with
    ``WeightedSampler(mixed.source_weights, ratios=mixed.source_ratios, ...)``.

    Args:
        sources: datasets with a ``weights`` array (``ChainDataset``,
            ``DistillationDataset``).
        ratios: fraction of examples from each source (normalised), e.g. ``[0.25, 0.75]``
            for AF2's PDB / self-distillation mix.
    """

    def __init__(self, sources: Sequence[torch.utils.data.Dataset],
                 ratios: Sequence[float]) -> None:
        if not sources or len(sources) != len(ratios):
            raise ValueError(f"need one ratio per source, got {len(sources)} sources and "
                             f"{len(ratios)} ratios")
        if any(r < 0 for r in ratios) or sum(ratios) <= 0:
            raise ValueError(f"ratios must be >= 0 with a positive sum, got {list(ratios)}")
        for i, source in enumerate(sources):
            if not hasattr(source, "weights"):
                raise TypeError(f"source {i} ({type(source).__name__}) has no sampling "
                                "weights; use ChainDataset or DistillationDataset")
        self.sources = list(sources)
        total = float(sum(ratios))
        self.ratios = [float(r) / total for r in ratios]

    def __len__(self) -> int:
        return sum(len(s) for s in self.sources)

    def __getitem__(self, key: SampleKey) -> dict[str, torch.Tensor]:
        if not isinstance(key, SampleKey):
            raise TypeError("index a MixedDataset with SampleKeys from a WeightedSampler "
                            f"(they name the source), got {key!r}")
        if not 0 <= key.source < len(self.sources):
            raise IndexError(f"source {key.source} out of range for {len(self.sources)}")
        return self.sources[key.source][key]

    @property
    def source_weights(self) -> list[np.ndarray]:
        return [np.asarray(s.weights) for s in self.sources]

    @property
    def source_ratios(self) -> list[float]:
        return list(self.ratios)


def _entries(chain_list: PathLike | Sequence[ChainEntry | str], *,
             pdb_names: bool) -> list[ChainEntry]:
    """Chain entries from a file path or a sequence of entries / names."""
    if isinstance(chain_list, str | os.PathLike):
        return read_chain_list(chain_list, pdb_names=pdb_names)
    lines = [e if isinstance(e, str) else
             (e.name if e.cluster is None else f"{e.name}\t{e.cluster}") for e in chain_list]
    return parse_chain_list(lines, "<chain list argument>", pdb_names=pdb_names)
