"""Chain lists, per-chain metadata, the training filters and the sampling weights.

A chain list is a text file with one chain a line: ``<pdb id>_<chain id>`` (author chain
id, e.g. ``1k1a_A``), optionally followed by a tab and a cluster id (e.g. the sequence
cluster of MMseqs2 at 40 % identity, as AF2). Empty lines and lines starting with ``#``
are skipped. Chains without a cluster id are each a cluster of their own.

The filters and weights are AF2's (Jumper et al. 2021, Suppl. Section 1.2.5): entries
solved at worse than 9 Å, and chains dominated by a single amino acid, are dropped; a
chain is drawn with weight ``1 / cluster size * max(min(N, 512), 256) / 512`` (AF2 accepts
chains with these probabilities; weighting the draw gives the same distribution).

Filters need each chain's length, resolution and release date. :func:`load_chain_metadata`
reads them from the mmCIF files (or, for self-distillation, the predicted structures) and
keeps them in a JSON file, so a large set is parsed once.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

from uni_fold.data.train_config import TrainingDataConfig, parse_date

logger = logging.getLogger(__name__)

__all__ = [
    "ChainEntry",
    "ChainMetadata",
    "parse_chain_list",
    "read_chain_list",
    "cluster_sizes",
    "load_chain_metadata",
    "filter_reason",
    "filter_chains",
    "sampling_weights",
]

PathLike = str | os.PathLike
#: ``<pdb id>_<chain id>``: a 4-character PDB id starting with a digit, an author chain id.
_PDB_CHAIN = re.compile(r"^([0-9][A-Za-z0-9]{3})_([A-Za-z0-9]{1,4})$")
#: Names of self-distillation entries: anything file-system safe.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclasses.dataclass(frozen=True)
class ChainEntry:
    """One line of a chain list.

    Attributes:
        name: ``<pdb id>_<chain id>`` (or any safe name for self-distillation); also the
            name of the chain's alignments folder.
        cluster: cluster id, or None for a cluster of its own.
        line: 1-based line number in the chain list (0 when built in code).
    """

    name: str
    cluster: str | None = None
    line: int = 0

    @property
    def pdb_id(self) -> str:
        """The PDB id part of ``name`` (lower case)."""
        return self.name.split("_", 1)[0].lower()

    @property
    def chain_id(self) -> str:
        """The author chain id part of ``name``."""
        parts = self.name.split("_", 1)
        if len(parts) != 2:
            raise ValueError(f"chain {self.name!r} is not named <pdb id>_<chain id>")
        return parts[1]


def parse_chain_list(
    lines: Iterable[str], source: str = "<chain list>", *, pdb_names: bool = True
) -> list[ChainEntry]:
    """Parse chain-list lines (see the module docstring).

    Args:
        lines: the file's lines.
        source: the file name, used in error messages.
        pdb_names: require ``<pdb id>_<chain id>`` names (False for self-distillation
            lists, where any file-system-safe name is allowed).
    Raises:
        ValueError: ``source:line: ...`` for a malformed or repeated name, more than two
            fields, or an empty list.
    """
    entries: list[ChainEntry] = []
    seen: dict[str, int] = {}
    for number, text in enumerate(lines, start=1):
        text = text.rstrip("\r\n")
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        fields = text.split("\t")
        where = f"{source}:{number}"
        if len(fields) > 2:
            raise ValueError(f"{where}: expected '<name>' or '<name><TAB><cluster id>', got "
                             f"{len(fields)} tab-separated fields in {text!r}")
        name = fields[0].strip()
        cluster = fields[1].strip() if len(fields) == 2 else None
        if len(fields) == 2 and not cluster:
            raise ValueError(f"{where}: empty cluster id after the tab in {text!r}; drop the "
                             "tab or give the cluster")
        if any(c.isspace() for c in name):
            raise ValueError(f"{where}: chain name {name!r} contains spaces; separate the "
                             "cluster id with a tab")
        if pdb_names and not _PDB_CHAIN.match(name):
            raise ValueError(f"{where}: {name!r} is not <pdb id>_<chain id> (e.g. 1k1a_A: a "
                             "4-character PDB id, '_', the author chain id)")
        if not pdb_names and not _SAFE_NAME.match(name):
            raise ValueError(f"{where}: {name!r} is not a usable name; use letters, digits, "
                             "'.', '_' and '-' (it names the structure file and the "
                             "alignments folder)")
        if name in seen:
            raise ValueError(f"{where}: chain {name!r} is listed twice (first on line "
                             f"{seen[name]}); remove one")
        seen[name] = number
        entries.append(ChainEntry(name, cluster, number))
    if not entries:
        raise ValueError(f"{source}: the chain list names no chain; write one "
                         "<pdb id>_<chain id> a line")
    return entries


def read_chain_list(path: PathLike, *, pdb_names: bool = True) -> list[ChainEntry]:
    """Read a chain-list file (see :func:`parse_chain_list`)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"chain list {path!r} does not exist")
    with open(path, encoding="utf-8") as handle:
        return parse_chain_list(handle, path, pdb_names=pdb_names)


def cluster_sizes(entries: Sequence[ChainEntry]) -> np.ndarray:
    """``[N_chains]`` int: the size of each chain's cluster (1 without a cluster id)."""
    counts = collections.Counter(e.cluster for e in entries if e.cluster is not None)
    return np.array([counts[e.cluster] if e.cluster is not None else 1 for e in entries],
                    dtype=np.int64)


# ------------------------------------------------------------------------ metadata


@dataclasses.dataclass(frozen=True)
class ChainMetadata:
    """What the filters need to know about a chain.

    Attributes:
        sequence: the chain's SEQRES (one-letter, X for unknown).
        resolution: Å, 0.0 when unknown (NMR, predictions).
        release_date: ``YYYY-MM-DD`` or None when unknown.
    """

    sequence: str
    resolution: float = 0.0
    release_date: str | None = None

    @property
    def length(self) -> int:
        return len(self.sequence)


def _write_json_atomically(data: object, path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=directory, prefix=".chain_metadata.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_chain_metadata(
    names: Sequence[str],
    read: Callable[[Sequence[str]], Mapping[str, ChainMetadata]],
    cache_path: PathLike | None = None,
) -> dict[str, ChainMetadata]:
    """Metadata of every chain in ``names``, from the JSON cache where it is there.

    Args:
        names: chain names.
        read: reads the metadata of the chains not in the cache (e.g. from their mmCIF
            files); called once with all of them.
        cache_path: JSON file ``{name: {"sequence", "resolution", "release_date"}}``; read
            when it exists, (re)written when chains had to be read. Delete it after
            changing the structure files.
    """
    cached: dict[str, ChainMetadata] = {}
    if cache_path is not None and os.path.exists(cache_path):
        try:
            with open(cache_path, encoding="utf-8") as handle:
                raw = json.load(handle)
            cached = {k: ChainMetadata(**v) for k, v in raw.items()}
        except (OSError, ValueError, TypeError) as error:
            raise ValueError(f"chain metadata cache {os.fspath(cache_path)!r} is unreadable "
                             f"({error}); delete it to rebuild it") from None
    missing = [n for n in names if n not in cached]
    if missing:
        logger.info("reading metadata of %d chains (%d cached)", len(missing),
                    len(names) - len(missing))
        cached.update(read(missing))
        if cache_path is not None:
            _write_json_atomically({k: dataclasses.asdict(v) for k, v in cached.items()},
                                   os.fspath(cache_path))
    return {n: cached[n] for n in names}


# ------------------------------------------------------------------- filters, weights


def filter_reason(meta: ChainMetadata, config: TrainingDataConfig) -> str | None:
    """Why AF2's training filters (Suppl. 1.2.5) drop a chain, or None to keep it."""
    if meta.resolution > config.max_resolution:
        return f"resolution {meta.resolution:g} Å > {config.max_resolution:g} Å"
    if meta.length < config.min_length:
        return f"length {meta.length} < {config.min_length}"
    if config.max_length is not None and meta.length > config.max_length:
        return f"length {meta.length} > {config.max_length}"
    if meta.length:
        top = collections.Counter(meta.sequence).most_common(1)[0]
        if top[1] / meta.length > config.max_single_aa_fraction:
            return (f"{top[0]} makes up {top[1] / meta.length:.0%} of the sequence "
                    f"(> {config.max_single_aa_fraction:.0%})")
    if config.max_release_date is not None and meta.release_date is not None:
        if parse_date(meta.release_date, "release date") > parse_date(
                config.max_release_date, "max_release_date"):
            return f"released {meta.release_date}, after {config.max_release_date}"
    return None


def filter_chains(
    entries: Sequence[ChainEntry],
    metadata: Mapping[str, ChainMetadata],
    config: TrainingDataConfig,
) -> list[ChainEntry]:
    """The entries that pass :func:`filter_reason`; the dropped ones are logged.

    Cluster sizes are counted later, among the chains kept.
    """
    kept = []
    reasons: collections.Counter[str] = collections.Counter()
    for entry in entries:
        reason = filter_reason(metadata[entry.name], config)
        if reason is None:
            kept.append(entry)
        else:
            reasons[reason.split(" ")[0]] += 1
            logger.debug("dropping %s: %s", entry.name, reason)
    if reasons:
        logger.info("filters kept %d of %d chains (dropped by %s)", len(kept), len(entries),
                    dict(reasons))
    return kept


def sampling_weights(
    lengths: Sequence[int] | np.ndarray,
    sizes: Sequence[int] | np.ndarray,
    config: TrainingDataConfig,
) -> np.ndarray:
    """AF2's per-chain sampling weights ``[N_chains]`` float64 (not normalised).

    ``weight = 1 / cluster_size * max(min(N, max), min) / max`` with ``min, max =
    config.length_weight_min, config.length_weight_max`` (AF2: 256, 512).
    """
    lengths = np.asarray(lengths, dtype=np.float64)
    sizes = np.asarray(sizes, dtype=np.float64)
    if lengths.shape != sizes.shape:
        raise ValueError(f"lengths {lengths.shape} and cluster sizes {sizes.shape} differ")
    if (sizes < 1).any():
        raise ValueError("cluster sizes must be >= 1")
    high = float(config.length_weight_max)
    length_term = np.clip(lengths, config.length_weight_min, high) / high
    return length_term / sizes

